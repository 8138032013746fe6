//! The daemon's files: an append-only redo log holding the records of all
//! its segments, and a small state file (epoch, durable LSN hint, truncation
//! ranges, last checkpoint).
//!
//! The log is a sequence of files (`redo.00000001.log`, …); a new one is
//! started when the current one passes `LOG_FILE_BYTES`. A file whose every
//! entry is at or below a checkpoint is deleted (`LogFiles::delete_through`).
//!
//! Log frame: `u32` little-endian length, then a bincode `LogEntry` followed
//! by its crc32c. An entry is a redo record or a writer's completeness
//! promise (which moves an SCL past the chain's tail, so it must be as
//! durable as the records). Appends are written and then synced with
//! `sync_data` before anyone is told they are durable. At open, frames are
//! read until the first that is short, too long or fails its checksum: that
//! tail was torn by a crash before its sync, so it is cut off (the file is
//! truncated to the last good frame) and never applied. Only the last file
//! can be torn: a bad frame in an earlier one is corruption and stops the
//! daemon from starting.
//!
//! The state file is replaced atomically: write a temporary file, sync it,
//! rename it over the old one, sync the directory.

use crate::ids::{Lsn, ProtectionGroupId};
use crate::redo::RedoRecord;
use crate::store::PersistedState;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The largest frame accepted: a record carries at most one tuple of a page.
pub const FRAME_BYTES_MAX: usize = 1024 * 1024;
/// A log file is closed and a new one started past this size.
pub const LOG_FILE_BYTES: u64 = 64 * 1024 * 1024;

const LOG_PREFIX: &str = "redo.";
const LOG_SUFFIX: &str = ".log";
const STATE_FILE: &str = "state.bin";
const STATE_TMP_FILE: &str = "state.bin.tmp";

/// One entry of the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogEntry {
    /// A redo record.
    Record(RedoRecord),
    /// The writer's promise that the group has no records in `(tail_lsn, complete_to]`.
    Promise { protection_group: ProtectionGroupId, tail_lsn: Lsn, complete_to: Lsn },
}

/// A borrowed `LogEntry`, encoded identically (serde sees through references).
#[derive(Serialize)]
enum LogEntryRef<'a> {
    Record(&'a RedoRecord),
    Promise { protection_group: ProtectionGroupId, tail_lsn: Lsn, complete_to: Lsn },
}

/// A promise to log: (group, tail, complete_to).
pub type Promise = (ProtectionGroupId, Lsn, Lsn);

/// The append-only redo log.
#[derive(Debug)]
pub struct RedoLog {
    dir: PathBuf,
    file: File,
    sequence: u64,
    /// Bytes in the current file.
    len_bytes: u64,
    /// The newest LSN an entry of the current file names.
    max_lsn: Lsn,
    /// Size at which the current file is closed.
    file_bytes: u64,
    files: LogFiles,
}

/// The closed log files, shared with whoever deletes them after a checkpoint.
#[derive(Clone, Debug, Default)]
pub struct LogFiles {
    dir: PathBuf,
    /// (path, the newest LSN any of its entries names), oldest first.
    closed: Arc<Mutex<Vec<(PathBuf, Lsn)>>>,
}

impl LogFiles {
    /// Deletes the closed files whose every entry is at or below `lsn`
    /// (older files first, stopping at the first still needed); returns how
    /// many went.
    pub fn delete_through(&self, lsn: Lsn) -> io::Result<usize> {
        let mut closed = self.closed.lock().expect("log file list poisoned");
        let count = closed.iter().take_while(|(_, max)| *max <= lsn).count();
        for (path, _) in closed.drain(..count) {
            std::fs::remove_file(path)?;
        }
        if count > 0 {
            File::open(&self.dir)?.sync_all()?;
        }
        Ok(count)
    }

    /// Number of closed files still kept.
    pub fn closed_count(&self) -> usize {
        self.closed.lock().expect("log file list poisoned").len()
    }
}

impl LogEntry {
    /// The newest LSN the entry names (a promise's tail): a log file whose
    /// entries are all at or below a checkpoint is no longer needed.
    pub fn lsn(&self) -> Lsn {
        match self {
            LogEntry::Record(record) => record.lsn,
            LogEntry::Promise { tail_lsn, .. } => *tail_lsn,
        }
    }
}

