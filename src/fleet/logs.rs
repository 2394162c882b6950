//! Logs in one place: every box's access-log lines in the JetStream stream
//! `outpost-logs`, under `outpost.logs.<box id>`, and `outpost fleet logs`
//! reading them back.
//!
//! The access log's writer thread hands each line (serialized once) to
//! [`FleetLog`], which holds it in a buffer bounded by `[fleet]
//! logs_buffer` bytes; past it, the oldest lines are dropped and counted,
//! so neither a request nor the writer ever waits for the hub. The shipper
//! ([`ship`]) sends the held lines as batches (JSON lines joined by `\n`)
//! every 200 ms, or as soon as 64 KiB are held, and waits for JetStream's
//! ack. A batch that fails is sent again, whole, under the same
//! `Nats-Msg-Id`, so the stream stores it once; while the hub is down the
//! lines wait in the buffer and go out when it is back.
//!
//! The stream is created by the first box that ships, with `[fleet]
//! logs_max_size` and `logs_max_age` as its limits (oldest lines
//! discarded first); a box that finds other limits sets its own, and says
//! so: give every box the same ones.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream;
use bytes::Bytes;
use futures_util::StreamExt;

use super::hub::{nats, FleetError, Hub};
use crate::access_log::LineSink;
use crate::config::FleetSettings;
use crate::store::unix_ms;

/// The stream every box's lines go to.
pub const STREAM: &str = "outpost-logs";
/// Subjects are `outpost.logs.<box id>`.
const SUBJECT_PREFIX: &str = "outpost.logs.";
/// A batch goes out once this many bytes are held...
const BATCH_BYTES: usize = 64 * 1024;
/// ...or this long after the last one, whichever comes first.
const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// How long JetStream remembers a batch's id to drop a resent copy; the
/// server's default, shortened when the stream keeps lines for less.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// Lines waiting for the hub, oldest first, at most `limit` bytes, kept as
/// the batches they will be sent in (lines joined by `\n`): a line is
/// copied once, into its batch, and a batch goes out without another copy.
#[derive(Debug, Default)]
pub struct Held {
    /// Each batch with its number of lines; the last one is being filled.
    batches: VecDeque<(Vec<u8>, u64)>,
    bytes: usize,
    limit: usize,
    /// A batch is full at this size: 64 KiB, or a quarter of the buffer
    /// when that is smaller, so that making room drops a quarter at most.
    batch_bytes: usize,
    dropped: u64,
}

impl Held {
    pub fn new(limit: usize) -> Held {
        Held::with_batches(limit, (limit / 4).clamp(1, BATCH_BYTES))
    }

    fn with_batches(limit: usize, batch_bytes: usize) -> Held {
        Held {
            limit,
            batch_bytes,
            ..Held::default()
        }
    }

    /// Holds `line`, dropping the oldest batches to make room; a line larger
    /// than the whole buffer is dropped itself.
    pub fn push(&mut self, line: &[u8]) {
        if line.len() + 1 > self.limit {
            self.dropped += 1;
            return;
        }
        self.append(line, 1);
    }

    /// Holds newline-ended `lines` (a round of the access log's writer), as
    /// many whole lines at a time as the batch being filled has room for.
    pub fn push_lines(&mut self, mut lines: &[u8]) {
        while !lines.is_empty() {
            let room = match self.batches.back() {
                Some((batch, _)) => self.batch_bytes.saturating_sub(batch.len() + 1),
                None => self.batch_bytes,
            };
            let Some(end) = memchr::memrchr(b'\n', &lines[..room.min(lines.len())]) else {
                // Not even one line fits: it starts a batch (or is dropped).
                let end = memchr::memchr(b'\n', lines).unwrap_or(lines.len());
                self.push(&lines[..end]);
                lines = lines.get(end + 1..).unwrap_or_default();
                continue;
            };
            let piece = &lines[..end];
            if !piece.is_empty() {
                let count = memchr::memchr_iter(b'\n', piece).count() as u64 + 1;
                self.append(piece, count);
            }
            lines = &lines[end + 1..];
        }
    }

