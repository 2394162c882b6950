//! The public listeners' open connections, so that no client can starve the
//! others: a cap per client address, a connection that sends no request for
//! `header_timeout` is closed whatever state it is in (before its first
//! byte, mid TLS or HTTP/2 preface, idle on HTTP/2), and at the overall cap
//! the connection idle longest is closed to make room for a new one.
//!
//! A request costs a few atomic operations and a clock read; the lock is
//! taken only when a connection opens or closes.

use std::collections::HashMap;
use std::future::Future;
use std::io::{self, IoSlice};
use std::net::IpAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::server::graceful::GracefulConnection;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{watch, Notify};

/// Connections closed at once for the per-client cap, for the metrics.
static REFUSED: AtomicU64 = AtomicU64::new(0);
/// Connections asked to close to make room, for the metrics.
static SHED: AtomicU64 = AtomicU64::new(0);

/// Connections refused by the per-client cap since start.
pub fn refused() -> u64 {
    REFUSED.load(Ordering::Relaxed)
}

/// Idle connections closed to make room since start.
pub fn shed() -> u64 {
    SHED.load(Ordering::Relaxed)
}

/// Every open connection of the public listeners.
pub struct Connections {
    max: usize,
    per_client: usize,
    epoch: Instant,
    open: Mutex<Open>,
    /// Wakes accept loops waiting for room: a connection closed or went idle.
    room: Notify,
    /// Accept loops waiting for room; only while there are any does the end
    /// of a request wake them.
    waiting: AtomicUsize,
}

#[derive(Default)]
struct Open {
    next: u64,
    by_id: HashMap<u64, Arc<Slot>>,
    by_client: HashMap<IpAddr, usize>,
}

struct Slot {
    id: u64,
    client: IpAddr,
    owner: Arc<Connections>,
    /// Requests being answered.
    busy: AtomicUsize,
    /// When it opened, last finished a request or last sent response
    /// bytes, in nanoseconds since `epoch`.
    idle_since: AtomicU64,
    /// Its last write waited for the client to take bytes: a response is
    /// going out.
    sending: AtomicBool,
    /// Asked to close to make room; set once.
    shed: AtomicBool,
    close: Notify,
}

/// What the accept loop does with a new connection.
pub enum Admit {
    Serve(Connection),
    /// Its address holds `max_connections_per_client` already: close it.
    Refuse,
}

impl Connections {
    pub fn new(max: usize, per_client: usize) -> Arc<Connections> {
        Arc::new(Connections {
            max: max.max(1),
            per_client: per_client.max(1),
            epoch: Instant::now(),
            open: Mutex::default(),
            room: Notify::new(),
            waiting: AtomicUsize::new(0),
        })
    }

    /// Admits a connection from `client`, waiting while every slot is taken
    /// (after asking the connection idle longest to close). `capped` is
    /// false for trusted proxies, whose connections carry many clients.
    pub async fn admit(self: &Arc<Self>, client: IpAddr, capped: bool) -> Admit {
        let client = network(client);
        let mut waiting: Option<Waiting<'_>> = None;
        loop {
            let mut room = pin!(self.room.notified());
            room.as_mut().enable();
            if let Some(admitted) = self.try_admit(client, capped) {
                return admitted;
            }
            waiting.get_or_insert_with(|| Waiting::new(&self.waiting));
            room.await;
        }
    }

    fn try_admit(self: &Arc<Self>, client: IpAddr, capped: bool) -> Option<Admit> {
        let mut open = self.open.lock().expect("connection table poisoned");
        let held = open.by_client.get(&client).copied().unwrap_or(0);
        if capped && held >= self.per_client {
            REFUSED.fetch_add(1, Ordering::Relaxed);
            return Some(Admit::Refuse);
        }
        if open.by_id.len() >= self.max {
            self.shed_idlest(&open);
            return None;
        }
        open.next += 1;
        let slot = Arc::new(Slot {
            id: open.next,
            client,
            owner: self.clone(),
            busy: AtomicUsize::new(0),
            idle_since: AtomicU64::new(self.now()),
            sending: AtomicBool::new(false),
            shed: AtomicBool::new(false),
            close: Notify::new(),
        });
        open.by_id.insert(slot.id, slot.clone());
        *open.by_client.entry(client).or_default() += 1;
        Some(Admit::Serve(Connection(slot)))
    }

