//! Several hosts on one machine: a network namespace per cluster node (its agent and PostgreSQL),
//! one for etcd and one for the test client, each with a veth link onto a Linux bridge. The bridge
//! lives in a namespace of its own, so nothing of a test (bridge, links, addresses, firewall
//! rules) touches the host's network: the private addresses (`10.213.<x>.0/24`, `<x>` random per
//! run and checked unused on the host) exist only inside namespaces this test made. Names carry
//! the test process's PID and a random tag, so a namespace leaked by an earlier run never collides.
//!
//! Partitions are nftables rules inside the namespaces (a `partition` table dropping traffic
//! between address pairs, in both directions): [`Net::cut`], [`Net::isolate`],
//! [`Net::cut_from_dcs`], [`Net::heal`]; [`Net::link_down`] / [`Net::link_up`] take a host's link
//! down for flapping. Dropped packets, not refused connections: TCP peers hang as over a real
//! broken network.
//!
//! Processes run as `ip netns exec <ns> setpriv … <cmd>` ([`Net::prefix`]). The test's own
//! client side runs in the client namespace: [`Net::block_on`] runs the test body on a runtime
//! whose threads all joined that namespace, so every socket it opens (REST, PostgreSQL, etcd)
//! starts there. Dropping the [`Net`] kills what is left in its namespaces (by PID, from
//! `ip netns pids`) and deletes them; declare it before the servers so it drops last.
//!
//! Needs root, iproute2 (`ip netns`) and nftables: without root the tests skip with a message;
//! as root a missing tool skips locally and fails when `CI=true`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::in_ci;

/// A host of the test network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Peer {
    /// Cluster node `i` (its agent and PostgreSQL).
    Node(usize),
    /// The etcd server.
    Etcd,
    /// The test client (writers, REST and SQL checks).
    Client,
}

/// One namespace: its name, address and the name of its link's end on the bridge.
#[derive(Clone, Debug)]
pub struct Host {
    /// Which host.
    pub peer: Peer,
    /// The namespace (`/run/netns/<ns>`).
    pub ns: String,
    /// Its address on the bridge.
    pub addr: String,
    /// Its link's end on the bridge (in the bridge's namespace).
    port: String,
}

/// The test network. See the module documentation.
pub struct Net {
    hub: String,
    hosts: Vec<Host>,
    nodes: usize,
    subnet: String,
    ip: PathBuf,
    nft: PathBuf,
    setpriv: PathBuf,
    /// The cuts in force, for [`Net::heal`] and messages.
    cuts: Mutex<Vec<(Peer, Peer)>>,
    /// Hosts whose link is down.
    down: Mutex<Vec<Peer>>,
}

/// The interface of every host namespace (the bridge is `br0` in its own namespace).
const IFACE: &str = "eth0";

fn find_tool(names: &[&str]) -> Option<PathBuf> {
    names.iter().map(PathBuf::from).find(|p| p.is_file())
}

/// A tool is missing or `ip netns` does not work: skip with a message, or panic when `CI=true`.
fn unavailable(why: &str) -> Option<Net> {
    if in_ci() {
        panic!("network namespace tests cannot run: {why} (CI=true: not skipping)");
    }
    eprintln!("SKIP: network namespace tests cannot run: {why}");
    None
}

fn random_u32() -> u32 {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    nanos ^ std::process::id().rotate_left(16)
}

impl Net {
    /// A network of `nodes` cluster nodes, etcd and the client, all links up, no cuts. `None`
    /// (skipped, with a message) when not root or when `ip netns` / nftables are unavailable
    /// outside CI.
    pub fn create(nodes: usize) -> Option<Net> {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("SKIP: network namespace tests need root (ip netns, nftables)");
            return None;
        }
        let Some(ip) = find_tool(&["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]) else {
            return unavailable("`ip` (iproute2) is not installed");
        };
        let Some(nft) = find_tool(&["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"]) else {
            return unavailable("`nft` (nftables) is not installed");
        };
        let Some(setpriv) = find_tool(&["/usr/bin/setpriv", "/bin/setpriv"]) else {
            return unavailable("`setpriv` (util-linux) is not installed");
        };
        let tag = format!("prt{}x{:04x}", std::process::id(), random_u32() & 0xffff);
        let Some(subnet) = free_subnet(&ip) else {
            return unavailable("no unused 10.213.x.0/24 subnet on this host");
        };
        let mut hosts = Vec::new();
        let mut peers: Vec<Peer> = (0..nodes).map(Peer::Node).collect();
        peers.extend([Peer::Etcd, Peer::Client]);
        for peer in peers {
            let (short, last) = match peer {
                Peer::Node(i) => (format!("n{i}"), 10 + i),
                Peer::Etcd => ("etcd".to_string(), 2),
                Peer::Client => ("cli".to_string(), 3),
            };
            hosts.push(Host {
                peer,
                ns: format!("{tag}-{short}"),
                addr: format!("{subnet}.{last}"),
                port: format!("v{short}"),
            });
        }
        let net = Net {
            hub: format!("{tag}-hub"),
            hosts,
            nodes,
            subnet,
            ip,
            nft,
            setpriv,
            cuts: Mutex::new(Vec::new()),
            down: Mutex::new(Vec::new()),
        };
        // From here on, Drop removes whatever was made.
        if let Err(e) = net.build() {
            drop(net);
            return unavailable(&format!("setting up the namespaces failed: {e}"));
        }
        eprintln!(
            "netns: bridge in {}, subnet {}.0/24, hosts {}",
            net.hub,
            net.subnet,
            net.hosts
                .iter()
                .map(|h| format!("{:?}={}@{}", h.peer, h.addr, h.ns))
                .collect::<Vec<_>>()
                .join(" ")
        );
        Some(net)
    }

