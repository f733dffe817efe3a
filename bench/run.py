#!/usr/bin/python3
"""praetor vs Patroni 4.1.5 on this machine, in one run: failover, switchover, bootstrap, rejoin,
idle footprint, REST latency/throughput and `list` wall time. See docs/BENCHMARKS.md.

Stage 1 (system Python): build praetor (release) and a venv with Patroni 4.1.5 from PyPI, then
re-run this file with the venv's Python (stage 2), which has psycopg for the SQL writers.
Stage 2 starts etcd on free loopback ports and, per timing profile and agent, 3-node clusters of
PostgreSQL 15 (run as the `postgres` OS user) from one configuration template.

Every process is started by this script, tracked by PID and stopped by PID at the end (also on
Ctrl-C); every wait is bounded; the temporary directory is removed unless --keep is given.
"""

import argparse
import base64
import datetime
import json
import os
import platform
import pwd
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATRONI_VERSION = "4.1.5"
PG_BIN = os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin")
ETCD = os.environ.get("ETCD_BIN", "/usr/bin/etcd")
WRK = shutil.which("wrk") or "/usr/bin/wrk"
DEFAULT_VENV = "/var/tmp/praetor-bench/patroni-%s-venv" % PATRONI_VERSION
SU_PASSWORD = "bench-su"

# name -> (ttl, loop_wait, retry_timeout, agents it runs for, description)
PROFILES = {
    "patroni-fast": (20, 2, 3, ("praetor", "patroni"), "Patroni's fastest (ttl 20 is Patroni's floor)"),
    "praetor-fast": (5, 1, 2, ("praetor",), "praetor's fastest safe profile (loop_wait + 2*retry_timeout <= ttl)"),
    "patroni-default": (30, 10, 10, ("praetor", "patroni"), "Patroni's defaults"),
}

# (key, label, unit, target for praetor or None)
METRICS = [
    ("crash_write_s", "crash failover → first write elsewhere", "s", "≤ 7 s at praetor-fast"),
    ("crash_primary_s", "crash failover → GET /primary 200 there", "s", None),
    ("crash_key_gone_s", "crash: leader key expired after", "s", None),
    ("crash_after_expiry_s", "crash: first write after the key expired", "s", "≤ 0.5 s"),
    ("graceful_write_s", "graceful stop → first write elsewhere", "s", "≤ 0.5 s"),
    ("graceful_primary_s", "graceful stop → GET /primary 200 there", "s", None),
    ("switchover_gap_s", "switchover: longest no-commit window", "s", "≤ 0.6 s"),
    ("switchover_cli_s", "switchover: CLI wall time", "s", None),
    ("bootstrap_s", "bootstrap → 1 leader + 2 streaming", "s", "≤ 3 s"),
    ("rejoin_s", "rejoin after crash → streaming", "s", "≤ 2 s"),
    ("idle_rss_mb", "idle RSS per agent (+ non-PG children)", "MB", "≤ 12 MB"),
    ("idle_cpu_s_per_min", "idle CPU per agent per minute", "s", "≤ 0.02 s"),
    ("idle_threads", "threads per agent", "", None),
    ("get_primary_p50_ms", "GET /primary p50, new connection", "ms", "≤ 0.2 ms"),
    ("get_primary_p99_ms", "GET /primary p99, new connection", "ms", None),
    ("wrk_rps", "GET /primary throughput (wrk)", "req/s", None),
    ("wrk_p50_ms", "GET /primary latency p50 under wrk", "ms", None),
    ("wrk_p99_ms", "GET /primary latency p99 under wrk", "ms", None),
    ("list_s", "`list` wall time (praetorctl / patronictl)", "s", "≤ 0.02 s"),
]


def log(msg):
    print("[%s] %s" % (datetime.datetime.now().strftime("%H:%M:%S"), msg), flush=True)


# ----------------------------------------------------------------------------------------------
# stage 1: build and venv


def run_checked(cmd, **kw):
    log("$ " + " ".join(cmd))
    r = subprocess.run(cmd, **kw)
    if r.returncode != 0:
        sys.exit("error: %s failed with exit code %d" % (cmd[0], r.returncode))


def build_venv(venv):
    ready = os.path.join(venv, ".bench-ready")
    if os.path.isfile(ready):
        return
    log("creating %s with patroni[etcd3,psycopg3]==%s from PyPI" % (venv, PATRONI_VERSION))
    shutil.rmtree(venv, ignore_errors=True)
    os.makedirs(os.path.dirname(venv), exist_ok=True)
    # The system Python, so the postgres user can run the venv (a pyenv under /root it could not).
    run_checked(["/usr/bin/python3", "-m", "venv", venv])
    run_checked([os.path.join(venv, "bin/pip"), "install", "--quiet", "--disable-pip-version-check",
                 "patroni[etcd3,psycopg3]==%s" % PATRONI_VERSION], timeout=900)
    for d in (os.path.dirname(venv), venv):
        os.chmod(d, 0o755)
    with open(ready, "w") as f:
        f.write(PATRONI_VERSION)