    /// Asks the connection idle longest, not asked before, to close. It
    /// closes at once unless a request just started on it, which it then
    /// finishes first.
    fn shed_idlest(&self, open: &Open) {
        let idlest = open
            .by_id
            .values()
            .filter(|s| {
                s.busy.load(Ordering::Relaxed) == 0
                    && !s.sending.load(Ordering::Relaxed)
                    && !s.shed.load(Ordering::Relaxed)
            })
            .min_by_key(|s| s.idle_since.load(Ordering::Relaxed));
        if let Some(slot) = idlest {
            slot.shed.store(true, Ordering::Relaxed);
            slot.close.notify_one();
            SHED.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits until every connection has closed.
    pub async fn drained(&self) {
        loop {
            let mut room = pin!(self.room.notified());
            room.as_mut().enable();
            if self
                .open
                .lock()
                .expect("connection table poisoned")
                .by_id
                .is_empty()
            {
                return;
            }
            room.await;
        }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }
}

/// What the per-client cap counts by: an IPv4 address, or an IPv6 /64,
/// the least a site or home is given, so one cannot use its many
/// addresses as many clients.
fn network(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !(u64::MAX as u128)).into()),
        v4 => v4,
    }
}

/// Counts an accept loop as waiting for as long as it waits.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicUsize) -> Waiting<'a> {
        count.fetch_add(1, Ordering::Relaxed);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An admitted connection; its slot is freed when this is dropped.
pub struct Connection(Arc<Slot>);

impl Connection {
    /// The connection's socket, noting when response bytes go out.
    pub fn watch<T>(&self, io: T) -> Watched<T> {
        Watched {
            io,
            slot: self.0.clone(),
        }
    }

    /// What the connection's service marks its requests with.
    pub fn requests(&self) -> Requests {
        Requests(self.0.clone())
    }

    /// Resolves when the connection is asked to make room.
    async fn shed(&self) {
        self.0.close.notified().await
    }

