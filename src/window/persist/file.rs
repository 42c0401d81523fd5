//! [`FileStorage`]: one append-only, checksummed, fsync'd log file.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::format::put_varint;
use super::storage::{Storage, StorageWrite};
use crate::window::error::StorageError;

const HEADER: &[u8; 8] = b"ACCRUEW\x01";
/// Compaction starts once the log is this large and mostly dead.
const COMPACT_MIN_BYTES: u64 = 1 << 20;

/// Stores counters in one log file: each [`persist`](crate::window::WindowStore::persist) appends one
/// checksummed record holding every changed key and calls `fdatasync` before returning, so a
/// persist is atomic and durable with a single sync however many keys it writes.
///
/// Opening reads the log once and indexes the latest value of each key; values are read back
/// on demand. A torn tail (a crash in the middle of an append) fails its checksum and is cut
/// off, which loses only that unacknowledged persist. When dead records outweigh live ones the
/// log is rewritten to a temporary file, synced, and renamed over the old one.
///
/// One process at a time: two stores writing one file corrupt each other's keys.
///
/// # Examples
///
/// ```
/// use accrue::window::{Record, FileStorage, WindowStore};
///
/// let dir = std::env::temp_dir().join(format!("accrue-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let path = dir.join("counters.log");
/// {
///     let store = WindowStore::builder().with_storage(FileStorage::open(&path)?).build()?;
///     store.record_with("e", Record::count(3)).unwrap();
/// } // persisted on drop
/// let store = WindowStore::builder().with_storage(FileStorage::open(&path)?).build()?;
/// assert_eq!(store.query("e").ever().sum(), Some(3));
/// # drop(store);
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), accrue::window::WindowError>(())
/// ```
#[derive(Debug)]
pub struct FileStorage {
    path: PathBuf,
    file: File,
    /// Key -> (offset, length) of its latest value.
    index: HashMap<Box<str>, (u64, u32)>,
    /// Bytes in the file.
    len: u64,
    /// Bytes a freshly compacted log would need.
    live: u64,
    /// Compaction starts past this size.
    compact_min: u64,
}

impl FileStorage {
    /// Opens (or creates) the log at `path`.
    ///
    /// # Errors
    ///
    /// The file cannot be opened, created or read, or is not a counter log.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StorageError> {
        let path = path.as_ref().to_path_buf();
        let shown = path.display().to_string();
        let ctx = |what: &str| format!("{what} {shown}");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| StorageError::new(ctx("cannot open"), e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| StorageError::new(ctx("cannot read"), e))?;
        let mut s = Self {
            path,
            file,
            index: HashMap::new(),
            len: 0,
            live: 0,
            compact_min: COMPACT_MIN_BYTES,
        };
        if bytes.is_empty() {
            s.file
                .write_all(HEADER)
                .and_then(|_| s.file.sync_all())
                .map_err(|e| StorageError::new(ctx("cannot initialise"), e))?;
            sync_dir(&s.path)?;
            s.len = HEADER.len() as u64;
            return Ok(s);
        }
        if !bytes.starts_with(HEADER) {
            return Err(StorageError::msg(ctx("not a counter log:")));
        }
        let mut pos = HEADER.len();
        while let Some((next, ops)) = parse_record(&bytes, pos) {
            for op in ops {
                s.apply(op);
            }
            pos = next;
        }
        if pos < bytes.len() {
            tracing::warn!(
                path = %s.path.display(),
                dropped = bytes.len() - pos,
                "window: cutting off a torn tail of the counter log"
            );
            s.file
                .set_len(pos as u64)
                .and_then(|_| s.file.sync_all())
                .map_err(|e| StorageError::new(ctx("cannot truncate torn tail of"), e))?;
        }
        s.len = pos as u64;
        Ok(s)
    }

    fn apply(&mut self, op: Op<'_>) {
        match op {
            Op::Put { key, offset, len } => {
                self.live += key.len() as u64 + u64::from(len) + 8;
                if let Some((_, old)) = self.index.insert(key.into(), (offset, len)) {
                    self.live -= key.len() as u64 + u64::from(old) + 8;
                }
            }
            Op::Delete { key } => {
                if let Some((_, old)) = self.index.remove(key) {
                    self.live -= key.len() as u64 + u64::from(old) + 8;
                }
            }
        }
    }

    fn append(&mut self, batch: &[StorageWrite<'_>]) -> Result<(), StorageError> {
        let start = self.len;
        let record = encode_record(batch);
        self.file.seek(SeekFrom::Start(start)).map_err(|e| {
            StorageError::new(format!("cannot append to {}", self.path.display()), e)
        })?;
        if let Err(e) = self
            .file
            .write_all(&record)
            .and_then(|_| self.file.sync_data())
        {
            // Leave no partial record behind for a later append to follow.
            let _ = self.file.set_len(start);
            return Err(StorageError::new(
                format!("cannot append to {}", self.path.display()),
                e,
            ));
        }
        let (_, ops) = parse_record(&record, 0).expect("a record we just encoded parses");
        for op in ops {
            self.apply(op.shifted(start));
        }
        self.len = start + record.len() as u64;
        Ok(())
    }

    fn compact(&mut self) -> Result<(), StorageError> {
        let mut keys: Vec<Box<str>> = self.index.keys().cloned().collect();
        keys.sort_unstable();
        let mut values = Vec::with_capacity(keys.len());
        for k in &keys {
            values.push(self.read_value(k)?.expect("indexed"));
        }
        let tmp = self.path.with_extension("compacting");
        let shown = self.path.display().to_string();
        let err = |e| StorageError::new(format!("cannot compact {shown}"), e);
        let mut out = File::create(&tmp).map_err(err)?;
        let mut len = HEADER.len() as u64;
        out.write_all(HEADER).map_err(err)?;
        let mut index = HashMap::with_capacity(keys.len());
        for chunk in keys.iter().zip(&values).collect::<Vec<_>>().chunks(4096) {
            let batch: Vec<StorageWrite<'_>> = chunk
                .iter()
                .map(|(k, v)| StorageWrite::Put { key: k, value: v })
                .collect();
            let record = encode_record(&batch);
            for op in parse_record(&record, 0).expect("parses").1 {
                if let Op::Put {
                    key,
                    offset,
                    len: l,
                } = op.shifted(len)
                {
                    index.insert(Box::<str>::from(key), (offset, l));
                }
            }
            out.write_all(&record).map_err(err)?;
            len += record.len() as u64;
        }
        out.sync_all().map_err(err)?;
        drop(out);
        std::fs::rename(&tmp, &self.path).map_err(err)?;
        sync_dir(&self.path)?;
        self.file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
            .map_err(err)?;
        self.index = index;
        self.len = len;
        Ok(())
    }

    fn read_value(&mut self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let Some(&(offset, len)) = self.index.get(key) else {
            return Ok(None);
        };
        let mut buf = vec![0; len as usize];
        self.file
            .seek(SeekFrom::Start(offset))
            .and_then(|_| self.file.read_exact(&mut buf))
            .map_err(|e| StorageError::new(format!("cannot read {}", self.path.display()), e))?;
        Ok(Some(buf))
    }
}

