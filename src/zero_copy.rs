//! Large bodies go from memory to the socket without a copy through user
//! space, as nginx's sendfile does for files on disk.
//!
//! A version's bodies of [`LARGE`] bytes or more live in one sealed memory
//! file (memfd), mapped read-only, and their `Bytes` point into that mapping.
//! hyper only ever hands its connection byte slices, so the connection
//! wrapper [`Stream`] asks, for each slice it is given, whether the slice lies
//! in such a mapping; if so it has the kernel send from the memory file at
//! the slice's offset (sendfile) instead of copying the bytes in. The seals
//! forbid any write to the file, so what sendfile sends is exactly the slice.

// The crate's one use of unsafe: mapping the memory file.
#![allow(unsafe_code)]

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use rustix::fs::{MemfdFlags, SealFlags};
use rustix::mm::{MapFlags, ProtFlags};
use rustix::net::{SendAncillaryBuffer, SendFlags};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// Bodies this large or larger are sent with sendfile. Below it, one writev
/// of head and body costs less than a separate send of the head.
pub const LARGE: usize = 64 * 1024;

/// A mapped memory file: where it starts in our address space, and its fd.
struct Region {
    end: usize,
    file: Arc<OwnedFd>,
}

/// Every live mapping, by start address. A mapping is in here exactly while
/// it is mapped, so a slice that lies in one is a slice of that file.
static REGIONS: RwLock<BTreeMap<usize, Region>> = RwLock::new(BTreeMap::new());

/// Body bytes sent with sendfile, for the metrics.
static SENT: AtomicU64 = AtomicU64::new(0);

/// Body bytes sent with sendfile since start.
pub fn sent_bytes() -> u64 {
    SENT.load(Ordering::Relaxed)
}

/// One sealed memory file, mapped read-only; the owner of the `Bytes` that
/// point into it.
struct Mapping {
    ptr: *mut std::ffi::c_void,
    len: usize,
}

// The mapping is read-only and the file sealed against writes: nothing can
// change the bytes, so sharing them across threads is sound.
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

impl AsRef<[u8]> for Mapping {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `ptr` maps `len` readable bytes until `drop`.
        unsafe { std::slice::from_raw_parts(self.ptr.cast(), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // Forgotten before unmapping, so no lookup can find an unmapped range.
        // The file closes when the last send from it is done.
        REGIONS.write().unwrap().remove(&(self.ptr as usize));
        // SAFETY: mapped in `seal` with this length; no `Bytes` points here
        // any more, since they own this mapping.
        let _ = unsafe { rustix::mm::munmap(self.ptr, self.len) };
    }
}

/// Moves every body of [`LARGE`] bytes or more into one new sealed memory
/// file, pointing each `Bytes` at its copy there; equal bodies (one `Bytes`
/// shared by several files) are stored once. On error the bodies are left
/// as they were, still servable, only copied on the way out.
pub fn seal<'a>(bodies: impl IntoIterator<Item = &'a mut Bytes>) -> io::Result<()> {
    let large: Vec<&mut Bytes> = bodies.into_iter().filter(|b| b.len() >= LARGE).collect();
    if large.is_empty() {
        return Ok(());
    }
    // A change that brings no new large body (an edited page, say) keeps the
    // memory file it shares with the version before: no copy, no new file.
    // It may hold bodies this version dropped, until a version re-seals.
    let first = source(large[0]).map(|(file, _)| file);
    if let Some(first) = first {
        let same = |b: &&mut Bytes| source(b).is_some_and(|(f, _)| Arc::ptr_eq(&f, &first));
        if large.iter().all(same) {
            return Ok(());
        }
    }
    // Each body's offset, by its own address and length: clones share one
    // copy, written once.
    let mut offsets: HashMap<(usize, usize), u64> = HashMap::new();
    let mut at = Vec::with_capacity(large.len());
    let mut first_copies = Vec::new();
    let mut len = 0u64;
    for (i, body) in large.iter().enumerate() {
        let offset = *offsets
            .entry((body.as_ptr() as usize, body.len()))
            .or_insert_with(|| {
                first_copies.push(i);
                len += body.len() as u64;
                len - body.len() as u64
            });
        at.push(offset);
    }
    let fd = rustix::fs::memfd_create(
        "outpost-bodies",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )?;
    let file = File::from(fd);
    file.set_len(len)?;
    for i in first_copies {
        file.write_all_at(large[i], at[i])?;
    }
    rustix::fs::fcntl_add_seals(
        &file,
        SealFlags::WRITE | SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL,
    )?;
    let len = usize::try_from(len).map_err(io::Error::other)?;
    // SAFETY: a fresh read-only shared mapping of a file no one can change
    // or shrink; `Mapping` unmaps it exactly once.
    let ptr = unsafe {
        rustix::mm::mmap(
            std::ptr::null_mut(),
            len,
            ProtFlags::READ,
            MapFlags::SHARED,
            &file,
            0,
        )?
    };
    REGIONS.write().unwrap().insert(
        ptr as usize,
        Region {
            end: ptr as usize + len,
            file: Arc::new(file.into()),
        },
    );
    let whole = Bytes::from_owner(Mapping { ptr, len });
    for (body, at) in large.into_iter().zip(at) {
        let at = at as usize;
        *body = whole.slice(at..at + body.len());
    }
    Ok(())
}