def stage1(args, argv):
    if os.geteuid() != 0:
        sys.exit("error: run as root (PostgreSQL and the agents run as the `postgres` OS user)")
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        sys.exit("error: no `postgres` OS user (install postgresql-15)")
    for path, what in ((ETCD, "etcd (apt install etcd-server)"),
                       (os.path.join(PG_BIN, "postgres"), "PostgreSQL 15 (apt install postgresql-15)")):
        if not os.access(path, os.X_OK):
            sys.exit("error: %s missing: %s" % (path, what))
    if not args.skip_build:
        run_checked(["cargo", "build", "--release", "--locked", "--bins", "-q"], cwd=ROOT, timeout=3600)
    for b in ("praetor", "praetorctl") if "praetor" in (args.agent or ["praetor"]) else ():
        if not os.access(os.path.join(args.target_dir, b), os.X_OK):
            sys.exit("error: %s/%s missing (build without --skip-build)" % (args.target_dir, b))
    # The postgres user runs praetor from the target directory: it must be able to reach it.
    build_venv(args.venv)
    py = os.path.join(args.venv, "bin/python")
    os.execv(py, [py, os.path.abspath(__file__)] + argv + ["--stage2"])


# ----------------------------------------------------------------------------------------------
# processes


class Procs:
    """Every process this script started, stopped by PID."""

    def __init__(self):
        self.procs = []  # (name, Popen)
        self.data_dirs = []  # postmasters to stop at the end

    def spawn(self, name, cmd, logpath, user=None, env=None):
        out = open(logpath, "ab")
        kw = {}
        if user:
            pw = pwd.getpwnam(user)
            kw = dict(user=pw.pw_uid, group=pw.pw_gid, extra_groups=[])
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True, env=env, **kw)
        out.close()
        self.procs.append((name, p))
        return p

    def stop(self, p, timeout, sig=signal.SIGTERM):
        if p.poll() is None:
            try:
                p.send_signal(sig)
            except ProcessLookupError:
                pass
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)

    def cleanup(self):
        for name, p in self.procs:
            if p.poll() is None:
                try:
                    p.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.time() + 30
        for name, p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
        for d in self.data_dirs:
            kill_postmaster(d, signal.SIGQUIT)


def postmaster_pid(data_dir):
    try:
        with open(os.path.join(data_dir, "postmaster.pid")) as f:
            pid = int(f.readline().strip())
    except (OSError, ValueError):
        return None
    try:  # only a live postgres process (not a reused PID)
        exe = os.readlink("/proc/%d/exe" % pid)
    except OSError:
        return None
    return pid if os.path.basename(exe).startswith("postgres") else None


def kill_postmaster(data_dir, sig):
    pid = postmaster_pid(data_dir)
    if pid:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
        deadline = time.time() + 10
        while time.time() < deadline and os.path.exists("/proc/%d" % pid):
            time.sleep(0.05)
    return pid


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(timeout, fn, step=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(step)
    return None


# ----------------------------------------------------------------------------------------------
# etcd


class Etcd:
    def __init__(self, procs, base):
        self.port, peer = free_port(), free_port()
        d = os.path.join(base, "etcd")
        os.makedirs(d)
        self.url = "http://127.0.0.1:%d" % self.port
        self.proc = procs.spawn("etcd", [
            ETCD, "--name", "bench", "--data-dir", os.path.join(d, "data"),
            "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
            "--listen-peer-urls", "http://127.0.0.1:%d" % peer,
            "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % peer,
            "--initial-cluster", "bench=http://127.0.0.1:%d" % peer], os.path.join(d, "etcd.log"))
        if not wait_until(30, self.healthy, 0.1):
            sys.exit("error: etcd did not start (log in %s)" % d)

    def healthy(self):
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=1) as r:
                return b"true" in r.read()
        except OSError:
            return False

    def _call(self, path, body):
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=2) as r:
            return json.loads(r.read())

    def get(self, key):
        try:
            r = self._call("/v3/kv/range", {"key": base64.b64encode(key.encode()).decode()})
        except OSError:
            return None
        kvs = r.get("kvs") or []
        return base64.b64decode(kvs[0]["value"]).decode() if kvs else None

    def put(self, key, value):
        self._call("/v3/kv/put", {"key": base64.b64encode(key.encode()).decode(),
                                  "value": base64.b64encode(value.encode()).decode()})


# ----------------------------------------------------------------------------------------------
# cluster

TEMPLATE = """scope: {scope}
namespace: /service/
name: {name}
restapi:
  listen: 127.0.0.1:{api}
  connect_address: 127.0.0.1:{api}
etcd3:
  hosts: 127.0.0.1:{etcd}
bootstrap:
  dcs:
    ttl: {ttl}
    loop_wait: {loop_wait}
    retry_timeout: {retry_timeout}
    maximum_lag_on_failover: 1048576
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        wal_log_hints: "on"
        max_wal_senders: 10
        max_replication_slots: 10
  initdb:
    - encoding: UTF8
    - locale: C
postgresql:
  listen: 127.0.0.1:{pg}
  connect_address: 127.0.0.1:{pg}
  data_dir: {home}/data
  bin_dir: {pg_bin}
  pgpass: {home}/pgpass
  use_unix_socket: {unix_socket}
  authentication:
    superuser: {{username: postgres, password: {su}}}
    replication: {{username: replicator, password: bench-rep}}
    rewind: {{username: rewinder, password: bench-rw}}
  parameters:
    unix_socket_directories: {home}
    shared_buffers: 32MB
    max_connections: 50
  pg_hba:
    - local all all trust
    - host all all 127.0.0.1/32 scram-sha-256
    - host replication replicator 127.0.0.1/32 scram-sha-256
watchdog:
  mode: "off"
"""


