//! The spool: a durable, on-disk log between the pipeline and the sinks. A batch is acked to the
//! broker once its record is committed here (group commit, `fdatasync`), never later; each sink
//! reads the log at its own pace from its own cursor, so a slow or absent sink delays nobody and
//! loses nothing. Bounded by bytes: when full, the writer stops taking batches, the pipeline
//! fills, the MQTT sessions stop reading and the broker holds the messages.
//!
//! ```text
//! batcher ─Batch─▶ writer thread ─(append, fdatasync)─▶ segments on disk ─▶ reader per sink
//!                       │  after the commit                                   (cursor files)
//!                       └──▶ acker: PUBACKs in receive order
//! readers ─appended batches─▶ writer: appended like any batch, even when full
//!   (a sink's refused points as dead letters; the indicator engine's derived values)
//! ```

pub mod codec;
pub mod log;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

use crate::ingest::mqtt::now_ns;
use crate::ingest::AckToken;
use crate::pipeline::Batch;
use crate::sink::SinkProgress;
use log::{Log, LogReader, Segments};

/// `[spool]`: where and how much.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolSettings {
    /// Directory of the segment files and the sinks' cursors.
    pub dir: PathBuf,
    /// Most bytes on disk; beyond it ingestion pauses until the sinks catch up.
    pub max_bytes: u64,
    /// A segment is closed (and can be deleted once every sink is past it) at this size.
    pub segment_bytes: u64,
    /// Longest a batch waits for others to share its fsync. 0: commit as soon as the queue is
    /// empty (the fsync in progress is what groups the next batches).
    #[serde(with = "crate::config::human_duration")]
    pub commit_delay: Duration,
}

impl Default for SpoolSettings {
    fn default() -> Self {
        SpoolSettings {
            dir: PathBuf::from("./data/spool"),
            max_bytes: 1 << 30,
            segment_bytes: 64 << 20,
            commit_delay: Duration::ZERO,
        }
    }
}

/// The spool writer has stopped (shut down, or the spool cannot be written): nothing more is
/// appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the spool writer has stopped")]
pub struct SpoolClosed;

/// What the writer has made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolState {
    /// The highest committed seq (0: none yet).
    pub committed: u64,
    /// No more batches will come from ingest (the batcher has ended).
    pub closed: bool,
}

/// A batch a reader of the spool appends (a sink's refused points as dead letters, the indicator
/// engine's values): the reply, its seq, comes once it is durable.
pub type Appended = (Batch, oneshot::Sender<u64>);

/// What the sinks and the gateway need of a running spool.
#[derive(Clone)]
pub struct SpoolHandle {
    dir: PathBuf,
    segments: Segments,
    state: watch::Receiver<SpoolState>,
    appended: mpsc::Sender<Appended>,
}

/// An opened spool, before its writer runs.
pub struct Spool {
    log: Log,
    settings: SpoolSettings,
    /// Each sink's cursor as found on disk (the last seq it committed).
    pub cursors: Vec<u64>,
}

impl Spool {
    /// Opens the log (recovering a damaged tail) and reads the cursors of `sinks`. A sink
    /// without a cursor starts at the oldest record on disk.
    pub fn open(settings: &SpoolSettings, sinks: &[&str]) -> io::Result<Spool> {
        let dir = &settings.dir;
        std::fs::create_dir_all(dir)?;
        let mut found = Vec::new();
        for s in sinks {
            found.push(log::read_cursor(dir, s)?);
        }
        let highest = found.iter().flatten().copied().max().unwrap_or(0);
        let segment_bytes = settings.segment_bytes.min(settings.max_bytes / 4).max(4096);
        let (log, recovery) = Log::open(dir, segment_bytes, highest + 1)?;
        let oldest = log
            .segments()
            .lock()
            .ok()
            .and_then(|s| s.front().map(|f| f.first_seq))
            .unwrap_or(1);
        let cursors = found.into_iter().map(|c| c.unwrap_or(oldest - 1)).collect();
        tracing::info!(
            dir = %dir.display(), records = recovery.records, bytes = log.bytes(),
            cut_bytes = recovery.truncated_bytes, next_seq = log.next_seq(),
            "spool opened"
        );
        Ok(Spool {
            log,
            settings: settings.clone(),
            cursors,
        })
    }