/// Where a slice lies in a sealed memory file: the file and the offset.
fn source(slice: &[u8]) -> Option<(Arc<OwnedFd>, u64)> {
    // Only large bodies are sealed, and small pages must not pay the lookup.
    // The short tail a partial send may leave is copied, which costs little.
    if slice.len() < LARGE {
        return None;
    }
    let start = slice.as_ptr() as usize;
    let regions = REGIONS.read().unwrap();
    let (base, region) = regions.range(..=start).next_back()?;
    (start + slice.len() <= region.end).then(|| (region.file.clone(), (start - base) as u64))
}

/// A plain TCP connection that sends slices of sealed memory files with
/// sendfile and everything else as usual.
pub struct Stream {
    tcp: TcpStream,
}

impl Stream {
    pub fn new(tcp: TcpStream) -> Stream {
        Stream { tcp }
    }

    /// Runs `write` when the socket is writable, until it does not block.
    fn poll_send(
        &self,
        cx: &mut Context<'_>,
        mut write: impl FnMut() -> rustix::io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.tcp.poll_write_ready(cx))?;
            match self
                .tcp
                .try_io(Interest::WRITABLE, || write().map_err(io::Error::from))
            {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                done => return Poll::Ready(done),
            }
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // Empty slices would make the head before a sealed body look unsent.
        let bufs = &bufs[bufs.iter().take_while(|b| b.is_empty()).count()..];
        let sealed = bufs
            .iter()
            .enumerate()
            .find_map(|(i, b)| source(b).map(|s| (i, s)));
        match sealed {
            None => Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs),
            Some((0, (file, offset))) => {
                let count = bufs[0].len();
                let sent = ready!(self.poll_send(cx, || {
                    let mut at = offset;
                    rustix::fs::sendfile(self.tcp.as_fd(), &file, Some(&mut at), count)
                }))?;
                SENT.fetch_add(sent as u64, Ordering::Relaxed);
                Poll::Ready(Ok(sent))
            }
            // The head (and anything else) before the body: MORE holds it
            // back to leave in one segment with the body's first bytes.
            Some((i, _)) => self.poll_send(cx, || {
                rustix::net::sendmsg(
                    &self.tcp,
                    &bufs[..i],
                    &mut SendAncillaryBuffer::default(),
                    SendFlags::MORE | SendFlags::NOSIGNAL,
                )
            }),
        }
    }

    fn is_write_vectored(&self) -> bool {
        // hyper queues bodies (instead of copying them behind the head) only
        // for connections that take vectored writes.
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn pattern(len: usize, step: usize) -> Bytes {
        (0..len).map(|i| (i * step % 251) as u8).collect()
    }

    #[test]
    fn sealing_moves_large_bodies_once_and_leaves_small_ones() {
        let large = pattern(LARGE + 10, 3);
        let mut bodies = [
            large.clone(),
            large.clone(),
            pattern(LARGE * 2, 7),
            pattern(100, 5),
        ];
        let small_at = bodies[3].as_ptr();
        seal(bodies.iter_mut()).unwrap();
        assert_eq!(bodies[0], large);
        assert_eq!(bodies[2], pattern(LARGE * 2, 7));
        assert!(source(&bodies[0]).is_some() && source(&bodies[2]).is_some());
        assert_eq!(
            bodies[0].as_ptr(),
            bodies[1].as_ptr(),
            "clones share a copy"
        );
        assert_eq!(bodies[3].as_ptr(), small_at);
        assert!(source(&large).is_none());
        // Sealing what is already sealed in one file keeps it there.
        let at = bodies[2].as_ptr();
        seal(bodies.iter_mut()).unwrap();
        assert_eq!(bodies[2].as_ptr(), at);
        // With one body new, all move to a new file.
        let mut more = [bodies[2].clone(), pattern(LARGE, 9)];
        seal(more.iter_mut()).unwrap();
        assert_ne!(more[0].as_ptr(), at);
        assert_eq!(more[0], bodies[2]);
        // Dropping every body unmaps the file and forgets its region.
        let start = bodies[2].as_ptr() as usize;
        drop(bodies);
        assert!(!REGIONS.read().unwrap().contains_key(&(start - LARGE - 10)));
    }

    /// Head and body through a real TCP connection, the body larger than
    /// the socket buffers, so sends are partial and meet a full socket.
    #[tokio::test]
    async fn a_sealed_body_arrives_whole_after_its_head() {
        let mut bodies = [pattern(8 << 20, 13)];
        seal(bodies.iter_mut()).unwrap();
        let body = bodies[0].clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let before = sent_bytes();
        let writer = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut stream = Stream::new(tcp);
            let head = Bytes::from_static(b"head\n");
            let mut parts = [head, body.slice(1..)];
            while parts.iter().any(|p| !p.is_empty()) {
                let slices = parts.each_ref().map(|p| IoSlice::new(p));
                let mut n = stream.write_vectored(&slices).await.unwrap();
                for p in &mut parts {
                    let take = n.min(p.len());
                    bytes::Buf::advance(p, take);
                    n -= take;
                }
            }
            stream.shutdown().await.unwrap();
        });
        let mut client = TcpStream::connect(addr).await.unwrap();
        let mut got = Vec::new();
        let read = client.read_to_end(&mut got);
        tokio::time::timeout(std::time::Duration::from_secs(60), read)
            .await
            .expect("the body arrives within a minute")
            .unwrap();
        writer.await.unwrap();
        assert_eq!(&got[..5], b"head\n");
        assert!(got[5..] == bodies[0][1..], "the body differs");
        // A tail shorter than LARGE after a partial send may go by copy.
        assert!(sent_bytes() - before >= (8 << 20) - LARGE as u64);
    }
}
