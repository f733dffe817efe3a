//! The agent's one persistent connection to its own server. Opening a connection costs a
//! SCRAM handshake and a backend fork, which dominated the idle CPU of the HA loop, so the loop's
//! observation and its other small queries share one connection, opened on first use and opened
//! again when it broke (PostgreSQL restarted, the backend was terminated) or when the connection
//! parameters changed.
//!
//! Every use is bounded: connecting (when needed) and the work together take at most the given
//! timeout. When the time runs out the connection is dropped (its I/O task aborted), because a
//! request may still wait in it for a server that no longer answers (SIGSTOP, hung I/O); the
//! next use connects again, and that attempt is bounded too.
//!
//! Owns: the connection and its I/O task. Must not hold session state between uses: callers
//! run statements that leave the session as they found it (`SET LOCAL` inside a transaction at
//! most), because every other user shares it.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls};

use super::observe::LocalConn;

/// Why a bounded use of the session failed.
#[derive(Debug)]
pub enum SessionError<E> {
    /// The deadline passed (while connecting or while the work ran).
    TimedOut,
    /// Connecting failed.
    Connect(String),
    /// The work failed.
    Work(E),
}

struct Live {
    conn: LocalConn,
    client: Arc<Client>,
    io: JoinHandle<()>,
}

impl Drop for Live {
    fn drop(&mut self) {
        // Close the socket now, even when a request still waits in it for a frozen server.
        self.io.abort();
    }
}

/// One persistent connection, shared by clones of the controller (see the module doc).
#[derive(Default)]
pub struct Session {
    live: Mutex<Option<Live>>,
    opened: AtomicU64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("opened", &self.opened()).finish_non_exhaustive()
    }
}

impl Session {
    /// A session with no connection yet.
    pub fn new() -> Session {
        Session::default()
    }

    /// How many connections this session has opened so far.
    pub fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// Drop the connection, if any (the next use connects again).
    pub fn close(&self) {
        let old = self.live.lock().expect("session lock").take();
        drop(old);
    }

    /// The open client for `conn`, if it is still usable.
    fn current(&self, conn: &LocalConn) -> Option<Arc<Client>> {
        let mut live = self.live.lock().expect("session lock");
        match live.as_ref() {
            Some(l) if l.conn == *conn && !l.client.is_closed() => Some(l.client.clone()),
            Some(_) => {
                *live = None;
                None
            }
            None => None,
        }
    }

    async fn client(&self, conn: &LocalConn, timeout: Duration) -> Result<Arc<Client>, String> {
        if let Some(c) = self.current(conn) {
            return Ok(c);
        }
        let (client, connection) = conn
            .config(timeout)
            .connect(NoTls)
            .await
            .map_err(|e| format!("connect to {}:{}: {e}", conn.host, conn.port))?;
        let io = tokio::spawn(async move {
            let _ = connection.await;
        });
        self.opened.fetch_add(1, Ordering::Relaxed);
        let client = Arc::new(client);
        let mut live = self.live.lock().expect("session lock");
        match live.as_ref() {
            // Another user connected meanwhile: use theirs, drop ours (its task is aborted).
            Some(l) if l.conn == *conn && !l.client.is_closed() => {
                io.abort();
                Ok(l.client.clone())
            }
            _ => {
                *live = Some(Live { conn: conn.clone(), client: client.clone(), io });
                Ok(client)
            }
        }
    }

    /// Forget `client` if it is still the current connection.
    fn discard(&self, client: &Arc<Client>) {
        let mut live = self.live.lock().expect("session lock");
        if live.as_ref().is_some_and(|l| Arc::ptr_eq(&l.client, client)) {
            *live = None;
        }
    }

    /// Run `work` on the connection to `conn` (connecting first when needed), the whole bounded
    /// by `timeout`. When `work` fails on a reused connection that has closed meanwhile (the server
    /// restarted since the last use), it runs once more on a new connection. The connection is
    /// dropped when the deadline passes or the work failed on a connection that has closed.
    pub async fn run<T, E, F, Fut>(
        &self,
        conn: &LocalConn,
        timeout: Duration,
        work: F,
    ) -> Result<T, SessionError<E>>
    where
        F: Fn(Arc<Client>) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut used: Option<Arc<Client>> = None;
        let attempt = async {
            let mut reconnected = false;
            loop {
                let before = self.opened();
                let client = self.client(conn, timeout).await.map_err(SessionError::Connect)?;
                used = Some(client.clone());
                match work(client.clone()).await {
                    Err(_) if client.is_closed() && !reconnected && self.opened() == before => {
                        self.discard(&client);
                        reconnected = true;
                    }
                    r => return r.map_err(SessionError::Work),
                }
            }
        };
        let out = match tokio::time::timeout(timeout, attempt).await {
            Ok(r) => r,
            Err(_) => Err(SessionError::TimedOut),
        };
        if let (Err(e), Some(c)) = (&out, &used)
            && (matches!(e, SessionError::TimedOut) || c.is_closed())
        {
            self.discard(c);
        }
        out
    }
}
