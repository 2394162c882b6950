//! Bodies crossing the proxy within bounds: a request body refused past
//! its limit, an upstream body cut off past its limit or when it stalls.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::respond::BoxError;

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the body is over {0} bytes")]
    TooLarge(u64),
    #[error("the upstream sent nothing for {0:?}")]
    Stalled(Duration),
}

/// Bytes a body may still carry.
struct Budget {
    left: u64,
    max: u64,
}

impl Budget {
    fn new(max: u64) -> Budget {
        Budget { left: max, max }
    }

    /// Takes `frame` out of the budget, or fails past it.
    fn spend<E: Into<BoxError>>(
        &mut self,
        frame: Result<Frame<Bytes>, E>,
    ) -> Result<Frame<Bytes>, BoxError> {
        let frame = frame.map_err(Into::into)?;
        let len = frame.data_ref().map_or(0, |d| d.len() as u64);
        if len > self.left {
            return Err(BodyError::TooLarge(self.max).into());
        }
        self.left -= len;
        Ok(frame)
    }
}

/// When a request's body last moved.
pub type Progress = Arc<Mutex<Instant>>;

/// A request body on its way up: past `left` bytes it fails, and says so
/// in `over` (the upstream's error then answers 413, not 502). `progress`
/// is when its last piece went up: a long upload is not a slow upstream.
pub struct Upload<B> {
    inner: B,
    budget: Budget,
    pub over: Arc<AtomicBool>,
    pub progress: Progress,
}

impl<B> Upload<B> {
    pub fn new(inner: B, max: u64) -> Upload<B> {
        Upload {
            inner,
            budget: Budget::new(max),
            over: Arc::default(),
            progress: Arc::new(Mutex::new(Instant::now())),
        }
    }
}

impl<B> Body for Upload<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        *this.progress.lock().unwrap() = Instant::now();
        Poll::Ready(frame.map(|f| {
            let spent = this.budget.spend(f);
            let over = spent.as_ref().is_err_and(|e| e.is::<BodyError>());
            this.over.store(over, Ordering::Relaxed);
            spent
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// `answer`, unless `timeout` passes without it and without `progress`
/// (when the request's body last moved) moving either.
pub async fn within<F: Future>(
    answer: F,
    timeout: Duration,
    progress: Option<&Mutex<Instant>>,
) -> Option<F::Output> {
    let started = Instant::now();
    let last = || progress.map_or(started, |p| (*p.lock().unwrap()).max(started));
    let mut answer = std::pin::pin!(answer);
    loop {
        let deadline = last() + timeout;
        tokio::select! {
            out = &mut answer => return Some(out),
            _ = tokio::time::sleep_until(deadline) => {
                if last() + timeout <= Instant::now() {
                    return None;
                }
            }
        }
    }
}

/// An upstream body on its way down: it fails past `left` bytes, or when
/// no piece of it came for `idle`, so an endless or stalled upstream never
/// holds a connection for good.
pub struct Download<B> {
    inner: B,
    budget: Budget,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
}

impl<B> Download<B> {
    pub fn new(inner: B, max: u64, idle: Duration) -> Download<B> {
        Download {
            inner,
            budget: Budget::new(max),
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
        }
    }
}

impl<B> Body for Download<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                ready!(this.timer.as_mut().poll(cx));
                return Poll::Ready(Some(Err(BodyError::Stalled(this.idle).into())));
            }
        };
        this.timer.as_mut().reset(Instant::now() + this.idle);
        Poll::Ready(frame.map(|f| this.budget.spend(f)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A body of which `read` was already taken: it goes first, then the rest.
pub struct Prefixed<B> {
    read: Option<Bytes>,
    rest: B,
}

impl<B> Prefixed<B> {
    pub fn new(read: Bytes, rest: B) -> Prefixed<B> {
        Prefixed {
            read: Some(read).filter(|r| !r.is_empty()),
            rest,
        }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Prefixed<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        match this.read.take() {
            Some(read) => Poll::Ready(Some(Ok(Frame::data(read)))),
            None => Pin::new(&mut this.rest).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.read.is_none() && self.rest.is_end_stream()
    }
}
