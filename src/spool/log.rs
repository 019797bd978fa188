//! The segmented, append-only log under the spool: checksummed records in segment files, group
//! commit (one `fdatasync` for everything appended since the last commit), torn-tail recovery on
//! open, cursors per sink written atomically, and segments deleted once every sink is past them.
//! Synchronous file I/O only; `spool::run_writer` drives it from its own thread.
//!
//! On disk, in `dir`:
//! ```text
//! 00000000000000000001.seg     records 1 .. 41 233       (file name: the first record's seq)
//! 00000000000000041234.seg     records 41 234 ..        (the active segment, appended to)
//! cursors/sqlite               "41200\n": the last seq the sqlite sink committed
//! cursors/influxdb
//! ```
//! A record: `len u32 LE | crc32 u32 LE | seq u64 LE | written_ns i64 LE | payload (len bytes)`,
//! the CRC-32 (Castagnoli is not needed; IEEE via crc32fast) over seq, written_ns and payload.
//! Seqs increase by one from record to record, across segments and restarts.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Bytes before a record's payload.
pub const HEADER: usize = 4 + 4 + 8 + 8;
/// No record is larger than this; a length beyond it is damage, not data.
pub const MAX_RECORD: usize = 256 << 20;

/// A segment file and what is known of it.
#[derive(Debug, Clone)]
pub struct SegmentInfo {
    /// Seq of its first record (also its file name).
    pub first_seq: u64,
    pub path: PathBuf,
    /// Bytes on disk (committed and not).
    pub len: u64,
}

/// The segments in seq order, shared between the writer and the readers (which only need to
/// find the next file).
pub type Segments = Arc<Mutex<VecDeque<SegmentInfo>>>;

/// A record read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub seq: u64,
    /// When the spool wrote it (ns since the Unix epoch).
    pub written_ns: i64,
    pub payload: Vec<u8>,
}

/// What `open` found and repaired.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Recovery {
    /// Intact records on disk.
    pub records: u64,
    /// Bytes cut off damaged tails (torn writes, bad checksums).
    pub truncated_bytes: u64,
    /// Segments that were cut.
    pub truncated_segments: Vec<PathBuf>,
}

/// The writing end.
pub struct Log {
    dir: PathBuf,
    segment_bytes: u64,
    segments: Segments,
    active: File,
    /// Appended, not yet written to the file.
    buf: Vec<u8>,
    next_seq: u64,
    /// Highest seq made durable.
    committed: u64,
    /// Bytes of every segment, including what is buffered.
    bytes: u64,
}

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.seg"))
}

fn cursor_dir(dir: &Path) -> PathBuf {
    dir.join("cursors")
}

/// fsyncs a directory, so that creates, renames and deletes in it are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn checksum(seq: u64, written_ns: i64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&seq.to_le_bytes());
    h.update(&written_ns.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// Appends one encoded record to `out`.
pub fn encode_record(out: &mut Vec<u8>, seq: u64, written_ns: i64, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&checksum(seq, written_ns, payload).to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&written_ns.to_le_bytes());
    out.extend_from_slice(payload);
}

/// Why a record could not be read.
#[derive(Debug)]
enum ReadError {
    /// Clean end of the file.
    End,
    /// A partial or damaged record starts here.
    Damaged(String),
    Io(io::Error),
}

