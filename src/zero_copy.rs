//! Large bodies go from the page cache to the socket without a copy through
//! user space, as nginx's sendfile does.
//!
//! Stored bodies live in pack files (see `store/packs.rs`), each mapped
//! read-only once with [`map`]; their `Bytes` point into that mapping.
//! hyper only ever hands its connection byte slices, so the connection
//! wrapper [`Stream`] asks, for each slice of [`LARGE`] bytes or more,
//! whether it lies in such a mapping; if so it has the kernel send from the
//! file at the slice's offset (sendfile) instead of copying the bytes in.
//! Packs are written once and never changed, so what sendfile sends is
//! exactly the slice.

// The crate's one use of unsafe: mapping a pack file.
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use memmap2::{Mmap, MmapOptions};
use rustix::net::{SendAncillaryBuffer, SendFlags};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// Bodies this large or larger are sent with sendfile. Below it, one writev
/// of head and body costs less than a separate send of the head.
pub const LARGE: usize = 64 * 1024;

/// A mapped file: where it ends in our address space, and its fd.
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

/// One file, mapped read-only; the owner of the `Bytes` that point into it.
struct Mapping(Mmap);

impl AsRef<[u8]> for Mapping {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // Forgotten before the `Mmap` unmaps (after this), so no lookup can
        // find an unmapped range. The file closes when the last send from it
        // is done.
        REGIONS.write().unwrap().remove(&(self.0.as_ptr() as usize));
    }
}

/// Maps `file` (of `len` bytes, more than 0) read-only, returning its bytes;
/// slices of them are sent with sendfile. The file is closed when the last
/// `Bytes` and the last send from it are gone.
pub fn map(file: File, len: usize) -> io::Result<Bytes> {
    // SAFETY: a read-only mapping of a pack, which the process never writes
    // or shrinks once written, so the mapped bytes never change under us.
    let mapping = unsafe { MmapOptions::new().len(len).map(&file)? };
    let start = mapping.as_ptr() as usize;
    REGIONS.write().unwrap().insert(
        start,
        Region {
            end: start + len,
            file: Arc::new(file.into()),
        },
    );
    Ok(Bytes::from_owner(Mapping(mapping)))
}

/// Where a slice lies in a mapped file: the file and the offset. Reading a
/// large body through the file rather than the mapping keeps its pages out
/// of the process's memory.
pub fn source(slice: &[u8]) -> Option<(Arc<OwnedFd>, u64)> {
    // Small pages must not pay the lookup: one writev of head and body
    // costs less than a separate send of the head.
    // The short tail a partial send may leave is copied, which costs little.
    if slice.len() < LARGE {
        return None;
    }
    let start = slice.as_ptr() as usize;
    let regions = REGIONS.read().unwrap();
    let (base, region) = regions.range(..=start).next_back()?;
    (start + slice.len() <= region.end).then(|| (region.file.clone(), (start - base) as u64))
}

/// A plain TCP connection that sends slices of mapped files with
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
        // Empty slices would make the head before a mapped body look unsent.
        let bufs = &bufs[bufs.iter().take_while(|b| b.is_empty()).count()..];
        let mapped = bufs
            .iter()
            .enumerate()
            .find_map(|(i, b)| source(b).map(|s| (i, s)));
        match mapped {
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

    /// `data` written to a temporary file and mapped.
    fn mapped(data: &[u8]) -> Bytes {
        let mut file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut file, data).unwrap();
        map(file, data.len()).unwrap()
    }

    #[test]
    fn large_slices_of_a_mapping_are_found_and_small_ones_are_not() {
        let data = pattern(LARGE * 3, 3);
        let whole = mapped(&data);
        assert_eq!(whole, data);
        let body = whole.slice(100..100 + LARGE);
        let (_, offset) = source(&body).expect("a large slice of a mapping");
        assert_eq!(offset, 100);
        assert!(source(&whole.slice(..LARGE - 1)).is_none(), "small: copied");
        assert!(source(&data[..LARGE]).is_none(), "heap bytes: copied");
        // Dropping every `Bytes` unmaps the file and forgets its region.
        let start = whole.as_ptr() as usize;
        drop((whole, body));
        assert!(!REGIONS.read().unwrap().contains_key(&start));
    }

    /// Head and body through a real TCP connection, the body larger than
    /// the socket buffers, so sends are partial and meet a full socket.
    #[tokio::test]
    async fn a_mapped_body_arrives_whole_after_its_head() {
        let bodies = [mapped(&pattern(8 << 20, 13))];
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