def http_get(port, path, timeout=1.0):
    """(status, body) of a GET with a fresh connection; (None, None) when it fails."""
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (OSError, ValueError):
        return None, None


def http_post(port, path, body, timeout=2.0):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=body.encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


class Node:
    def __init__(self, cluster, i):
        self.name = "pg%d" % i
        self.home = os.path.join(cluster.dir, self.name)
        os.makedirs(self.home)
        os.chmod(self.home, 0o700)
        self.data_dir = os.path.join(self.home, "data")
        self.api, self.pg = free_port(), free_port()
        self.cfg = os.path.join(cluster.dir, self.name + ".yml")
        self.log = os.path.join(cluster.dir, self.name + ".log")
        with open(self.cfg, "w") as f:
            f.write(TEMPLATE.format(scope=cluster.scope, name=self.name, api=self.api, pg=self.pg,
                                    etcd=cluster.etcd.port, home=self.home, pg_bin=PG_BIN,
                                    su=SU_PASSWORD, unix_socket=str(cluster.bench.args.unix_socket).lower(),
                                    **cluster.timing))
        pw = pwd.getpwnam("postgres")
        for p in (self.home, self.cfg):
            os.chown(p, pw.pw_uid, pw.pw_gid)
        self.proc = None

    def status(self, timeout=1.0):
        code, body = http_get(self.api, "/patroni", timeout)
        if code != 200:
            return {}
        try:
            return json.loads(body)
        except ValueError:
            return {}


class Cluster:
    def __init__(self, bench, agent, profile, seq):
        self.bench, self.agent, self.etcd, self.procs = bench, agent, bench.etcd, bench.procs
        ttl, lw, rt = PROFILES[profile][:3]
        self.timing = dict(ttl=ttl, loop_wait=lw, retry_timeout=rt)
        self.scope = "%s-%s-%d" % (agent, profile, seq)
        self.dir = os.path.join(bench.base, self.scope)
        os.makedirs(self.dir)
        os.chmod(self.dir, 0o755)
        self.nodes = [Node(self, i) for i in range(3)]
        for n in self.nodes:
            self.procs.data_dirs.append(n.data_dir)

    def agent_cmd(self, node):
        if self.agent == "praetor":
            return [os.path.join(self.bench.bin, "praetor"), node.cfg]
        return [os.path.join(self.bench.args.venv, "bin/patroni"), node.cfg]

    def start(self, node):
        env = dict(os.environ, HOME=node.home, RUST_LOG="info")
        env.pop("PATRONICTL_CONFIG_FILE", None)
        node.proc = self.procs.spawn("%s/%s" % (self.scope, node.name), self.agent_cmd(node), node.log,
                                     user="postgres", env=env)

    def start_all(self):
        for n in self.nodes:
            self.start(n)

    def leader_key(self):
        return self.etcd.get("/service/%s/leader" % self.scope)

    def healthy(self):
        """The leader's index when one running primary holds the leader key and two replicas stream."""
        prim, streaming = [], 0
        for i, n in enumerate(self.nodes):
            s = n.status()
            if s.get("role") in ("primary", "master") and s.get("state") == "running":
                prim.append(i)
            elif s.get("role") == "replica" and s.get("replication_state") == "streaming":
                streaming += 1
        if len(prim) == 1 and streaming == 2 and self.leader_key() == self.nodes[prim[0]].name:
            return ("leader", prim[0])
        return None

    def wait_healthy(self, timeout=180):
        r = wait_until(timeout, self.healthy, 0.05)
        if not r:
            raise BenchError("%s: not healthy within %ds" % (self.scope, timeout))
        return r[1]

    def stop(self):
        """Stop every agent (SIGTERM, bounded), then any postmaster left, and remove the files."""
        live = [n for n in self.nodes if n.proc and n.proc.poll() is None]
        for n in live:
            n.proc.send_signal(signal.SIGTERM)
        for n in live:
            self.procs.stop(n.proc, 60)
        for n in self.nodes:
            kill_postmaster(n.data_dir, signal.SIGQUIT)
        if not self.bench.args.keep:
            shutil.rmtree(self.dir, ignore_errors=True)


class BenchError(Exception):
    pass


# ----------------------------------------------------------------------------------------------
# SQL writers

def pg_connect(node):
    import psycopg
    return psycopg.connect(host="127.0.0.1", port=node.pg, user="postgres", password=SU_PASSWORD,
                           dbname="postgres", connect_timeout=2, autocommit=True,
                           options="-c statement_timeout=1000")