/// Reads the record at the reader's position: its payload into `scratch` (checksum verified);
/// returns its seq and write time.
fn read_record<R: Read>(r: &mut R, scratch: &mut Vec<u8>) -> Result<(u64, i64), ReadError> {
    let mut head = [0u8; HEADER];
    let mut got = 0;
    while got < HEADER {
        match r.read(&mut head[got..]) {
            Ok(0) if got == 0 => return Err(ReadError::End),
            Ok(0) => return Err(ReadError::Damaged(format!("a header cut at {got} bytes"))),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
    let word = |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
    let long = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&head[i..i + 8]);
        b
    };
    let len = word(0) as usize;
    let crc = word(4);
    let seq = u64::from_le_bytes(long(8));
    let written_ns = i64::from_le_bytes(long(16));
    if len > MAX_RECORD {
        return Err(ReadError::Damaged(format!("a length of {len} bytes")));
    }
    scratch.clear();
    scratch.resize(len, 0);
    if let Err(e) = r.read_exact(scratch) {
        return Err(if e.kind() == io::ErrorKind::UnexpectedEof {
            ReadError::Damaged(format!("a payload cut short (of {len} bytes)"))
        } else {
            ReadError::Io(e)
        });
    }
    if checksum(seq, written_ns, scratch) != crc {
        return Err(ReadError::Damaged(format!(
            "a checksum mismatch (record seq {seq})"
        )));
    }
    Ok((seq, written_ns))
}