    /// Holds `count` lines joined by `\n`, no larger than the buffer,
    /// dropping the oldest batches to make room.
    fn append(&mut self, piece: &[u8], count: u64) {
        // The newline that may join it to the batch counts too.
        let size = piece.len() + 1;
        while self.bytes + size > self.limit {
            let Some((old, lines)) = self.batches.pop_front() else {
                break;
            };
            self.bytes -= old.len();
            self.dropped += lines;
        }
        match self.batches.back_mut() {
            Some((batch, lines)) if batch.len() + size <= self.batch_bytes => {
                batch.push(b'\n');
                batch.extend_from_slice(piece);
                *lines += count;
                self.bytes += size;
            }
            _ => {
                let mut batch = Vec::with_capacity(self.batch_bytes.max(piece.len()));
                batch.extend_from_slice(piece);
                self.batches.push_back((batch, count));
                self.bytes += piece.len();
            }
        }
    }

    /// The oldest batch; `None` when nothing is held.
    pub fn take_batch(&mut self) -> Option<Vec<u8>> {
        let (batch, _) = self.batches.pop_front()?;
        self.bytes -= batch.len();
        Some(batch)
    }

    /// Whether a batch is full and waiting.
    pub fn has_full_batch(&self) -> bool {
        self.batches.len() > 1
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Lines dropped since the box started.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// A box's lines on their way to the fleet: filled by the access log's
/// writer thread, emptied by [`ship`].
pub struct FleetLog {
    held: Mutex<Held>,
    /// Wakes the shipper when a full batch is held.
    full: tokio::sync::Notify,
}

impl FleetLog {
    /// The box's fleet log when it follows a fleet with logs on.
    pub fn new(settings: &FleetSettings) -> Option<Arc<FleetLog>> {
        if settings.url.is_none() || !settings.logs {
            return None;
        }
        let limit = usize::try_from(settings.logs_buffer).unwrap_or(usize::MAX);
        Some(Arc::new(FleetLog {
            held: Mutex::new(Held::new(limit)),
            full: tokio::sync::Notify::new(),
        }))
    }

    /// What the access log hands its lines to.
    pub fn sink(self: &Arc<FleetLog>) -> Box<dyn LineSink> {
        Box::new(ToFleet(self.clone()))
    }

    /// Lines dropped because the buffer was full, since the box started.
    pub fn dropped(&self) -> u64 {
        self.held.lock().unwrap().dropped()
    }

    fn take_batch(&self) -> Option<Vec<u8>> {
        self.held.lock().unwrap().take_batch()
    }

    fn has_full_batch(&self) -> bool {
        self.held.lock().unwrap().has_full_batch()
    }
}

struct ToFleet(Arc<FleetLog>);

impl LineSink for ToFleet {
    fn lines(&mut self, lines: &[u8]) {
        let mut held = self.0.held.lock().unwrap();
        held.push_lines(lines);
        let full = held.has_full_batch();
        drop(held);
        if full {
            self.0.full.notify_one();
        }
    }
}

/// Sends the box's held lines to the stream until the process ends; while
/// the hub is down they wait in the buffer, and the batch in hand is sent
/// again under its id when the hub is back.
pub async fn ship(hub: Hub, log: Arc<FleetLog>, settings: FleetSettings, instance: String) {
    let subject = format!("{SUBJECT_PREFIX}{}", settings.box_id);
    // The store's instance names the box across restarts; the start time
    // keeps a restarted box's batch ids apart from its last run's, which
    // the stream still remembers for its duplicate window.
    let run = format!("{instance}-{}", unix_ms(SystemTime::now()));
    let mut sent = 0u64;
    let mut in_hand: Option<(String, Bytes)> = None;
    loop {
        if let Err(e) = hub.log_stream(&settings).await {
            tracing::debug!(error = %e, "cannot reach the fleet's log stream; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        loop {
            if in_hand.is_none() {
                if !log.has_full_batch() {
                    tokio::select! {
                        _ = tokio::time::sleep(FLUSH_EVERY) => {}
                        _ = log.full.notified() => {}
                    }
                }
                in_hand = log.take_batch().map(|batch| {
                    sent += 1;
                    (format!("{run}-{sent}"), Bytes::from(batch))
                });
            }
            let Some((id, batch)) = &in_hand else {
                continue;
            };
            match hub.publish_lines(&subject, id, batch.clone()).await {
                Ok(()) => in_hand = None,
                Err(e) => {
                    tracing::debug!(error = %e, "cannot send log lines to the fleet; holding them");
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

impl Hub {
    /// Makes sure the log stream exists with this box's limits.
    async fn log_stream(&self, settings: &FleetSettings) -> Result<(), FleetError> {
        let max_bytes = i64::try_from(settings.logs_max_size).unwrap_or(i64::MAX);
        let max_age = settings.logs_max_age;
        let duplicate_window = DUPLICATE_WINDOW.min(max_age);
        let Ok(mut stream) = self.jetstream().get_stream(STREAM).await else {
            self.jetstream()
                .create_stream(stream::Config {
                    name: STREAM.into(),
                    subjects: vec![format!("{SUBJECT_PREFIX}*")],
                    max_bytes,
                    max_age,
                    discard: stream::DiscardPolicy::Old,
                    duplicate_window,
                    num_replicas: 1,
                    ..Default::default()
                })
                .await
                .map_err(nats)?;
            return Ok(());
        };
        let old = stream.info().await.map_err(nats)?.config.clone();
        if old.max_bytes == max_bytes
            && old.max_age == max_age
            && old.discard == stream::DiscardPolicy::Old
        {
            return Ok(());
        }
        let new = stream::Config {
            max_bytes,
            max_age,
            discard: stream::DiscardPolicy::Old,
            duplicate_window,
            ..old.clone()
        };
        self.jetstream().update_stream(&new).await.map_err(nats)?;
        tracing::info!(
            stream = STREAM,
            old_max_size = old.max_bytes,
            old_max_age = %humantime::format_duration(old.max_age),
            new_max_size = max_bytes,
            new_max_age = %humantime::format_duration(max_age),
            "the fleet's log stream had other limits; set this box's"
        );
        Ok(())
    }

    /// Sends one batch and waits for the stream's ack.
    async fn publish_lines(&self, subject: &str, id: &str, batch: Bytes) -> Result<(), FleetError> {
        let publish = PublishMessage::build().payload(batch).message_id(id);
        let ack = self
            .jetstream()
            .send_publish(subject.to_string(), publish)
            .await
            .map_err(nats)?;
        ack.await.map_err(nats)?;
        Ok(())
    }
}

/// Which lines `outpost fleet logs` reads from the stream.
pub struct LogQuery {
    /// One box's lines, or every box's.
    pub box_id: Option<String>,
    /// Lines stored this long ago and since.
    pub since: Duration,
    /// Go on with new lines as they come, instead of stopping at the last
    /// line stored when the read began.
    pub follow: bool,
}

/// Reads the fleet's lines at `url`, calling `each` with the box's id and
/// the line (its own JSON, without newline).
pub async fn read(
    url: &str,
    query: &LogQuery,
    mut each: impl FnMut(&str, &[u8]),
) -> Result<(), FleetError> {
    let hub = Hub::connect(url).await?;
    let stream = hub.jetstream().get_stream(STREAM).await.map_err(|e| {
        FleetError::Nats(format!(
            "no log stream `{STREAM}` at {url} ({e}): no box has shipped lines yet"
        ))
    })?;
    let last = stream.cached_info().state.last_sequence;
    let start = unix_ms(SystemTime::now()).saturating_sub(query.since.as_millis() as u64);
    let start_time =
        async_nats::datetime::from_nanos(i128::from(start) * 1_000_000).map_err(nats)?;
    let filter = match &query.box_id {
        Some(b) => format!("{SUBJECT_PREFIX}{b}"),
        None => format!("{SUBJECT_PREFIX}*"),
    };
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: filter,
            deliver_policy: DeliverPolicy::ByStartTime { start_time },
            ..Default::default()
        })
        .await
        .map_err(nats)?;
    if !query.follow && consumer.cached_info().num_pending == 0 {
        return Ok(());
    }
    let mut messages = consumer.messages().await.map_err(nats)?;
    while let Some(message) = messages.next().await {
        let message = message.map_err(nats)?;
        let box_id = message
            .subject
            .as_str()
            .strip_prefix(SUBJECT_PREFIX)
            .unwrap_or_default();
        for line in message.payload.split(|b| *b == b'\n') {
            if !line.is_empty() {
                each(box_id, line);
            }
        }
        let info = message.info().map_err(nats)?;
        if !query.follow && (info.pending == 0 || info.stream_sequence >= last) {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Held;

    #[test]
    fn the_oldest_batches_make_room_and_their_lines_are_counted() {
        let mut held = Held::with_batches(12, 10);
        held.push(b"aaaa");
        held.push(b"bbbb");
        assert_eq!(held.bytes(), 9);
        assert!(!held.has_full_batch());
        held.push(b"cccc");
        assert_eq!(held.dropped(), 2, "aaaa and bbbb were one batch");
        assert_eq!(held.take_batch().unwrap(), b"cccc");
        assert_eq!(held.bytes(), 0);
        assert!(held.take_batch().is_none());
    }

    #[test]
    fn a_line_larger_than_the_buffer_is_dropped_alone() {
        let mut held = Held::new(4);
        held.push(b"ab");
        held.push(b"too long");
        assert_eq!(held.dropped(), 1);
        assert_eq!(held.take_batch().unwrap(), b"ab");
    }

    #[test]
    fn a_full_batch_waits_while_the_next_fills() {
        let mut held = Held::with_batches(100, 11);
        for line in [&b"12345"[..], b"12345", b"12345"] {
            held.push(line);
        }
        assert!(held.has_full_batch());
        assert_eq!(held.take_batch().unwrap(), b"12345\n12345");
        assert!(!held.has_full_batch());
        assert_eq!(held.take_batch().unwrap(), b"12345");
        assert_eq!(held.dropped(), 0);
    }

    #[test]
    fn a_round_of_lines_fills_batches_with_whole_lines() {
        let mut held = Held::with_batches(1000, 11);
        held.push_lines(b"12345\n12345\n12345\n1234567890123\n1\n");
        assert_eq!(held.take_batch().unwrap(), b"12345\n12345");
        assert_eq!(held.take_batch().unwrap(), b"12345");
        assert_eq!(held.take_batch().unwrap(), b"1234567890123");
        assert_eq!(held.take_batch().unwrap(), b"1");
        assert!(held.take_batch().is_none());
        assert_eq!((held.bytes(), held.dropped()), (0, 0));
        // A full buffer drops whole batches, counting their lines.
        let mut held = Held::with_batches(24, 11);
        held.push_lines(b"aaaaa\nbbbbb\nccccc\nddddd\neeeee\n");
        assert_eq!(held.dropped(), 2, "aaaaa and bbbbb were one batch");
        let mut kept = Vec::new();
        while let Some(batch) = held.take_batch() {
            kept.push(String::from_utf8(batch).unwrap());
        }
        assert_eq!(kept, ["ccccc\nddddd", "eeeee"]);
    }

    #[test]
    fn a_small_buffer_drops_a_quarter_at_most() {
        let mut held = Held::new(400);
        for _ in 0..100 {
            held.push(&[b'x'; 49]);
        }
        assert!(held.bytes() >= 300, "{}", held.bytes());
        let mut kept = 0;
        while let Some(batch) = held.take_batch() {
            kept += batch.split(|b| *b == b'\n').count() as u64;
        }
        assert_eq!(held.dropped() + kept, 100);
    }
}