fn log_path(dir: &Path, sequence: u64) -> PathBuf {
    dir.join(format!("{LOG_PREFIX}{sequence:08}{LOG_SUFFIX}"))
}

/// The log files in `dir`, by sequence number.
fn log_files(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let sequence = name.strip_prefix(LOG_PREFIX).and_then(|n| n.strip_suffix(LOG_SUFFIX));
        if let Some(sequence) = sequence.and_then(|s| s.parse::<u64>().ok()) {
            files.push((sequence, path));
        }
    }
    files.sort_unstable();
    Ok(files)
}

/// What opening the log found.
#[derive(Debug)]
pub struct Replay {
    /// Every intact entry, in log order.
    pub entries: Vec<LogEntry>,
    /// Bytes cut from a torn tail (0 if the log was clean).
    pub torn_bytes: u64,
}

impl RedoLog {
    /// Opens (or creates) the log in `dir`, reads it back and cuts a torn tail.
    pub fn open(dir: &Path) -> io::Result<(RedoLog, Replay)> {
        let mut found = log_files(dir)?;
        let (sequence, path) = found.pop().unwrap_or_else(|| (1, log_path(dir, 1)));
        let mut entries = Vec::new();
        let mut closed = Vec::with_capacity(found.len());
        for (_, earlier) in found {
            let mut file = File::open(&earlier)?;
            let file_len = file.metadata()?.len();
            let (mut read, good_len) = read_frames(&mut file)?;
            if good_len != file_len {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("redo log file {} is corrupt at byte {good_len}", earlier.display()),
                ));
            }
            closed.push((earlier, read.iter().map(LogEntry::lsn).max().unwrap_or(Lsn::ZERO)));
            entries.append(&mut read);
        }
        let mut file = OpenOptions::new().read(true).append(true).create(true).open(&path)?;
        let file_len = file.metadata()?.len();
        let (mut read, good_len) = read_frames(&mut file)?;
        let torn_bytes = file_len - good_len;
        if torn_bytes > 0 {
            file.set_len(good_len)?;
            file.sync_all()?;
        }
        file.seek(SeekFrom::End(0))?;
        File::open(dir)?.sync_all()?;
        let max_lsn = read.iter().map(LogEntry::lsn).max().unwrap_or(Lsn::ZERO);
        entries.append(&mut read);
        let files = LogFiles { dir: dir.to_path_buf(), closed: Arc::new(Mutex::new(closed)) };
        let log = RedoLog {
            dir: dir.to_path_buf(),
            file,
            sequence,
            len_bytes: good_len,
            max_lsn,
            file_bytes: LOG_FILE_BYTES,
            files,
        };
        Ok((log, Replay { entries, torn_bytes }))
    }

    /// Closes files at `bytes` instead of `LOG_FILE_BYTES`.
    pub fn set_file_bytes(&mut self, bytes: u64) {
        self.file_bytes = bytes.max(1);
    }

    /// The closed files, for deletion after checkpoints.
    pub fn files(&self) -> LogFiles {
        self.files.clone()
    }

    /// Closes the current file and starts the next one.
    fn roll(&mut self) -> io::Result<()> {
        let next = log_path(&self.dir, self.sequence + 1);
        let file = OpenOptions::new().read(true).append(true).create_new(true).open(&next)?;
        File::open(&self.dir)?.sync_all()?;
        let closed = std::mem::replace(&mut self.file, file);
        drop(closed);
        let path = log_path(&self.dir, self.sequence);
        self.files.closed.lock().expect("log file list poisoned").push((path, self.max_lsn));
        self.sequence += 1;
        self.len_bytes = 0;
        self.max_lsn = Lsn::ZERO;
        Ok(())
    }

    /// Appends records and promises and syncs them. On error the log's tail
    /// is unknown: the caller must stop using it (a restart cuts whatever is torn).
    pub fn append<'a>(
        &mut self,
        records: impl IntoIterator<Item = &'a RedoRecord>,
        promises: &[Promise],
    ) -> io::Result<()> {
        let mut buffer = Vec::new();
        let mut max_lsn = self.max_lsn;
        for record in records {
            push_frame(&mut buffer, &LogEntryRef::Record(record))?;
            max_lsn = max_lsn.max(record.lsn);
        }
        for &(protection_group, tail_lsn, complete_to) in promises {
            push_frame(&mut buffer, &LogEntryRef::Promise { protection_group, tail_lsn, complete_to })?;
            max_lsn = max_lsn.max(tail_lsn);
        }
        self.file.write_all(&buffer)?;
        self.file.sync_data()?;
        self.len_bytes += buffer.len() as u64;
        self.max_lsn = max_lsn;
        if self.len_bytes >= self.file_bytes {
            self.roll()?;
        }
        Ok(())
    }

    /// Bytes in the current log file.
    pub fn len_bytes(&self) -> u64 {
        self.len_bytes
    }
}