/// Reads a cursor file: the last seq a sink committed. Missing: None.
pub fn read_cursor(dir: &Path, sink: &str) -> io::Result<Option<u64>> {
    let path = cursor_dir(dir).join(sink);
    match fs::read_to_string(&path) {
        Ok(text) => text.trim().parse::<u64>().map(Some).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {text:?} is not a seq ({e})", path.display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes a cursor atomically: temp file, fsync, rename over the old one, fsync the directory.
pub fn write_cursor(dir: &Path, sink: &str, seq: u64) -> io::Result<()> {
    let cdir = cursor_dir(dir);
    let tmp = cdir.join(format!(".{sink}.tmp"));
    {
        let mut f = File::create(&tmp)?;
        writeln!(f, "{seq}")?;
        f.sync_all()?;
    }
    fs::rename(&tmp, cdir.join(sink))?;
    sync_dir(&cdir)
}

impl Log {
    /// Opens (creating) the log in `dir`: checks every record, cuts each segment at its first
    /// damaged record, and starts a fresh active segment. `min_next_seq`: the seq to continue
    /// from when the log holds fewer (e.g. 1 + the highest cursor, if the segments were lost).
    pub fn open(dir: &Path, segment_bytes: u64, min_next_seq: u64) -> io::Result<(Log, Recovery)> {
        fs::create_dir_all(cursor_dir(dir))?;
        let mut found: Vec<(u64, PathBuf)> = Vec::new();
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if let Some(first) = name
                .strip_suffix(".seg")
                .and_then(|s| s.parse::<u64>().ok())
            {
                found.push((first, path));
            }
        }
        found.sort();
        let mut recovery = Recovery::default();
        let mut segments = VecDeque::new();
        let mut last_seq: Option<u64> = None;
        let mut scratch = Vec::new();
        for (first_seq, path) in found {
            let (good_len, records, last, damage) =
                scan_segment(&path, first_seq, last_seq, &mut scratch)?;
            let len = fs::metadata(&path)?.len();
            if let Some(why) = damage {
                tracing::error!(
                    segment = %path.display(), kept_bytes = good_len, cut_bytes = len - good_len,
                    "spool segment damaged ({why}); cut at the last intact record"
                );
                let f = OpenOptions::new().write(true).open(&path)?;
                f.set_len(good_len)?;
                f.sync_all()?;
                recovery.truncated_bytes += len - good_len;
                recovery.truncated_segments.push(path.clone());
            }
            if records == 0 {
                fs::remove_file(&path)?;
                continue;
            }
            recovery.records += records;
            last_seq = last.or(last_seq);
            segments.push_back(SegmentInfo {
                first_seq,
                path,
                len: good_len,
            });
        }
        let next_seq = last_seq.map_or(1, |s| s + 1).max(min_next_seq).max(1);
        let path = segment_path(dir, next_seq);
        let active = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)?;
        sync_dir(dir)?;
        segments.push_back(SegmentInfo {
            first_seq: next_seq,
            path,
            len: 0,
        });
        let bytes = segments.iter().map(|s| s.len).sum();
        Ok((
            Log {
                dir: dir.to_path_buf(),
                segment_bytes: segment_bytes.max(HEADER as u64 + 1),
                segments: Arc::new(Mutex::new(segments)),
                active,
                buf: Vec::with_capacity(1 << 20),
                next_seq,
                committed: next_seq - 1,
                bytes,
            },
            recovery,
        ))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The segment list, for readers.
    pub fn segments(&self) -> Segments {
        self.segments.clone()
    }

    /// Bytes on disk, plus what is appended and not yet written.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The highest durable seq (0: none).
    pub fn committed(&self) -> u64 {
        self.committed
    }

    /// The seq the next record gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Appends a record (buffered; durable after [`Log::commit`]); returns its seq. Rolls to a
    /// new segment first when the active one is full.
    pub fn append(&mut self, written_ns: i64, payload: &[u8]) -> io::Result<u64> {
        if payload.len() > MAX_RECORD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a spool record of {} bytes exceeds {MAX_RECORD}",
                    payload.len()
                ),
            ));
        }
        let active_len = self.active_len();
        if active_len > 0 && active_len + (HEADER + payload.len()) as u64 > self.segment_bytes {
            self.roll()?;
        }
        let seq = self.next_seq;
        let before = self.buf.len();
        encode_record(&mut self.buf, seq, written_ns, payload);
        let added = (self.buf.len() - before) as u64;
        self.bytes += added;
        if let Ok(mut segs) = self.segments.lock() {
            if let Some(last) = segs.back_mut() {
                last.len += added;
            }
        }
        self.next_seq += 1;
        Ok(seq)
    }

    fn active_len(&self) -> u64 {
        self.segments
            .lock()
            .ok()
            .and_then(|s| s.back().map(|s| s.len))
            .unwrap_or(0)
    }

    /// Writes what was appended and makes it durable with one `fdatasync`; returns the highest
    /// durable seq. An error here is fatal for the log (after a failed fsync the kernel may have
    /// dropped the pages: nothing appended since the last commit may be acked).
    pub fn commit(&mut self) -> io::Result<u64> {
        if self.next_seq - 1 == self.committed {
            return Ok(self.committed);
        }
        self.active.write_all(&self.buf)?;
        self.buf.clear();
        self.active.sync_data()?;
        self.committed = self.next_seq - 1;
        Ok(self.committed)
    }

    /// Closes the active segment if it holds anything, so that [`Log::reclaim`] may delete it
    /// once every sink is past it.
    pub fn roll_if_written(&mut self) -> io::Result<()> {
        if self.active_len() > 0 {
            self.roll()?;
        }
        Ok(())
    }

    /// Closes the active segment (written and synced) and opens the next.
    fn roll(&mut self) -> io::Result<()> {
        self.active.write_all(&self.buf)?;
        self.buf.clear();
        self.active.sync_data()?;
        self.committed = self.next_seq - 1;
        let path = segment_path(&self.dir, self.next_seq);
        self.active = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)?;
        sync_dir(&self.dir)?;
        if let Ok(mut segs) = self.segments.lock() {
            segs.push_back(SegmentInfo {
                first_seq: self.next_seq,
                path,
                len: 0,
            });
        }
        Ok(())
    }

    /// Deletes every closed segment whose records all have seq ≤ `done` (what every sink has
    /// committed). Returns the bytes freed.
    pub fn reclaim(&mut self, done: u64) -> io::Result<u64> {
        let mut freed = 0;
        loop {
            let victim = {
                let Ok(mut segs) = self.segments.lock() else {
                    break;
                };
                // A segment's last seq is the next one's first minus one; the active segment
                // (the last) is never deleted.
                match (segs.front(), segs.get(1)) {
                    (Some(_), Some(next)) if next.first_seq - 1 <= done => segs.pop_front(),
                    _ => None,
                }
            };
            let Some(seg) = victim else { break };
            match fs::remove_file(&seg.path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            freed += seg.len;
            self.bytes -= seg.len.min(self.bytes);
        }
        if freed > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(freed)
    }
}