impl Storage for FileStorage {
    fn load(&mut self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.read_value(key)
    }

    fn keys(&mut self) -> Result<Vec<String>, StorageError> {
        Ok(self.index.keys().map(|k| k.to_string()).collect())
    }

    fn write(&mut self, batch: &[StorageWrite<'_>]) -> Result<(), StorageError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.append(batch)?;
        if self.len > self.compact_min && self.len > 2 * self.live {
            // The batch is durable already; a failed compaction leaves the old log intact.
            if let Err(e) = self.compact() {
                tracing::warn!(
                    error = &e as &dyn std::error::Error,
                    "window: counter log compaction failed"
                );
            }
        }
        Ok(())
    }
}

#[cfg(unix)]
fn sync_dir(path: &Path) -> Result<(), StorageError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::new(format!("cannot sync directory {}", dir.display()), e))
}

#[cfg(not(unix))]
fn sync_dir(_path: &Path) -> Result<(), StorageError> {
    Ok(())
}

/// A parsed operation; offsets are relative to the buffer parsed until shifted.
#[derive(Clone, Copy)]
enum Op<'a> {
    Put { key: &'a str, offset: u64, len: u32 },
    Delete { key: &'a str },
}

impl Op<'_> {
    fn shifted(self, by: u64) -> Self {
        match self {
            Op::Put { key, offset, len } => Op::Put {
                key,
                offset: offset + by,
                len,
            },
            d => d,
        }
    }
}