    /// Drives `conn` to its end. It is shut down gracefully (requests in
    /// flight finish, an idle connection closes at once) when it is shed,
    /// when `shutdown` flips, or when it has had no request in flight for
    /// `idle`. It is cut when nothing moved for `idle` while its client took
    /// no response bytes, or while it was closing.
    pub async fn serve<C: GracefulConnection>(
        &self,
        conn: C,
        idle: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut conn = pin!(conn);
        let slot = &self.0;
        let mut closing = *shutdown.borrow_and_update();
        if closing {
            conn.as_mut().graceful_shutdown();
        }
        loop {
            let busy = slot.busy.load(Ordering::Relaxed) > 0;
            let since = slot.idle_since.load(Ordering::Relaxed);
            let check = if busy {
                Instant::now() + idle
            } else {
                slot.owner.epoch + Duration::from_nanos(since) + idle
            };
            // In order, with no random draw per wake-up: the connection is
            // what wakes this nearly every time.
            let close = tokio::select! {
                biased;
                _ = conn.as_mut() => return,
                _ = slot.close.notified(), if !closing => true,
                _ = shutdown.changed(), if !closing => true,
                _ = tokio::time::sleep_until(check.into()) => {
                    let quiet = !busy
                        && slot.busy.load(Ordering::Relaxed) == 0
                        && slot.idle_since.load(Ordering::Relaxed) == since;
                    if quiet && (closing || slot.sending.load(Ordering::Relaxed)) {
                        return;
                    }
                    quiet
                }
            };
            if close && !closing {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }

    /// Runs `step` (a TLS handshake, say) unless the connection is shed
    /// first; `None` if it was.
    pub async fn unless_shed<T>(&self, step: impl Future<Output = T>) -> Option<T> {
        tokio::select! {
            t = step => Some(t),
            _ = self.shed() => None,
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let slot = &self.0;
        let owner = &slot.owner;
        let mut open = owner.open.lock().expect("connection table poisoned");
        open.by_id.remove(&slot.id);
        if let Some(held) = open.by_client.get_mut(&slot.client) {
            *held -= 1;
            if *held == 0 {
                open.by_client.remove(&slot.client);
            }
        }
        drop(open);
        owner.room.notify_waiters();
    }
}

/// A connection's socket. A response still going out (a large file to a
/// slow reader) keeps its connection from looking idle after the request
/// itself is done, for as long as the client takes bytes.
pub struct Watched<T> {
    io: T,
    slot: Arc<Slot>,
}

impl<T> Watched<T> {
    /// Notes a write: one that waits marks a response going out, and the
    /// next that moves bytes counts as activity. A write that does not
    /// wait (any small response) costs one load.
    fn wrote(&self, result: &Poll<io::Result<usize>>) {
        let slot = &self.slot;
        match result {
            Poll::Pending => slot.sending.store(true, Ordering::Relaxed),
            Poll::Ready(Ok(n)) if *n > 0 && slot.sending.load(Ordering::Relaxed) => {
                slot.sending.store(false, Ordering::Relaxed);
                slot.idle_since.store(slot.owner.now(), Ordering::Relaxed);
            }
            _ => {}
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.io).poll_write(cx, buf);
        self.wrote(&result);
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.wrote(&result);
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Marks the requests of one connection.
#[derive(Clone)]
pub struct Requests(Arc<Slot>);

impl Requests {
    /// The connection is busy until the returned guard drops.
    pub fn start(&self) -> Request {
        self.0.busy.fetch_add(1, Ordering::Relaxed);
        Request(self.0.clone())
    }
}

/// A request being answered: its connection is busy until this drops.
pub struct Request(Arc<Slot>);

impl Drop for Request {
    fn drop(&mut self) {
        let slot = &self.0;
        if slot.busy.fetch_sub(1, Ordering::Relaxed) == 1 {
            let owner = &slot.owner;
            slot.idle_since.store(owner.now(), Ordering::Relaxed);
            if owner.waiting.load(Ordering::Relaxed) > 0 {
                owner.room.notify_waiters();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admit(c: &Arc<Connections>, ip: &str, capped: bool) -> Option<Admit> {
        c.try_admit(network(ip.parse().unwrap()), capped)
    }

    #[test]
    fn an_ipv6_client_is_its_64() {
        let c = Connections::new(10, 2);
        let _a = admit(&c, "2001:db8:1:2::1", true);
        let _b = admit(&c, "2001:db8:1:2:ffff::9", true);
        assert!(matches!(
            admit(&c, "2001:db8:1:2::77", true),
            Some(Admit::Refuse)
        ));
        assert!(matches!(
            admit(&c, "2001:db8:1:3::1", true),
            Some(Admit::Serve(_))
        ));
        // A mapped IPv4 address is that address.
        let _mapped = admit(&c, "::ffff:192.0.2.1", true);
        let _plain = admit(&c, "192.0.2.1", true);
        assert!(matches!(admit(&c, "192.0.2.1", true), Some(Admit::Refuse)));
    }

    #[test]
    fn one_address_holds_at_most_its_share() {
        let c = Connections::new(10, 2);
        let a = admit(&c, "192.0.2.1", true);
        let b = admit(&c, "192.0.2.1", true);
        assert!(matches!(a, Some(Admit::Serve(_))));
        assert!(matches!(b, Some(Admit::Serve(_))));
        assert!(matches!(admit(&c, "192.0.2.1", true), Some(Admit::Refuse)));
        assert!(matches!(
            admit(&c, "192.0.2.1", false),
            Some(Admit::Serve(_))
        ));
        assert!(matches!(
            admit(&c, "192.0.2.2", true),
            Some(Admit::Serve(_))
        ));
        drop(a);
        assert!(matches!(
            admit(&c, "192.0.2.1", true),
            Some(Admit::Serve(_))
        ));
    }

    #[test]
    fn when_full_the_idlest_connection_is_asked_to_close() {
        let c = Connections::new(3, 10);
        let open: Vec<Connection> = (1..=3)
            .map(|i| match admit(&c, &format!("192.0.2.{i}"), true) {
                Some(Admit::Serve(conn)) => conn,
                _ => panic!("room for {i}"),
            })
            .collect();
        // The first is busy, the second went idle after the third.
        let busy = open[0].requests().start();
        drop(open[1].requests().start());
        assert!(admit(&c, "192.0.2.9", true).is_none());
        assert!(open[2].0.shed.load(Ordering::Relaxed));
        assert!(!open[1].0.shed.load(Ordering::Relaxed));
        assert!(admit(&c, "192.0.2.9", true).is_none());
        assert!(open[1].0.shed.load(Ordering::Relaxed));
        assert!(admit(&c, "192.0.2.9", true).is_none());
        assert!(!open[0].0.shed.load(Ordering::Relaxed), "busy: never shed");
        drop(busy);
        drop(open);
        assert!(matches!(
            admit(&c, "192.0.2.9", true),
            Some(Admit::Serve(_))
        ));
    }
}