/// Scans one segment: (bytes of intact records, their count, the last seq, the damage found).
/// A record is intact if its header and payload are whole, its checksum matches and its seq
/// follows the one before (the first one: the file name's).
fn scan_segment(
    path: &Path,
    first_seq: u64,
    prev_seq: Option<u64>,
    scratch: &mut Vec<u8>,
) -> io::Result<(u64, u64, Option<u64>, Option<String>)> {
    let mut r = BufReader::with_capacity(1 << 20, File::open(path)?);
    let mut good = 0u64;
    let mut records = 0u64;
    let mut expect = match prev_seq {
        Some(p) if p >= first_seq => p + 1,
        _ => first_seq,
    };
    let mut last = None;
    loop {
        match read_record(&mut r, scratch) {
            Ok((seq, _)) if seq == expect => {
                good += (HEADER + scratch.len()) as u64;
                records += 1;
                last = Some(seq);
                expect = seq + 1;
            }
            Ok((seq, _)) => {
                return Ok((
                    good,
                    records,
                    last,
                    Some(format!("seq {seq} where {expect} was due")),
                ))
            }
            Err(ReadError::End) => return Ok((good, records, last, None)),
            Err(ReadError::Damaged(why)) => return Ok((good, records, last, Some(why))),
            Err(ReadError::Io(e)) => return Err(e),
        }
    }
}

/// A reading end: follows the log from a cursor, segment after segment, reading only what the
/// writer has committed.
pub struct LogReader {
    segments: Segments,
    /// The open segment: its first seq and a reader positioned at the next record.
    current: Option<(u64, BufReader<File>)>,
    /// The last seq returned (or the cursor it started from).
    position: u64,
    scratch: Vec<u8>,
}

impl LogReader {
    /// A reader that returns the records after seq `after`.
    pub fn new(segments: Segments, after: u64) -> LogReader {
        LogReader {
            segments,
            current: None,
            position: after,
            scratch: Vec::new(),
        }
    }

    /// The last seq read.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The segment (first seq, path) holding seq `seq`, or the first one after it.
    fn segment_for(&self, seq: u64) -> Option<(u64, PathBuf)> {
        let segs = self.segments.lock().ok()?;
        let mut pick = None;
        for (i, s) in segs.iter().enumerate() {
            let next_first = segs.get(i + 1).map(|n| n.first_seq);
            if s.first_seq > seq || next_first.is_none_or(|n| n > seq) {
                pick = Some((s.first_seq, s.path.clone()));
                break;
            }
        }
        pick
    }