/// `len: u32 LE | crc32: u32 LE | payload`, payload = `count varint, then per op:
/// tag (1 put, 2 delete), key length varint, key, [value length varint, value]`.
fn encode_record(batch: &[StorageWrite<'_>]) -> Vec<u8> {
    let mut payload = Vec::new();
    put_varint(&mut payload, batch.len() as u64);
    for w in batch {
        match *w {
            StorageWrite::Put { key, value } => {
                payload.push(1);
                put_varint(&mut payload, key.len() as u64);
                payload.extend_from_slice(key.as_bytes());
                put_varint(&mut payload, value.len() as u64);
                payload.extend_from_slice(value);
            }
            StorageWrite::Delete { key } => {
                payload.push(2);
                put_varint(&mut payload, key.len() as u64);
                payload.extend_from_slice(key.as_bytes());
            }
        }
    }
    let mut record = Vec::with_capacity(payload.len() + 8);
    record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    record.extend_from_slice(&crc32(&payload).to_le_bytes());
    record.extend_from_slice(&payload);
    record
}

/// Parses the record at `pos`: the position after it and its operations, or `None` when
/// there is no complete, intact record there.
fn parse_record(bytes: &[u8], pos: usize) -> Option<(usize, Vec<Op<'_>>)> {
    let head = bytes.get(pos..pos + 8)?;
    let len = u32::from_le_bytes(head[..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(head[4..].try_into().ok()?);
    let start = pos + 8;
    let payload = bytes.get(start..start.checked_add(len)?)?;
    if crc32(payload) != crc {
        return None;
    }
    let mut p = 0usize;
    let varint = |p: &mut usize| -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *payload.get(*p)?;
            *p += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    };
    let n = varint(&mut p)?;
    let mut ops = Vec::with_capacity(n.min(1 << 16) as usize);
    for _ in 0..n {
        let tag = *payload.get(p)?;
        p += 1;
        let klen = varint(&mut p)? as usize;
        let key = std::str::from_utf8(payload.get(p..p.checked_add(klen)?)?).ok()?;
        p += klen;
        match tag {
            1 => {
                let vlen = varint(&mut p)?;
                let vlen32 = u32::try_from(vlen).ok()?;
                payload.get(p..p.checked_add(vlen as usize)?)?;
                ops.push(Op::Put {
                    key,
                    offset: (start + p) as u64,
                    len: vlen32,
                });
                p += vlen as usize;
            }
            2 => ops.push(Op::Delete { key }),
            _ => return None,
        }
    }
    (p == len).then_some((start + len, ops))
}

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// CRC-32 (IEEE).
fn crc32(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c = CRC_TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

#[cfg(all(test, not(accrue_loom)))]
mod tests {
    use super::*;

    /// A log path in a fresh directory, removed when the guard drops.
    fn tmp() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        (dir, path)
    }

    #[test]
    fn crc_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn puts_deletes_and_reopen() {
        let (_dir, path) = tmp();
        let mut s = FileStorage::open(&path).unwrap();
        s.write(&[
            StorageWrite::Put {
                key: "a",
                value: b"1",
            },
            StorageWrite::Put {
                key: "b",
                value: b"22",
            },
        ])
        .unwrap();
        s.write(&[
            StorageWrite::Delete { key: "a" },
            StorageWrite::Put {
                key: "b",
                value: b"333",
            },
        ])
        .unwrap();
        drop(s);
        let mut s = FileStorage::open(&path).unwrap();
        assert_eq!(s.load("a").unwrap(), None);
        assert_eq!(s.load("b").unwrap(), Some(b"333".to_vec()));
        assert_eq!(s.keys().unwrap(), vec!["b".to_string()]);
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_earlier_batches_survive() {
        let (_dir, path) = tmp();
        let mut s = FileStorage::open(&path).unwrap();
        s.write(&[StorageWrite::Put {
            key: "a",
            value: b"first",
        }])
        .unwrap();
        s.write(&[
            StorageWrite::Put {
                key: "a",
                value: b"second",
            },
            StorageWrite::Put {
                key: "b",
                value: b"x",
            },
        ])
        .unwrap();
        drop(s);
        let full = std::fs::read(&path).unwrap();
        // Every cut inside the second record loses exactly the second batch.
        let first_end = HEADER.len() + parse_record(&full, HEADER.len()).unwrap().0 - HEADER.len();
        for cut in first_end..full.len() {
            std::fs::write(&path, &full[..cut]).unwrap();
            let mut s = FileStorage::open(&path).unwrap();
            assert_eq!(s.load("a").unwrap(), Some(b"first".to_vec()), "cut {cut}");
            assert_eq!(s.load("b").unwrap(), None);
            assert_eq!(std::fs::metadata(&path).unwrap().len(), first_end as u64);
            // And appending after the cut works.
            s.write(&[StorageWrite::Put {
                key: "c",
                value: b"y",
            }])
            .unwrap();
            drop(s);
            assert_eq!(
                FileStorage::open(&path).unwrap().load("c").unwrap(),
                Some(b"y".to_vec())
            );
        }
        // A flipped bit in the last record fails its checksum the same way.
        let mut bad = full.clone();
        *bad.last_mut().unwrap() ^= 1;
        std::fs::write(&path, &bad).unwrap();
        assert_eq!(FileStorage::open(&path).unwrap().load("b").unwrap(), None);
        std::fs::write(&path, b"something else").unwrap();
        assert!(FileStorage::open(&path).is_err());
    }

    #[test]
    fn compaction_keeps_the_latest_values() {
        let (_dir, path) = tmp();
        let mut s = FileStorage::open(&path).unwrap();
        s.compact_min = 20_000;
        let value = vec![7u8; 1000];
        for round in 0..300u32 {
            let key = format!("k{}", round % 10);
            let mut v = value.clone();
            v.extend_from_slice(&round.to_le_bytes());
            s.write(&[StorageWrite::Put {
                key: &key,
                value: &v,
            }])
            .unwrap();
        }
        assert!(s.len < 3 * 20_000, "{}", s.len);
        drop(s);
        let mut s = FileStorage::open(&path).unwrap();
        assert_eq!(s.keys().unwrap().len(), 10);
        let v = s.load("k9").unwrap().unwrap();
        assert_eq!(&v[1000..], &299u32.to_le_bytes());
        assert!(!path.with_extension("compacting").exists());
    }
}