    fn build(&self) -> Result<(), String> {
        self.ip(&["netns", "add", &self.hub])?;
        self.ip(&["-n", &self.hub, "link", "set", "lo", "up"])?;
        self.ip(&["-n", &self.hub, "link", "add", "br0", "type", "bridge"])?;
        self.ip(&["-n", &self.hub, "link", "set", "br0", "up"])?;
        for h in &self.hosts {
            self.ip(&["netns", "add", &h.ns])?;
            self.ip(&["-n", &h.ns, "link", "set", "lo", "up"])?;
            self.ip(&[
                "-n", &self.hub, "link", "add", &h.port, "type", "veth", "peer", "name", IFACE, "netns",
                &h.ns,
            ])?;
            self.ip(&["-n", &self.hub, "link", "set", &h.port, "master", "br0"])?;
            self.ip(&["-n", &self.hub, "link", "set", &h.port, "up"])?;
            self.ip(&["-n", &h.ns, "addr", "add", &format!("{}/24", h.addr), "dev", IFACE])?;
            self.ip(&["-n", &h.ns, "link", "set", IFACE, "up"])?;
            self.nft_in(
                &h.ns,
                "table inet partition {\n\
                   chain input { type filter hook input priority 0; policy accept; }\n\
                   chain output { type filter hook output priority 0; policy accept; }\n\
                 }\n",
            )?;
        }
        Ok(())
    }