    /// The next committed record (seq ≤ `committed`), or None when there is none yet.
    pub fn next(&mut self, committed: u64) -> io::Result<Option<Record>> {
        let want = self.position + 1;
        if want > committed {
            return Ok(None);
        }
        for _ in 0..3 {
            if self.current.is_none() {
                let Some((first, path)) = self.segment_for(want) else {
                    return Ok(None);
                };
                let file = match File::open(&path) {
                    Ok(f) => f,
                    // Deleted under us: every sink was past it; look again.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                self.current = Some((first, BufReader::with_capacity(256 << 10, file)));
            }
            let Some((first, r)) = self.current.as_mut() else {
                continue;
            };
            let first = *first;
            loop {
                let at = r.stream_position()?;
                match read_record(r, &mut self.scratch) {
                    Ok((seq, written_ns)) if seq < want => {
                        let _ = written_ns; // before the cursor: already delivered
                        continue;
                    }
                    Ok((seq, written_ns)) => {
                        self.position = seq;
                        return Ok(Some(Record {
                            seq,
                            written_ns,
                            payload: std::mem::take(&mut self.scratch),
                        }));
                    }
                    Err(ReadError::End) => {
                        // The end of this file: move on if a later segment exists.
                        let later = self
                            .segments
                            .lock()
                            .ok()
                            .is_some_and(|s| s.iter().any(|x| x.first_seq > first));
                        if later {
                            self.current = None;
                            break;
                        }
                        return Ok(None);
                    }
                    Err(ReadError::Damaged(why)) => {
                        // Only committed records are read, and those are whole: this is damage
                        // on disk. Step back so that a retry reads the same place.
                        r.seek(SeekFrom::Start(at))?;
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("spool record {want}: {why}"),
                        ));
                    }
                    Err(ReadError::Io(e)) => return Err(e),
                }
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(i: u64) -> Vec<u8> {
        format!("record {i} ")
            .repeat((i % 7 + 1) as usize)
            .into_bytes()
    }

    fn read_all(log: &Log, after: u64) -> Vec<Record> {
        let mut r = LogReader::new(log.segments(), after);
        let mut out = Vec::new();
        while let Some(rec) = r.next(log.committed()).expect("read") {
            out.push(rec);
        }
        out
    }

    #[test]
    fn appended_records_are_invisible_until_committed_then_read_in_order_across_segments() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, rec) = Log::open(dir.path(), 300, 1).expect("open");
        assert_eq!(rec, Recovery::default());
        for i in 1..=50 {
            assert_eq!(log.append(i as i64, &payload(i)).expect("append"), i);
        }
        // Rolling segments writes and syncs what came before; the rest waits for commit.
        let before = log.committed();
        assert!(before < 50);
        assert_eq!(log.commit().expect("commit"), 50);
        let got = read_all(&log, 0);
        assert_eq!(got.len(), 50);
        for (i, r) in got.iter().enumerate() {
            let i = i as u64 + 1;
            assert_eq!(
                (r.seq, r.written_ns, &r.payload),
                (i, i as i64, &payload(i))
            );
        }
        assert!(log.segments().lock().expect("lock").len() > 3);
        // From a cursor in the middle.
        let tail = read_all(&log, 37);
        assert_eq!(tail.first().map(|r| r.seq), Some(38));
        assert_eq!(tail.len(), 13);
    }