    /// Starts the writer on a blocking thread: it appends batches from `batches`, commits, sends
    /// each committed batch's acks to `acks` in order, and deletes segments every sink in
    /// `progress` is past. It ends once `batches` and every reader (each may append) have closed.
    pub fn start(
        self,
        batches: mpsc::Receiver<Batch>,
        acks: mpsc::Sender<Vec<AckToken>>,
        progress: Vec<Arc<SinkProgress>>,
    ) -> (SpoolHandle, impl std::future::Future<Output = ()> + Send) {
        let (state_tx, state_rx) = watch::channel(SpoolState {
            committed: self.log.committed(),
            closed: false,
        });
        let (appended_tx, appended_rx) = mpsc::channel::<Appended>(16);
        let handle = SpoolHandle {
            dir: self.settings.dir.clone(),
            segments: self.log.segments(),
            state: state_rx,
            appended: appended_tx,
        };
        let rt = tokio::runtime::Handle::current();
        let writer = Writer {
            log: self.log,
            max_bytes: self.settings.max_bytes,
            commit_delay: self.settings.commit_delay,
            batches: Some(batches),
            appended: appended_rx,
            acks: Some(acks),
            progress,
            state: state_tx,
            buf: Vec::with_capacity(1 << 20),
            rt,
            commit_seconds: metrics::histogram!("qala_spool_commit_seconds"),
            lag: metrics::histogram!("qala_ingest_lag_seconds"),
        };
        let task = async move {
            match tokio::task::spawn_blocking(move || writer.run()).await {
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                _ => {}
            }
        };
        (handle, task)
    }
}

/// One item for the writer.
enum Item {
    Batch(Batch),
    Appended(Appended),
}

struct Writer {
    log: Log,
    max_bytes: u64,
    commit_delay: Duration,
    batches: Option<mpsc::Receiver<Batch>>,
    appended: mpsc::Receiver<Appended>,
    acks: Option<mpsc::Sender<Vec<AckToken>>>,
    progress: Vec<Arc<SinkProgress>>,
    state: watch::Sender<SpoolState>,
    buf: Vec<u8>,
    rt: tokio::runtime::Handle,
    commit_seconds: metrics::Histogram,
    /// Sensor time → durable.
    lag: metrics::Histogram,
}

/// Appended, waiting for the commit.
#[derive(Default)]
struct Group {
    acks: Vec<Vec<AckToken>>,
    replies: Vec<(oneshot::Sender<u64>, u64)>,
    /// Sensor times of the readings, for the lag histogram (sensor time → durable).
    times: Vec<i64>,
}

impl Writer {
    fn run(mut self) {
        let bytes_gauge = metrics::gauge!("qala_spool_bytes");
        bytes_gauge.set(self.log.bytes() as f64);
        loop {
            let Some(first) = self.next_item(true) else {
                break;
            };
            let mut group = Group::default();
            let started = Instant::now();
            let mut item = Some(first);
            // Take what is queued (and, with a commit delay, what arrives within it).
            while let Some(it) = item.take() {
                if let Err(e) = self.append(it, &mut group) {
                    self.fail(&e);
                    return;
                }
                item = self.next_item(false);
                if item.is_none() && started.elapsed() < self.commit_delay {
                    let left = self.commit_delay.saturating_sub(started.elapsed());
                    item = self.next_item_within(left);
                }
            }
            if let Err(e) = self.commit_group(&mut group) {
                self.fail(&e);
                return;
            }
            if let Err(e) = self.reclaim(false) {
                self.fail(&e);
                return;
            }
            bytes_gauge.set(self.log.bytes() as f64);
        }
        tracing::debug!(committed = self.log.committed(), "spool writer finished");
    }