def try_write(conns, node):
    """One INSERT on `node` (reusing its connection); True when the commit was acknowledged."""
    try:
        c = conns.get(node.name)
        if c is None or c.closed:
            c = conns[node.name] = pg_connect(node)
        c.execute("INSERT INTO bench_writes(node) VALUES (%s)", (node.name,))
        return True
    except Exception:
        c = conns.pop(node.name, None)
        if c is not None:
            try:
                c.close()
            except Exception:
                pass
        return False


def close_all(conns):
    for c in conns.values():
        try:
            c.close()
        except Exception:
            pass


class Writer(threading.Thread):
    """Commits every 20 ms on whichever node accepts writes; records acknowledged commit times."""

    def __init__(self, cluster):
        super().__init__(daemon=True)
        self.cluster, self.acks, self.stop_ev = cluster, [], threading.Event()
        self.current = None

    def run(self):
        conns = {}
        nodes = self.cluster.nodes
        nxt = time.monotonic()
        while not self.stop_ev.is_set():
            order = sorted(nodes, key=lambda n: n.name != self.current)
            for n in order:
                if try_write(conns, n):
                    self.acks.append(time.monotonic())
                    self.current = n.name
                    break
            nxt += 0.02
            d = nxt - time.monotonic()
            if d > 0:
                time.sleep(d)
            else:
                nxt = time.monotonic()
        close_all(conns)

    def max_gap(self, since):
        a = [t for t in self.acks if t >= since]
        prev = [t for t in self.acks if t < since]
        if prev:
            a.insert(0, prev[-1])
        return max((b - x for x, b in zip(a, a[1:])), default=None)


def watch_takeover(cluster, exclude, t0, timeout):
    """After an event at monotonic t0: seconds until the first acknowledged write on a node other
    than `exclude`, and until GET /primary answers 200 on that node. Polls every 20 ms per node."""
    res, lock, done = {}, threading.Lock(), threading.Event()

    def poll(node):
        conns, wrote, api = {}, None, None
        deadline = t0 + timeout
        while time.monotonic() < deadline and not done.is_set():
            if wrote is None and try_write(conns, node):
                wrote = time.monotonic() - t0
            if api is None:
                code, _ = http_get(node.api, "/primary", 0.5)
                if code == 200:
                    api = time.monotonic() - t0
            if wrote is not None and api is not None:
                with lock:
                    res.setdefault("first", (node.name, wrote, api))
                done.set()
                break
            time.sleep(0.02)
        close_all(conns)

    def key_gone():
        deadline = t0 + timeout
        while time.monotonic() < deadline and not done.is_set():
            if cluster.leader_key() != exclude.name:
                res["key_gone"] = time.monotonic() - t0
                return
            time.sleep(0.02)

    threads = [threading.Thread(target=poll, args=(n,), daemon=True) for n in cluster.nodes if n is not exclude]
    threads.append(threading.Thread(target=key_gone, daemon=True))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 5)
    done.set()
    if "first" not in res:
        raise BenchError("%s: no node took over within %ds" % (cluster.scope, timeout))
    return res["first"] + (res.get("key_gone"),)


# ----------------------------------------------------------------------------------------------
# footprint, REST, CLI

def proc_tree():
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
            ppid = int(st[st.rindex(")") + 2:].split()[1])
        except (OSError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d))
    return children


def agent_pids(pid):
    """The agent and its descendants that are not PostgreSQL processes."""
    tree, out, todo = proc_tree(), [], [pid]
    while todo:
        p = todo.pop()
        try:
            exe = os.readlink("/proc/%d/exe" % p)
        except OSError:
            continue
        if p != pid and exe.startswith(PG_BIN):
            continue
        out.append(p)
        todo.extend(tree.get(p, []))
    return out