    #[test]
    fn reopening_continues_the_seqs_and_keeps_every_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (mut log, _) = Log::open(dir.path(), 1 << 20, 1).expect("open");
            for i in 1..=10 {
                log.append(0, &payload(i)).expect("append");
            }
            log.commit().expect("commit");
        }
        let (mut log, rec) = Log::open(dir.path(), 1 << 20, 1).expect("reopen");
        assert_eq!(rec.records, 10);
        assert_eq!(rec.truncated_bytes, 0);
        assert_eq!(log.next_seq(), 11);
        log.append(0, b"eleven").expect("append");
        log.commit().expect("commit");
        let got = read_all(&log, 0);
        assert_eq!(got.len(), 11);
        assert_eq!(got[10].payload, b"eleven");
        // A cursor ahead of what is on disk (segments lost) moves the seqs past it.
        drop(log);
        let (log, _) = Log::open(dir.path(), 1 << 20, 500).expect("reopen");
        assert_eq!(log.next_seq(), 500);
    }

    #[test]
    fn a_torn_tail_is_cut_at_the_last_intact_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let seg;
        {
            let (mut log, _) = Log::open(dir.path(), 1 << 20, 1).expect("open");
            for i in 1..=5 {
                log.append(0, &payload(i)).expect("append");
            }
            log.commit().expect("commit");
            seg = log.segments().lock().expect("lock")[0].path.clone();
        }
        // Half a record more, as a crash in the middle of a write leaves it.
        let mut extra = Vec::new();
        encode_record(&mut extra, 6, 0, &payload(6));
        let full = fs::metadata(&seg).expect("meta").len();
        let mut f = OpenOptions::new()
            .append(true)
            .open(&seg)
            .expect("open seg");
        f.write_all(&extra[..extra.len() / 2]).expect("write");
        drop(f);
        let (log, rec) = Log::open(dir.path(), 1 << 20, 1).expect("reopen");
        assert_eq!(rec.records, 5);
        assert_eq!(rec.truncated_bytes, (extra.len() / 2) as u64);
        assert_eq!(fs::metadata(&seg).expect("meta").len(), full);
        assert_eq!(log.next_seq(), 6);
        assert_eq!(read_all(&log, 0).len(), 5);
    }

    #[test]
    fn a_corrupted_record_cuts_the_segment_there_and_later_segments_survive() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first_seg;
        {
            let (mut log, _) = Log::open(dir.path(), 1 << 20, 1).expect("open");
            for i in 1..=6 {
                log.append(0, &payload(i)).expect("append");
            }
            log.commit().expect("commit");
            first_seg = log.segments().lock().expect("lock")[0].path.clone();
        }
        // Flip a byte in the payload of record 4.
        let mut bytes = fs::read(&first_seg).expect("read");
        let mut offset = 0usize;
        for i in 1..4 {
            offset += HEADER + payload(i).len();
        }
        bytes[offset + HEADER + 2] ^= 0xff;
        fs::write(&first_seg, &bytes).expect("write");
        let (mut log, rec) = Log::open(dir.path(), 1 << 20, 1).expect("reopen");
        assert_eq!(rec.records, 3);
        assert_eq!(rec.truncated_segments, vec![first_seg.clone()]);
        // Records 4..6 are gone with the damage; new records continue at 4.
        assert_eq!(log.next_seq(), 4);
        log.append(0, b"four again").expect("append");
        log.commit().expect("commit");
        let got: Vec<u64> = read_all(&log, 0).iter().map(|r| r.seq).collect();
        assert_eq!(got, vec![1, 2, 3, 4]);
    }

    #[test]
    fn reclaim_deletes_only_segments_every_sink_is_past() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, _) = Log::open(dir.path(), 200, 1).expect("open");
        for i in 1..=40 {
            log.append(0, &payload(i)).expect("append");
        }
        log.commit().expect("commit");
        let total = log.bytes();
        let firsts: Vec<u64> = log
            .segments()
            .lock()
            .expect("lock")
            .iter()
            .map(|s| s.first_seq)
            .collect();
        assert!(firsts.len() >= 4, "{firsts:?}");
        // Done up to the last record of the second segment: the first two go.
        let done = firsts[2] - 1;
        let freed = log.reclaim(done).expect("reclaim");
        assert!(freed > 0);
        assert_eq!(log.bytes(), total - freed);
        let left: Vec<u64> = log
            .segments()
            .lock()
            .expect("lock")
            .iter()
            .map(|s| s.first_seq)
            .collect();
        assert_eq!(left, firsts[2..].to_vec());
        // A reader from an old cursor starts at the oldest record left.
        assert_eq!(read_all(&log, 0).first().map(|r| r.seq), Some(firsts[2]));
        // The active segment stays, even when everything is done.
        log.reclaim(u64::MAX).expect("reclaim");
        assert_eq!(log.segments().lock().expect("lock").len(), 1);
        assert_eq!(fs::read_dir(dir.path()).expect("ls").count(), 2); // segment + cursors/
    }

    #[test]
    fn cursors_are_written_atomically_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_log, _) = Log::open(dir.path(), 1 << 20, 1).expect("open");
        assert_eq!(read_cursor(dir.path(), "sqlite").expect("read"), None);
        write_cursor(dir.path(), "sqlite", 41).expect("write");
        write_cursor(dir.path(), "sqlite", 42).expect("write");
        assert_eq!(read_cursor(dir.path(), "sqlite").expect("read"), Some(42));
        fs::write(cursor_dir(dir.path()).join("bad"), "x\n").expect("write");
        assert!(read_cursor(dir.path(), "bad").is_err());
    }
}