    /// Makes what is appended durable with one fsync, then tells everyone, in this order: the
    /// readers (the new committed seq), the readers waiting on what they appended, the acker.
    fn commit_group(&mut self, group: &mut Group) -> io::Result<()> {
        let t = Instant::now();
        let committed = self.log.commit()?;
        self.commit_seconds.record(t.elapsed().as_secs_f64());
        let now = now_ns();
        for time in group.times.drain(..) {
            self.lag.record((now - time) as f64 / 1.0e9);
        }
        self.state.send_modify(|s| s.committed = committed);
        for (reply, seq) in group.replies.drain(..) {
            let _ = reply.send(seq);
        }
        if let Some(acks) = &self.acks {
            for a in group.acks.drain(..) {
                if !a.is_empty() && acks.blocking_send(a).is_err() {
                    tracing::error!("the acker has stopped; committed messages stay unacked and will be redelivered (stored once: writes are idempotent)");
                }
            }
        }
        Ok(())
    }

    /// The spool cannot be written: stop taking batches (the pipeline backs up, the broker
    /// keeps the unacked messages) and say so. Nothing after the last good commit was acked.
    fn fail(&mut self, e: &io::Error) {
        tracing::error!(dir = %self.log.dir().display(), error = %e, "spool write failed; ingestion stops (unacked messages stay with the broker); /ready is false");
        metrics::counter!("qala_spool_errors_total").increment(1);
    }