def cpu_ticks(pid):
    """utime+stime of the process and of its reaped children."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
    except OSError:
        return 0
    fields = st[st.rindex(")") + 2:].split()
    return sum(int(fields[i]) for i in (11, 12, 13, 14))


def status_field(pid, key):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def measure_idle(cluster, secs):
    hz = os.sysconf("SC_CLK_TCK")
    pids = [n.proc.pid for n in cluster.nodes]
    tree0 = {p: agent_pids(p) for p in pids}
    cpu0 = {p: sum(cpu_ticks(x) for x in tree0[p]) for p in pids}
    rss = {p: 0 for p in pids}
    end = time.monotonic() + secs
    while time.monotonic() < end:
        for p in pids:
            rss[p] = max(rss[p], sum(status_field(x, "VmRSS") for x in agent_pids(p)))
        time.sleep(min(2.0, max(0.0, end - time.monotonic())))
    out = {"idle_rss_mb": [], "idle_cpu_s_per_min": [], "idle_threads": []}
    for p in pids:
        tree1 = agent_pids(p)
        cpu1 = sum(cpu_ticks(x) for x in tree1)
        rss[p] = max(rss[p], sum(status_field(x, "VmRSS") for x in tree1))
        out["idle_rss_mb"].append(round(rss[p] / 1024.0, 1))
        out["idle_cpu_s_per_min"].append(round((cpu1 - cpu0[p]) / hz * 60.0 / secs, 3))
        out["idle_threads"].append(sum(status_field(x, "Threads") for x in tree1))
    return out


def get_once(port, path):
    t = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        buf = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    dt = time.perf_counter() - t
    return int(buf.split(b" ", 2)[1]), dt


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100.0 * (len(xs) - 1))))]


def measure_rest(cluster, leader, n, wrk_secs):
    port = cluster.nodes[leader].api
    lat = []
    for _ in range(20):  # warm-up
        get_once(port, "/primary")
    for _ in range(n):
        code, dt = get_once(port, "/primary")
        if code != 200:
            raise BenchError("GET /primary on the leader answered %d" % code)
        lat.append(dt * 1000)
    out = {"get_primary_p50_ms": [round(pct(lat, 50), 3)], "get_primary_p99_ms": [round(pct(lat, 99), 3)]}
    if os.access(WRK, os.X_OK) and wrk_secs > 0:
        r = subprocess.run([WRK, "-t2", "-c16", "-d%ds" % wrk_secs, "--latency",
                            "http://127.0.0.1:%d/primary" % port],
                           capture_output=True, text=True, timeout=wrk_secs + 60)
        w = parse_wrk(r.stdout)
        if w.get("non2xx"):
            log("  wrk: %d non-2xx answers" % w["non2xx"])
        out.update({"wrk_rps": [w.get("rps")], "wrk_p50_ms": [w.get("p50")], "wrk_p99_ms": [w.get("p99")]})
    return out


def wrk_ms(v):
    for unit, f in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if v.endswith(unit):
            return round(float(v[:-len(unit)]) * f, 3)
    return None


def parse_wrk(text):
    out = {}
    for line in text.splitlines():
        p = line.split()
        if line.startswith("Requests/sec:"):
            out["rps"] = round(float(p[1]))
        elif len(p) == 2 and p[0] == "50%":
            out["p50"] = wrk_ms(p[1])
        elif len(p) == 2 and p[0] == "99%":
            out["p99"] = wrk_ms(p[1])
        elif line.strip().startswith("Non-2xx"):
            out["non2xx"] = int(p[-1])
    return out


def ctl_cmd(bench, agent, node):
    if agent == "praetor":
        return [os.path.join(bench.bin, "praetorctl"), "-c", node.cfg]
    return [os.path.join(bench.args.venv, "bin/patronictl"), "-c", node.cfg]


def ctl_env(node):
    env = dict(os.environ, HOME=node.home)
    env.pop("PATRONICTL_CONFIG_FILE", None)
    return env


def measure_list(bench, cluster, repeats):
    node = cluster.nodes[0]
    times = []
    for _ in range(repeats):
        t = time.monotonic()
        r = subprocess.run(ctl_cmd(bench, cluster.agent, node) + ["list"], capture_output=True,
                           env=ctl_env(node), timeout=60)
        times.append(time.monotonic() - t)
        if r.returncode != 0 or b"Leader" not in r.stdout:
            raise BenchError("list failed: %s" % (r.stdout + r.stderr).decode(errors="replace"))
    return {"list_s": [round(x, 4) for x in times]}


# ----------------------------------------------------------------------------------------------
# the scenarios


def switchover_method(bench, cluster, leader):
    """How this cluster is switched over: the agent's own CLI when it can, else what works."""
    if cluster.agent == "patroni":
        return "patronictl"
    praetorctl = os.path.join(bench.bin, "praetorctl")
    r = subprocess.run([praetorctl, "switchover", "--help"], capture_output=True, timeout=30)
    if r.returncode == 0:
        return "praetorctl"
    code = http_post(cluster.nodes[leader].api, "/switchover", "{}")
    if code not in (None, 404, 405, 501):
        return "patronictl"
    return "dcs-failover-key"


def do_switchover(bench, cluster, method, leader, cand):
    node = cluster.nodes[leader]
    if method == "dcs-failover-key":
        cluster.etcd.put("/service/%s/failover" % cluster.scope,
                         json.dumps({"leader": node.name, "member": cluster.nodes[cand].name}))
        return
    if method == "praetorctl":
        cmd = ctl_cmd(bench, "praetor", node)
    else:
        cmd = [os.path.join(bench.args.venv, "bin/patronictl"), "-c", node.cfg]
    cmd += ["switchover", "--candidate", cluster.nodes[cand].name, "--force", cluster.scope]
    r = subprocess.run(cmd, capture_output=True, env=ctl_env(node), timeout=120)
    text = (r.stdout + r.stderr).decode(errors="replace")
    if r.returncode != 0 or "failed" in text.lower():
        raise BenchError("%s switchover failed: %s" % (method, text.strip()))