fn push_frame(buffer: &mut Vec<u8>, entry: &LogEntryRef<'_>) -> io::Result<()> {
    let mut bytes = bincode::serialize(entry).map_err(io::Error::other)?;
    bytes.extend_from_slice(&crc32c::crc32c(&bytes).to_le_bytes());
    let len = u32::try_from(bytes.len()).ok().filter(|l| (*l as usize) <= FRAME_BYTES_MAX);
    let len = len.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "log entry too large"))?;
    buffer.extend_from_slice(&len.to_le_bytes());
    buffer.extend_from_slice(&bytes);
    Ok(())
}

fn decode_frame(frame: &[u8]) -> Option<LogEntry> {
    let (payload, crc) = frame.split_at_checked(frame.len().checked_sub(4)?)?;
    if crc32c::crc32c(payload).to_le_bytes() != crc {
        return None;
    }
    bincode::deserialize(payload).ok()
}

/// Reads frames from the start; returns the records and the length of the
/// intact prefix.
fn read_frames(file: &mut File) -> io::Result<(Vec<LogEntry>, u64)> {
    file.seek(SeekFrom::Start(0))?;
    let mut reader = BufReader::new(file);
    let mut entries = Vec::new();
    let mut good_len = 0u64;
    loop {
        let mut len_bytes = [0u8; 4];
        if !read_full(&mut reader, &mut len_bytes)? {
            break;
        }
        let len = u32::from_le_bytes(len_bytes) as usize;
        if len > FRAME_BYTES_MAX {
            break;
        }
        let mut frame = vec![0u8; len];
        if !read_full(&mut reader, &mut frame)? {
            break;
        }
        let Some(entry) = decode_frame(&frame) else {
            break;
        };
        entries.push(entry);
        good_len += 4 + len as u64;
    }
    Ok((entries, good_len))
}

/// Fills `buf`; false if the input ended first.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    match reader.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// Reads the state file; a missing file is a fresh daemon.
pub fn load_state(dir: &Path) -> io::Result<PersistedState> {
    let bytes = match std::fs::read(dir.join(STATE_FILE)) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(PersistedState::default()),
        Err(e) => return Err(e),
    };
    if bytes.len() < 4 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "state file is truncated"));
    }
    let (payload, crc) = bytes.split_at(bytes.len() - 4);
    if crc32c::crc32c(payload).to_le_bytes() != crc {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "state file checksum mismatch"));
    }
    bincode::deserialize(payload).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Replaces the state file atomically and durably.