    /// Run `ip args`; its stdout, or an error naming the command and its stderr.
    fn ip(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(&self.ip)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("run ip {}: {e}", args.join(" ")))?;
        if !out.status.success() {
            return Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Load an nft script in namespace `ns`.
    fn nft_in(&self, ns: &str, script: &str) -> Result<(), String> {
        let mut child = Command::new(&self.ip)
            .args(["netns", "exec", ns])
            .arg(&self.nft)
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("run nft in {ns}: {e}"))?;
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(script.as_bytes())
            .map_err(|e| format!("write the nft script in {ns}: {e}"))?;
        let out = child.wait_with_output().map_err(|e| format!("wait for nft in {ns}: {e}"))?;
        if !out.status.success() {
            return Err(format!("nft in {ns}: {}\n{script}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(())
    }

    /// The host `p`.
    pub fn host(&self, p: Peer) -> &Host {
        self.hosts.iter().find(|h| h.peer == p).unwrap_or_else(|| panic!("no host {p:?} in this network"))
    }

    /// The address of `p`.
    pub fn addr(&self, p: Peer) -> &str {
        &self.host(p).addr
    }

    /// How many cluster nodes.
    pub fn nodes(&self) -> usize {
        self.nodes
    }

    /// The subnet, `10.213.<x>.0/24`.
    pub fn cidr(&self) -> String {
        format!("{}.0/24", self.subnet)
    }

    /// The command prefix that runs a program inside `p`'s namespace, as the `postgres` OS user
    /// when `as_postgres`. `setpriv` execs the program (no extra process in between, unlike
    /// `runuser`), so the PID the test holds is the program's own and a SIGKILL reaches it.
    pub fn prefix(&self, p: Peer, as_postgres: bool) -> Vec<String> {
        let mut v =
            vec![self.ip.display().to_string(), "netns".into(), "exec".into(), self.host(p).ns.clone()];
        if as_postgres {
            v.extend([
                self.setpriv.display().to_string(),
                "--reuid=postgres".into(),
                "--regid=postgres".into(),
                "--init-groups".into(),
                "--".into(),
            ]);
        }
        v
    }

    /// Drop all traffic between `a` and `b` (both directions, new and established connections).
    pub fn cut(&self, a: Peer, b: Peer) {
        let (ha, hb) = (self.host(a), self.host(b));
        for (me, other) in [(ha, hb), (hb, ha)] {
            let script = format!(
                "add rule inet partition input ip saddr {o} drop\nadd rule inet partition output ip daddr {o} drop\n",
                o = other.addr
            );
            self.nft_in(&me.ns, &script).unwrap_or_else(|e| panic!("cut {a:?} from {b:?}: {e}"));
        }
        self.cuts.lock().unwrap_or_else(|p| p.into_inner()).push((a, b));
    }

    /// Cut every pair of `a` × `b`.
    pub fn cut_all(&self, a: &[Peer], b: &[Peer]) {
        for &x in a {
            for &y in b {
                if x != y {
                    self.cut(x, y);
                }
            }
        }
    }

    /// The cluster nodes other than `node`.
    pub fn others(&self, node: usize) -> Vec<Peer> {
        (0..self.nodes).filter(|&i| i != node).map(Peer::Node).collect()
    }

    /// Cut `node` from the DCS and from every other node; the client still reaches it (it is
    /// the observer, and keeps writing to the isolated node).
    pub fn isolate(&self, node: usize) {
        let mut away = self.others(node);
        away.push(Peer::Etcd);
        self.cut_all(&[Peer::Node(node)], &away);
    }

    /// Cut `node` from the DCS only.
    pub fn cut_from_dcs(&self, node: usize) {
        self.cut(Peer::Node(node), Peer::Etcd);
    }

    /// Cut `node` from the other nodes only (it still reaches the DCS).
    pub fn cut_from_nodes(&self, node: usize) {
        self.cut_all(&[Peer::Node(node)], &self.others(node));
    }

    /// Take `p`'s link down (its side of the veth pair): the address goes unreachable at once.
    pub fn link_down(&self, p: Peer) {
        let h = self.host(p);
        self.ip(&["-n", &h.ns, "link", "set", IFACE, "down"])
            .unwrap_or_else(|e| panic!("link down {p:?}: {e}"));
        self.down.lock().unwrap_or_else(|p| p.into_inner()).push(p);
    }

    /// Bring `p`'s link up again (with its address and route).
    pub fn link_up(&self, p: Peer) {
        let h = self.host(p);
        self.ip(&["-n", &h.ns, "link", "set", IFACE, "up"]).unwrap_or_else(|e| panic!("link up {p:?}: {e}"));
        // A link that went down lost its subnet route only if the address was removed; it was
        // not, but re-adding is harmless and makes `up` independent of the kernel's behaviour.
        let _ = self.ip(&["-n", &h.ns, "addr", "add", &format!("{}/24", h.addr), "dev", IFACE]);
        self.down.lock().unwrap_or_else(|p| p.into_inner()).retain(|d| *d != p);
    }

    /// Remove every cut and bring every link up.
    pub fn heal(&self) {
        for h in &self.hosts {
            self.nft_in(&h.ns, "flush chain inet partition input\nflush chain inet partition output\n")
                .unwrap_or_else(|e| panic!("heal {:?}: {e}", h.peer));
        }
        self.cuts.lock().unwrap_or_else(|p| p.into_inner()).clear();
        let down = std::mem::take(&mut *self.down.lock().unwrap_or_else(|p| p.into_inner()));
        for p in down {
            self.link_up(p);
        }
    }

    /// The cuts in force.
    pub fn cuts(&self) -> Vec<(Peer, Peer)> {
        self.cuts.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Run the test body `fut` on a runtime whose threads (workers and blocking pool) all joined
    /// the client namespace; a panic in the body is resumed here, after the body (and the
    /// servers it owns) was dropped.
    pub fn block_on<F>(&self, fut: F) -> F::Output
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let path = format!("/run/netns/{}", self.host(Peer::Client).ns);
        let fd = Arc::new(std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}")));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .on_thread_start(move || {
                nix::sched::setns(&*fd, nix::sched::CloneFlags::CLONE_NEWNET)
                    .expect("join the client network namespace");
            })
            .build()
            .expect("build the client runtime");
        let r = rt.block_on(async { tokio::spawn(fut).await });
        rt.shutdown_timeout(Duration::from_secs(5));
        match r {
            Ok(v) => v,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("the test body was cancelled: {e}"),
        }
    }
}

/// A `10.213.<x>` prefix that no address or route on the host uses.
fn free_subnet(ip: &PathBuf) -> Option<String> {
    let show = |args: &[&str]| {
        Command::new(ip)
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    let used = format!(
        "{}\n{}",
        show(&["-4", "-o", "addr", "show"]),
        show(&["-4", "route", "show", "table", "all"])
    );
    let start = random_u32() % 250;
    (0..250)
        .map(|k| (start + k) % 250 + 1)
        .map(|x| format!("10.213.{x}"))
        .find(|s| !used.contains(&format!("{s}.")))
}

impl Drop for Net {
    fn drop(&mut self) {
        // Whatever still runs in our namespaces was started by this test: stop it by PID.
        let mut report = String::new();
        for h in &self.hosts {
            if let Ok(pids) = self.ip(&["netns", "pids", &h.ns]) {
                for pid in pids.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
                    let _ = writeln!(report, "netns: killing leftover PID {pid} in {}", h.ns);
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
        if !report.is_empty() {
            eprint!("{report}");
            std::thread::sleep(Duration::from_millis(200));
        }
        for h in &self.hosts {
            let _ = self.ip(&["netns", "del", &h.ns]);
        }
        // The bridge and the bridge ends of the veth pairs go with the hub namespace.
        let _ = self.ip(&["netns", "del", &self.hub]);
    }
}