def scenario_switchover(bench, cluster, leader, repeats, res):
    method = switchover_method(bench, cluster, leader)
    res.setdefault("_notes", []).append("switchover via " + method)
    log("  switchover via %s" % method)
    for k in range(repeats):
        streaming = [i for i, n in enumerate(cluster.nodes)
                     if i != leader and n.status().get("replication_state") == "streaming"]
        cand = streaming[0] if streaming else (leader + 1) % 3
        w = Writer(cluster)
        w.start()
        if not wait_until(10, lambda: len(w.acks) > 10, 0.02):
            w.stop_ev.set()
            raise BenchError("the writer cannot commit on the leader")
        t0 = time.monotonic()
        try:
            do_switchover(bench, cluster, method, leader, cand)
            cli = time.monotonic() - t0
            new = wait_until(120, lambda: (lambda h: h and h[1] != leader and h)(cluster.healthy()), 0.05)
            if not new:
                raise BenchError("switchover did not complete")
            # keep writing a moment after the new leader is settled
            wait_until(30, lambda: w.acks and w.acks[-1] > time.monotonic() - 0.1 and w.current
                       == cluster.nodes[new[1]].name, 0.02)
            time.sleep(0.5)
        finally:
            w.stop_ev.set()
            w.join(10)
        gap = w.max_gap(t0 - 1.0)
        res.setdefault("switchover_gap_s", []).append(round(gap, 3))
        res.setdefault("switchover_cli_s", []).append(round(cli, 3))
        log("  switchover %d: %s -> %s, no-commit window %.3f s (CLI %.2f s)"
            % (k + 1, cluster.nodes[leader].name, cluster.nodes[new[1]].name, gap, cli))
        leader = new[1]
        time.sleep(1)
    return leader


def scenario_graceful(bench, cluster, leader, repeats, res):
    for k in range(repeats):
        node = cluster.nodes[leader]
        t0 = time.monotonic()
        node.proc.send_signal(signal.SIGTERM)
        name, wrote, api, gone = watch_takeover(cluster, node, t0, 120)
        res.setdefault("graceful_write_s", []).append(round(wrote, 3))
        res.setdefault("graceful_primary_s", []).append(round(api, 3))
        log("  graceful stop %d: %s stopped, leader key released after %s s, first write on %s after %.3f s, "
            "/primary 200 after %.3f s" % (k + 1, node.name, gone, name, wrote, api))
        bench.procs.stop(node.proc, 90)
        kill_postmaster(node.data_dir, signal.SIGQUIT)
        cluster.start(node)
        leader = cluster.wait_healthy()
    return leader


def scenario_crash(bench, cluster, leader, repeats, res):
    lw = cluster.timing["loop_wait"]
    ttl = cluster.timing["ttl"]
    for k in range(repeats):
        node = cluster.nodes[leader]
        time.sleep(random.uniform(0, lw))  # a random phase of the leader's renewal cycle
        pm = postmaster_pid(node.data_dir)
        t0 = time.monotonic()
        node.proc.kill()
        if pm:
            try:
                os.kill(pm, signal.SIGKILL)
            except ProcessLookupError:
                pass
        node.proc.wait(10)
        name, wrote, api, gone = watch_takeover(cluster, node, t0, max(ttl, 20) + 3 * lw + 90)
        res.setdefault("crash_write_s", []).append(round(wrote, 3))
        if gone is not None:
            res.setdefault("crash_key_gone_s", []).append(round(gone, 3))
            res.setdefault("crash_after_expiry_s", []).append(round(wrote - gone, 3))
        res.setdefault("crash_primary_s", []).append(round(api, 3))
        log("  crash %d: %s killed, leader key gone after %s s, first write on %s after %.3f s, "
            "/primary 200 after %.3f s" % (k + 1, node.name, gone, name, wrote, api))
        # rejoin: the old leader's agent restarted on its crashed data directory
        wait_until(15, lambda: postmaster_pid(node.data_dir) is None, 0.05)
        t1 = time.monotonic()
        cluster.start(node)
        ok = wait_until(180, lambda: (lambda s: s.get("role") == "replica"
                                      and s.get("replication_state") == "streaming")(node.status()), 0.05)
        if not ok:
            raise BenchError("%s did not rejoin within 180 s" % node.name)
        rj = time.monotonic() - t1
        res.setdefault("rejoin_s", []).append(round(rj, 3))
        log("  rejoin %d: %s streaming %.3f s after its agent started" % (k + 1, node.name, rj))
        leader = cluster.wait_healthy()
    return leader


def bootstrap(bench, agent, profile, seq, res):
    c = Cluster(bench, agent, profile, seq)
    t0 = time.monotonic()
    c.start_all()
    try:
        leader = c.wait_healthy(240)
    except BenchError:
        c.stop()
        raise
    dt = time.monotonic() - t0
    res.setdefault("bootstrap_s", []).append(round(dt, 3))
    log("  bootstrap %d: healthy after %.3f s (leader %s)" % (seq, dt, c.nodes[leader].name))
    return c, leader