pub fn store_state(dir: &Path, state: &PersistedState) -> io::Result<()> {
    let mut bytes = bincode::serialize(state).map_err(io::Error::other)?;
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    let tmp: PathBuf = dir.join(STATE_TMP_FILE);
    let mut file = File::create(&tmp)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, dir.join(STATE_FILE))?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{Epoch, Lsn, PageId, ProtectionGroupId};
    use crate::proto::Truncation;
    use crate::redo::RedoBody;

    fn record(lsn: u64) -> RedoRecord {
        RedoRecord {
            lsn: Lsn(lsn),
            prev_lsn: Lsn(lsn - 1),
            protection_group: ProtectionGroupId(0),
            epoch: Epoch(1),
            commit_lsn: Lsn(lsn),
            body: RedoBody::InsertTuple { page: PageId(1), slot: 0, data: vec![7; 100] },
        }
    }

    #[test]
    fn a_torn_tail_is_cut_and_never_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, replay) = RedoLog::open(dir.path()).unwrap();
        assert!(replay.entries.is_empty());
        log.append(&[record(1), record(2)], &[]).unwrap();
        let promise = (ProtectionGroupId(0), Lsn(3), Lsn(9));
        log.append(&[record(3)], &[promise]).unwrap();
        let good_len = log.len_bytes();
        drop(log);
        // A crash in the middle of the next frame, then a flipped bit in frame 3.
        let path = log_path(dir.path(), 1);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&[200, 0, 0, 0, 1, 2, 3]);
        std::fs::write(&path, &bytes).unwrap();
        let (log, replay) = RedoLog::open(dir.path()).unwrap();
        let promised =
            LogEntry::Promise { protection_group: ProtectionGroupId(0), tail_lsn: Lsn(3), complete_to: Lsn(9) };
        let all = vec![LogEntry::Record(record(1)), LogEntry::Record(record(2)), LogEntry::Record(record(3)), promised];
        assert_eq!(replay.entries, all);
        assert_eq!(log.len_bytes(), good_len);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), good_len);
        drop(log);
        bytes.truncate(good_len as usize);
        // The promise frame is 32 bytes; flip a bit in the record before it.
        bytes[good_len as usize - 32 - 30] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let (_, replay) = RedoLog::open(dir.path()).unwrap();
        assert_eq!(replay.entries, all[..2]);
        assert!(replay.torn_bytes > 0);
    }

    #[test]
    fn files_roll_replay_in_order_and_go_once_a_checkpoint_covers_them() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = RedoLog::open(dir.path()).unwrap();
        log.set_file_bytes(250);
        for lsn in 1..=9 {
            log.append(&[record(lsn)], &[]).unwrap();
        }
        let files = log.files();
        let closed = files.closed_count();
        assert!(closed >= 3, "{closed} files closed");
        drop(log);
        let (_, replay) = RedoLog::open(dir.path()).unwrap();
        let lsns: Vec<u64> = replay.entries.iter().map(|e| e.lsn().0).collect();
        assert_eq!(lsns, (1..=9).collect::<Vec<_>>());

        let (log, _) = RedoLog::open(dir.path()).unwrap();
        let files = log.files();
        assert_eq!(files.delete_through(Lsn(0)).unwrap(), 0);
        let deleted = files.delete_through(Lsn(5)).unwrap();
        assert!(deleted >= 1 && files.closed_count() == closed - deleted);
        drop(log);
        let (_, replay) = RedoLog::open(dir.path()).unwrap();
        let first = replay.entries[0].lsn().0;
        assert!(first > 1 && first <= 6, "entries after the checkpoint are kept (first {first})");
        assert_eq!(replay.entries.last().unwrap().lsn(), Lsn(9));

        // A bad frame in a closed file is corruption, not a torn tail.
        let (sequence, path) = log_files(dir.path()).unwrap()[0].clone();
        assert!(sequence < log_files(dir.path()).unwrap().last().unwrap().0);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[10] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let err = RedoLog::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("corrupt"), "{err}");
    }

    #[test]
    fn state_round_trips_and_corruption_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_state(dir.path()).unwrap(), PersistedState::default());
        let state = PersistedState {
            epoch: Epoch(4),
            durable_lsn: Lsn(9),
            truncations: vec![Truncation { epoch: Epoch(4), above: Lsn(9), up_to: Lsn(100) }],
            checkpoint: crate::store::Checkpoint {
                lsn: Lsn(7),
                segments: vec![crate::segment::SegmentBase {
                    protection_group: ProtectionGroupId(2),
                    tail_lsn: Lsn(6),
                    commit_lsn: Lsn(5),
                    segment_complete_lsn: Lsn(9),
                }],
                writing: Lsn(8),
            },
        };
        store_state(dir.path(), &state).unwrap();
        assert_eq!(load_state(dir.path()).unwrap(), state);
        let path = dir.path().join(STATE_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[0] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(load_state(dir.path()).is_err());
    }
}