    /// The next item: waits for one when `wait`, else only takes what is queued. What readers
    /// append comes first. None: nothing (or, when waiting, every input has closed).
    fn next_item(&mut self, wait: bool) -> Option<Item> {
        if let Ok(r) = self.appended.try_recv() {
            return Some(Item::Appended(r));
        }
        if let Some(rx) = self.batches.as_mut() {
            match rx.try_recv() {
                Ok(b) => return Some(Item::Batch(b)),
                Err(mpsc::error::TryRecvError::Disconnected) => self.close_input(),
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
        }
        if !wait {
            return None;
        }
        let rt = self.rt.clone();
        loop {
            let got = rt.block_on(async {
                match self.batches.as_mut() {
                    Some(rx) => tokio::select! {
                        biased;
                        r = self.appended.recv() => r.map(Item::Appended).ok_or(false),
                        b = rx.recv() => b.map(Item::Batch).ok_or(true),
                    },
                    None => self.appended.recv().await.map(Item::Appended).ok_or(false),
                }
            });
            match got {
                Ok(item) => return Some(item),
                // The batcher has ended; readers may still append until they end.
                Err(true) => self.close_input(),
                Err(false) if self.batches.is_some() => {
                    // Every sink has ended: only batches are left to take.
                    let rx = self.batches.as_mut()?;
                    return match rt.block_on(rx.recv()) {
                        Some(b) => Some(Item::Batch(b)),
                        None => {
                            self.close_input();
                            None
                        }
                    };
                }
                Err(false) => return None,
            }
        }
    }

    fn next_item_within(&mut self, wait: Duration) -> Option<Item> {
        let rt = self.rt.clone();
        let rx = self.batches.as_mut()?;
        match rt.block_on(tokio::time::timeout(wait, rx.recv())) {
            Ok(Some(b)) => Some(Item::Batch(b)),
            Ok(None) => {
                self.close_input();
                None
            }
            Err(_) => None,
        }
    }

    fn close_input(&mut self) {
        if self.batches.take().is_some() {
            // Acks of everything committed have been sent: the acker may finish.
            self.acks = None;
            self.state.send_modify(|s| s.closed = true);
        }
    }

    fn append(&mut self, item: Item, group: &mut Group) -> io::Result<()> {
        let (batch, reply) = match item {
            Item::Batch(b) => (b, None),
            Item::Appended((b, r)) => (b, Some(r)),
        };
        self.buf.clear();
        codec::encode(&batch, &mut self.buf);
        if reply.is_none() {
            // What readers append always goes in; ingest waits for room. A reader that waited
            // for room would wait for itself: room comes from readers moving their cursors
            // (refused points unblock a sink; the engine, a reader too, must not stall).
            self.wait_for_room((self.buf.len() + log::HEADER) as u64, group)?;
        }
        let seq = self.log.append(now_ns(), &self.buf)?;
        group.times.extend(batch.readings.iter().map(|r| r.time_ns));
        if let Some(r) = reply {
            group.replies.push((r, seq));
        }
        if !batch.acks.is_empty() {
            group.acks.push(batch.acks);
        }
        Ok(())
    }

    /// Blocks until `need` more bytes fit under `max_bytes` (or the spool is empty: one record
    /// larger than the limit still goes in alone). What is appended meanwhile is committed
    /// first, so its acks go out and the sinks can read it.
    fn wait_for_room(&mut self, need: u64, group: &mut Group) -> io::Result<()> {
        if self.log.bytes() + need <= self.max_bytes {
            return Ok(());
        }
        let mut logged = false;
        let waited = Instant::now();
        loop {
            self.reclaim(true)?;
            if self.log.bytes() + need <= self.max_bytes || self.log.bytes() == 0 {
                break;
            }
            if !logged {
                logged = true;
                metrics::counter!("qala_spool_full_total").increment(1);
                tracing::warn!(
                    bytes = self.log.bytes(),
                    max_bytes = self.max_bytes,
                    "spool full: ingestion paused until the sinks catch up (the broker holds the messages)"
                );
                // Make what is appended durable and visible now, not after the wait.
                self.commit_group(group)?;
            }
            // What readers append must not wait behind ingest: take it meanwhile.
            if let Ok(r) = self.appended.try_recv() {
                self.append(Item::Appended(r), group)?;
                self.commit_group(group)?;
                continue;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if logged {
            tracing::info!(
                waited_ms = waited.elapsed().as_millis() as u64,
                "spool has room again: ingestion resumes"
            );
        }
        Ok(())
    }

    /// Deletes what every sink has committed. `force`: also close the active segment when every
    /// sink has read all of it, so that it can go too (needed to free room when full).
    fn reclaim(&mut self, force: bool) -> io::Result<()> {
        let done = self
            .progress
            .iter()
            .map(|p| p.committed.load(Ordering::Acquire))
            .min()
            .unwrap_or(u64::MAX);
        if force && done >= self.log.committed() {
            self.log.roll_if_written()?;
        }
        self.log.reclaim(done)?;
        Ok(())
    }
}

impl SpoolHandle {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What is durable, now.
    pub fn state(&self) -> SpoolState {
        *self.state.borrow()
    }

    /// A reader for a sink whose last committed seq is `after`.
    pub fn reader(&self, sink: &'static str, after: u64) -> SpoolReader {
        SpoolReader {
            sink,
            log: Some(LogReader::new(self.segments.clone(), after)),
            state: self.state.clone(),
            dir: self.dir.clone(),
            appended: self.appended.clone(),
            cursor_written: after,
            cursor_at: Instant::now(),
            group_written_ns: 0,
        }
    }
}

/// A reader's view of the spool (a sink's, the indicator engine's): the next groups of committed
/// batches, its cursor, and the way back in (refused points, derived values).
pub struct SpoolReader {
    sink: &'static str,
    log: Option<LogReader>,
    state: watch::Receiver<SpoolState>,
    dir: PathBuf,
    appended: mpsc::Sender<Appended>,
    cursor_written: u64,
    cursor_at: Instant,
    group_written_ns: i64,
}

/// How often a sink's cursor is written at most (it is also written when the sink ends). A
/// stale cursor after a crash only means a few batches written twice; writes are idempotent.
const CURSOR_INTERVAL: Duration = Duration::from_millis(500);

impl SpoolReader {
    /// The last seq handed out.
    pub fn position(&self) -> u64 {
        self.log.as_ref().map_or(0, LogReader::position)
    }

    /// When the spool wrote the first record of the last group handed out (ns since the
    /// epoch): how old the oldest data is that the sink has not committed yet.
    pub fn group_written_ns(&self) -> i64 {
        self.group_written_ns
    }

    /// Whether the sink has everything that is committed.
    pub fn caught_up(&self, committed_by_sink: u64) -> bool {
        committed_by_sink >= self.state.borrow().committed
    }

    /// Waits until a batch after the position is committed, or the spool is closed. Unlike
    /// [`SpoolReader::next_group`] (which must not be dropped while it reads: the reader would
    /// lose its log), this is safe to race against a timer in `select!`.
    pub async fn wait_for_data(&mut self) {
        loop {
            let st = *self.state.borrow_and_update();
            if st.committed > self.position() || st.closed {
                return;
            }
            if self.state.changed().await.is_err() {
                return;
            }
        }
    }

    /// Waits for committed batches after the position and returns up to about `max_readings`
    /// readings' worth (at least one batch; dead letters and indicator values weigh like
    /// readings, and every batch at least 1, see [`Batch::weight`]: a backlog of batches
    /// without readings is read in bounded groups too); lingers up to `linger` for more when
    /// short. None:
    /// the spool is closed and everything was read.
    pub async fn next_group(
        &mut self,
        max_readings: usize,
        linger: Duration,
    ) -> io::Result<Option<Vec<Arc<Batch>>>> {
        loop {
            let st = *self.state.borrow_and_update();
            if st.committed > self.position() {
                break;
            }
            if st.closed {
                return Ok(None);
            }
            if self.state.changed().await.is_err() {
                // The writer is gone: nothing more will be committed.
                let st = *self.state.borrow();
                if st.committed <= self.position() {
                    return Ok(None);
                }
            }
        }
        let mut group = Vec::new();
        let mut readings = 0usize;
        self.group_written_ns = 0;
        let deadline = tokio::time::Instant::now() + linger;
        loop {
            let committed = self.state.borrow().committed;
            let (more, n, first_ns) = self
                .read(committed, max_readings - readings.min(max_readings))
                .await?;
            if self.group_written_ns == 0 {
                self.group_written_ns = first_ns;
            }
            readings += n;
            group.extend(more);
            if readings >= max_readings || linger.is_zero() {
                break;
            }
            // Short of a full group: wait a little for the writer to commit more.
            match tokio::time::timeout_at(deadline, self.state.changed()).await {
                Ok(Ok(())) => continue,
                _ => break,
            }
        }
        Ok(Some(group))
    }

    /// Reads and decodes committed records off the async threads.
    async fn read(
        &mut self,
        committed: u64,
        budget: usize,
    ) -> io::Result<(Vec<Arc<Batch>>, usize, i64)> {
        let Some(mut log) = self.log.take() else {
            return Err(io::Error::other("spool reader lost"));
        };
        let out = tokio::task::spawn_blocking(move || {
            let mut got = Vec::new();
            let mut readings = 0usize;
            let mut first_ns = 0i64;
            let result = loop {
                if readings >= budget.max(1) && !got.is_empty() {
                    break Ok(());
                }
                match log.next(committed) {
                    Ok(Some(rec)) => match codec::decode(rec.seq, &rec.payload) {
                        Ok(b) if first_ns == 0 => {
                            first_ns = rec.written_ns;
                            readings += b.weight();
                            got.push(Arc::new(b));
                        }
                        Ok(b) => {
                            readings += b.weight();
                            got.push(Arc::new(b));
                        }
                        Err(e) => {
                            // Written by this code and checksummed: only a bug gets here.
                            metrics::counter!("qala_spool_undecodable_total").increment(1);
                            tracing::error!(seq = rec.seq, error = %e, "spool record cannot be decoded; skipped (its raw bytes stay on disk until reclaimed)");
                        }
                    },
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                }
            };
            (log, got, readings, first_ns, result)
        })
        .await
        .map_err(io::Error::other)?;
        let (log, got, readings, first_ns, result) = out;
        self.log = Some(log);
        result.map(|()| (got, readings, first_ns))
    }

    /// Appends `batch` to the spool and returns its seq once it is durable (committed, visible
    /// to every reader). For a sink's refused points (as dead letters, so the SQLite sink stores
    /// them) and the indicator engine's values (so every sink stores them like readings). It
    /// goes in even when the spool is full (see the writer); a reader that appends reads its
    /// own batch back later and must skip it.
    pub async fn append(&self, batch: Batch) -> Result<u64, SpoolClosed> {
        let (tx, rx) = oneshot::channel();
        self.appended
            .send((batch, tx))
            .await
            .map_err(|_| SpoolClosed)?;
        rx.await.map_err(|_| SpoolClosed)
    }

    /// Records that the sink committed everything up to `seq`; the cursor file is rewritten at
    /// most every [`CURSOR_INTERVAL`] unless `now` is set.
    pub async fn commit_cursor(&mut self, seq: u64, now: bool) -> io::Result<()> {
        if seq == self.cursor_written || (!now && self.cursor_at.elapsed() < CURSOR_INTERVAL) {
            return Ok(());
        }
        let dir = self.dir.clone();
        let sink = self.sink;
        tokio::task::spawn_blocking(move || log::write_cursor(&dir, sink, seq))
            .await
            .map_err(io::Error::other)??;
        self.cursor_written = seq;
        self.cursor_at = Instant::now();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::indicators::{Completeness, IndicatorValue, Scope};
    use crate::model::Sphere;

    fn value(i: usize) -> IndicatorValue {
        IndicatorValue {
            indicator: "device_coverage".into(),
            sphere: Sphere::Safety,
            scope: Scope::City,
            city: "almaty".into(),
            district: String::new(),
            sensor_id: String::new(),
            component: String::new(),
            window: "1h".into(),
            window_start_ns: i as i64 * 3_600_000_000_000,
            window_end_ns: (i as i64 + 1) * 3_600_000_000_000,
            value: Some(0.5),
            unit: "%".into(),
            level: None,
            completeness: Completeness::new(1, 2, "devices"),
            reference: "registry".into(),
            details: Vec::new(),
            computed_ns: 1,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn appended_indicator_batches_are_durable_and_read_in_bounded_groups() {
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = SpoolSettings {
            dir: dir.path().to_path_buf(),
            ..SpoolSettings::default()
        };
        let spool = Spool::open(&settings, &["test"]).expect("open");
        let (batches_tx, batches_rx) = mpsc::channel(4);
        let (acks_tx, _acks_rx) = mpsc::channel(4);
        let progress = SinkProgress::starting_at("test", 0);
        let (handle, writer) = spool.start(batches_rx, acks_tx, vec![progress.clone()]);
        let writer = tokio::spawn(writer);
        let mut reader = handle.reader("test", 0);
        // 40 batches of 3 values each, as an engine appends them: each durable on return.
        let mut seqs = Vec::new();
        for b in 0..40 {
            let batch = Batch {
                indicators: (0..3).map(|i| value(b * 3 + i)).collect(),
                ..Batch::default()
            };
            let seq = reader.append(batch).await.expect("appended");
            assert!(
                handle.state().committed >= seq,
                "durable when append returns"
            );
            seqs.push(seq);
        }
        assert_eq!(seqs, (1..=40).collect::<Vec<u64>>());
        // A group of "10 readings" holds 4 batches of 3 values (weight 12), not the whole log.
        let mut values = 0;
        let mut groups = Vec::new();
        while values < 120 {
            let group = reader
                .next_group(10, Duration::ZERO)
                .await
                .expect("read")
                .expect("open");
            groups.push(group.len());
            values += group.iter().map(|b| b.indicators.len()).sum::<usize>();
        }
        assert_eq!(values, 120);
        assert_eq!(groups, vec![4; 10]);
        assert_eq!(reader.position(), 40);
        // Ingest closes; the writer ends once the reader (which may append) is gone.
        drop(batches_tx);
        assert!(reader
            .next_group(10, Duration::ZERO)
            .await
            .expect("read")
            .is_none());
        drop(reader);
        drop(handle);
        tokio::time::timeout(Duration::from_secs(10), writer)
            .await
            .expect("the writer ends")
            .expect("no panic");
    }
}