def run_suite(bench, agent, profile):
    a = bench.args
    res = {}
    log("== %s, profile %s (ttl/loop_wait/retry_timeout %s)" % (agent, profile, "/".join(map(str, PROFILES[profile][:3]))))
    cluster = None
    try:
        for b in range(a.bootstrap_repeats):
            if cluster:
                cluster.stop()
            cluster, leader = bootstrap(bench, agent, profile, b + 1, res)
        conns = {}
        if not try_write_setup(conns, cluster.nodes[leader]):
            raise BenchError("cannot create the bench table on the leader")
        time.sleep(3)
        log("  idle footprint over %d s" % a.idle_secs)
        res.update(measure_idle(cluster, a.idle_secs))
        log("    RSS MB %s, CPU s/min %s, threads %s" % (res["idle_rss_mb"], res["idle_cpu_s_per_min"], res["idle_threads"]))
        res.update(measure_rest(cluster, leader, a.rest_requests, a.wrk_secs))
        log("    GET /primary p50 %.3f ms p99 %.3f ms; wrk %s req/s" % (
            res["get_primary_p50_ms"][0], res["get_primary_p99_ms"][0], res.get("wrk_rps")))
        res.update(measure_list(bench, cluster, a.list_repeats))
        log("    list %s s" % res["list_s"])
        leader = scenario_switchover(bench, cluster, leader, a.switchover_repeats, res)
        leader = scenario_graceful(bench, cluster, leader, a.failover_repeats, res)
        scenario_crash(bench, cluster, leader, a.failover_repeats, res)
    except BenchError as e:
        log("  ERROR: %s" % e)
        res.setdefault("_errors", []).append(str(e))
        if cluster:
            for n in cluster.nodes:
                try:
                    with open(n.log, "rb") as f:
                        f.seek(max(0, os.path.getsize(n.log) - 3000))
                        log("  --- %s log tail ---\n%s" % (n.name, f.read().decode(errors="replace")))
                except OSError:
                    pass
    finally:
        if cluster:
            if a.keep_logs:
                dst = os.path.join(a.keep_logs, cluster.scope)
                os.makedirs(dst, exist_ok=True)
                for n in cluster.nodes:
                    shutil.copy(n.log, dst)
            cluster.stop()
    return res


def try_write_setup(conns, node):
    try:
        c = conns[node.name] = pg_connect(node)
        c.execute("CREATE TABLE IF NOT EXISTS bench_writes(id bigserial PRIMARY KEY, node text,"
                  " at timestamptz DEFAULT clock_timestamp())")
        c.close()
        return True
    except Exception as e:
        log("  create table: %s" % e)
        return False


# ----------------------------------------------------------------------------------------------
# report


def fmt(v, unit):
    if v is None:
        return "–"
    if unit == "req/s" or unit == "":
        return "%d" % round(v)
    if unit == "ms":
        return "%.3g" % v if v < 10 else "%.0f" % v
    return "%.3g" % v if v < 100 else "%.0f" % v


def cell(vals, unit):
    vals = [v for v in (vals or []) if v is not None]
    if not vals:
        return "n/a"
    m = statistics.median(vals)
    if len(vals) == 1 or min(vals) == max(vals):
        return fmt(m, unit)
    return "%s (%s–%s)" % (fmt(m, unit), fmt(min(vals), unit), fmt(max(vals), unit))


def table(results):
    lines = []
    for profile, per_agent in results.items():
        ttl, lw, rt, agents, desc = PROFILES[profile]
        lines.append("")
        lines.append("### %s: ttl %d / loop_wait %d / retry_timeout %d — %s" % (profile, ttl, lw, rt, desc))
        lines.append("")
        head = "| measurement | " + " | ".join(agents) + " | praetor target |"
        lines.append(head)
        lines.append("|---" * (len(agents) + 2) + "|")
        for key, label, unit, target in METRICS:
            if not any(per_agent.get(a, {}).get(key) for a in agents):
                continue
            row = [label + (" (%s)" % unit if unit else "")]
            row += [cell(per_agent.get(a, {}).get(key), unit) for a in agents]
            row.append(target or "")
            lines.append("| " + " | ".join(row) + " |")
        notes = ["- %s: %s" % (a, n) for a in agents
                 for n in per_agent.get(a, {}).get("_notes", []) + per_agent.get(a, {}).get("_errors", [])]
        if notes:
            lines.append("")
            lines.extend(notes)
    return "\n".join(lines)


