//! The daemon's files: an append-only redo log holding the records of all
//! its segments, and a small state file (epoch, durable LSN hint, truncation
//! ranges).
//!
//! Log frame: `u32` little-endian length, then a bincode `LogEntry` followed
//! by its crc32c. An entry is a redo record or a writer's completeness
//! promise (which moves an SCL past the chain's tail, so it must be as
//! durable as the records). Appends are written and then synced with
//! `sync_data` before anyone is told they are durable. At open, frames are
//! read until the first that is short, too long or fails its checksum: that
//! tail was torn by a crash before its sync, so it is cut off (the file is
//! truncated to the last good frame) and never applied.
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

/// The largest frame accepted: a record carries at most one tuple of a page.
pub const FRAME_BYTES_MAX: usize = 1024 * 1024;

const LOG_FILE: &str = "redo.log";
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
    file: File,
    len_bytes: u64,
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
        let path = dir.join(LOG_FILE);
        let mut file = OpenOptions::new().read(true).append(true).create(true).open(&path)?;
        let file_len = file.metadata()?.len();
        let (entries, good_len) = read_frames(&mut file)?;
        let torn_bytes = file_len - good_len;
        if torn_bytes > 0 {
            file.set_len(good_len)?;
            file.sync_all()?;
        }
        file.seek(SeekFrom::End(0))?;
        Ok((RedoLog { file, len_bytes: good_len }, Replay { entries, torn_bytes }))
    }

    /// Appends records and promises and syncs them. On error the log's tail
    /// is unknown: the caller must stop using it (a restart cuts whatever is torn).
    pub fn append<'a>(
        &mut self,
        records: impl IntoIterator<Item = &'a RedoRecord>,
        promises: &[Promise],
    ) -> io::Result<()> {
        let mut buffer = Vec::new();
        for record in records {
            push_frame(&mut buffer, &LogEntryRef::Record(record))?;
        }
        for &(protection_group, tail_lsn, complete_to) in promises {
            push_frame(&mut buffer, &LogEntryRef::Promise { protection_group, tail_lsn, complete_to })?;
        }
        self.file.write_all(&buffer)?;
        self.file.sync_data()?;
        self.len_bytes += buffer.len() as u64;
        Ok(())
    }

    /// Bytes in the log.
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
        let path = dir.path().join(LOG_FILE);
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
    fn state_round_trips_and_corruption_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_state(dir.path()).unwrap(), PersistedState::default());
        let state = PersistedState {
            epoch: Epoch(4),
            durable_lsn: Lsn(9),
            truncations: vec![Truncation { epoch: Epoch(4), above: Lsn(9), up_to: Lsn(100) }],
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