def machine():
    info = {"host": platform.node(), "kernel": platform.release(), "cpus": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            info["mem_gb"] = round(int(f.readline().split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    info["loadavg_start"] = os.getloadavg()
    return info


def versions(args):
    def out(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            return None
    return {
        "praetor": out([os.path.join(args.target_dir, "praetor"), "--version"]),
        "praetor_commit": out(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]),
        "patroni": out([os.path.join(args.venv, "bin/patroni"), "--version"]),
        "postgres": out([os.path.join(PG_BIN, "postgres"), "--version"]),
        "etcd": out([ETCD, "--version"]),
        "wrk": out([WRK, "--version"]) if os.access(WRK, os.X_OK) else None,
        "python": platform.python_version(),
    }


class Bench:
    def __init__(self, args):
        self.args = args
        self.procs = Procs()
        self.base = tempfile.mkdtemp(prefix="praetor-bench-", dir="/tmp")
        os.chmod(self.base, 0o755)
        self.etcd = None
        # A copy of the binaries: a rebuild during the run cannot change what is measured.
        self.bin = os.path.join(self.base, "bin")
        os.makedirs(self.bin)
        os.chmod(self.bin, 0o755)
        for b in ("praetor", "praetorctl"):
            if os.path.exists(os.path.join(args.target_dir, b)):
                shutil.copy2(os.path.join(args.target_dir, b), self.bin)


def stage2(args):
    bench = Bench(args)

    def on_signal(signum, frame):
        raise KeyboardInterrupt()
    signal.signal(signal.SIGTERM, on_signal)
    doc = {"started": datetime.datetime.now().isoformat(timespec="seconds"), "machine": machine(),
           "versions": versions(args), "settings": {k: v for k, v in vars(args).items() if k != "stage2"},
           "profiles": {p: dict(zip(("ttl", "loop_wait", "retry_timeout"), PROFILES[p][:3])) for p in args.profile},
           "results": {}}
    log("versions: %s" % json.dumps(doc["versions"]))
    try:
        bench.etcd = Etcd(bench.procs, bench.base)
        for profile in args.profile:
            agents = [a for a in PROFILES[profile][3] if a in args.agent]
            for agent in agents:
                r = run_suite(bench, agent, profile)
                doc["results"].setdefault(profile, {})[agent] = r
                doc["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
                doc["machine"]["loadavg_end"] = os.getloadavg()
                with open(args.json, "w") as f:
                    json.dump(doc, f, indent=1)
    except KeyboardInterrupt:
        log("interrupted: cleaning up")
    finally:
        bench.procs.cleanup()
        if not args.keep:
            shutil.rmtree(bench.base, ignore_errors=True)
        else:
            log("kept %s" % bench.base)
    print(table(doc["results"]))
    print("\nJSON: %s" % args.json)
    errors = [e for p in doc["results"].values() for r in p.values() for e in r.get("_errors", [])]
    return 1 if errors else 0


def main():
    argv = sys.argv[1:]
    p = argparse.ArgumentParser(
        description="Benchmark praetor against Patroni %s on this machine (run as root)." % PATRONI_VERSION)
    p.add_argument("--quick", action="store_true", help="fewer repeats and shorter idle/wrk windows (development)")
    p.add_argument("--profile", action="append", choices=list(PROFILES),
                   help="timing profile(s) to run (default: all, in the order %s)" % ", ".join(PROFILES))
    p.add_argument("--agent", action="append", choices=["praetor", "patroni"], help="agent(s) (default: both)")
    p.add_argument("--failover-repeats", type=int, help="crash and graceful-stop repeats (default 5, quick 2)")
    p.add_argument("--switchover-repeats", type=int, help="default 5, quick 2")
    p.add_argument("--bootstrap-repeats", type=int, help="default 3, quick 1")
    p.add_argument("--idle-secs", type=int, help="idle footprint window (default 60, quick 15)")
    p.add_argument("--rest-requests", type=int, help="GET /primary requests (default 2000, quick 300)")
    p.add_argument("--wrk-secs", type=int, help="wrk duration (default 10, quick 3; 0 skips wrk)")
    p.add_argument("--list-repeats", type=int, help="default 5, quick 3")
    p.add_argument("--json", help="where to write the results (default bench/results/latest.json)")
    p.add_argument("--venv", default=DEFAULT_VENV, help="Patroni venv (kept between runs; default %(default)s)")
    p.add_argument("--target-dir", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release"),
                   help="where the release binaries are (default target/release)")
    p.add_argument("--unix-socket", action="store_true",
                   help="postgresql.use_unix_socket: true (the agents reach PostgreSQL over the socket, trust)")
    p.add_argument("--skip-build", action="store_true", help="do not run cargo build")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (data, logs)")
    p.add_argument("--keep-logs", metavar="DIR", help="copy every agent log into DIR")
    p.add_argument("--table", metavar="JSON", help="print the table of an earlier run's JSON and exit")
    p.add_argument("--stage2", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.table:
        with open(args.table) as f:
            print(table(json.load(f)["results"]))
        return
    q = args.quick
    for k, full, quick in (("failover_repeats", 5, 2), ("switchover_repeats", 5, 2), ("bootstrap_repeats", 3, 1),
                           ("idle_secs", 60, 15), ("rest_requests", 2000, 300), ("wrk_secs", 10, 3),
                           ("list_repeats", 5, 3)):
        if getattr(args, k) is None:
            setattr(args, k, quick if q else full)
    args.profile = args.profile or list(PROFILES)
    args.agent = args.agent or ["praetor", "patroni"]
    if args.json is None:
        os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
        args.json = os.path.join(ROOT, "bench", "results", "latest.json")
    if args.keep_logs:
        args.keep_logs = os.path.abspath(args.keep_logs)
    if args.bootstrap_repeats < 1:
        p.error("--bootstrap-repeats must be at least 1")
    if not args.stage2:
        stage1(args, argv)
    sys.exit(stage2(args))


if __name__ == "__main__":
    main()
