//! The embedded store: every block in one JSON file under the data
//! directory (`ipam.json`).
//!
//! Writers take an exclusive `flock` on `ipam.lock`, so concurrent plugin
//! processes take turns. A change is written to `ipam.json.tmp`, fsynced,
//! renamed over `ipam.json` and the directory fsynced: a process killed at
//! any point leaves either the old file or the new one, never a mix, and
//! the lock dies with the process.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::{Block, Blocks, IpamError, Store};

const STATE: &str = "ipam.json";
const TEMP: &str = "ipam.json.tmp";
const LOCK: &str = "ipam.lock";
const FORMAT: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct State {
    format: u32,
    blocks: Vec<Block>,
}

#[derive(Debug)]
pub struct FileStore {
    dir: PathBuf,
}

fn io(what: &str, path: &Path, e: impl std::fmt::Display) -> IpamError {
    IpamError::Io(format!("cannot {what} {}: {e}", path.display()))
}

/// Holds the data directory's lock until dropped.
#[derive(Debug)]
pub struct DirLock(#[allow(dead_code)] Flock<File>);

/// Takes the exclusive lock of `dir` (created if missing), waiting for it.
pub fn lock_dir(dir: &Path) -> Result<DirLock, IpamError> {
    fs::create_dir_all(dir).map_err(|e| io("create", dir, e))?;
    let path = dir.join(LOCK);
    let f =
        OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(|e| io("open", &path, e))?;
    Flock::lock(f, FlockArg::LockExclusive).map(DirLock).map_err(|(_, e)| io("lock", &path, e))
}

impl FileStore {
    /// The store in `dir`. Nothing is created until the first update, so
    /// reading a store that was never written is an empty set of blocks.
    pub fn open(dir: &Path) -> Result<Self, IpamError> {
        Ok(Self { dir: dir.to_owned() })
    }

    fn read(&self) -> Result<Blocks, IpamError> {
        let path = self.dir.join(STATE);
        let text = match fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Blocks::new()),
            Err(e) => return Err(io("read", &path, e)),
        };
        let state: State =
            serde_json::from_slice(&text).map_err(|e| IpamError::Corrupt(format!("{}: {e}", path.display())))?;
        if state.format != FORMAT {
            return Err(IpamError::Corrupt(format!("{}: unknown format {}", path.display(), state.format)));
        }
        Ok(state.blocks.into_iter().map(|b| (b.cidr, b)).collect())
    }

    fn write(&self, blocks: &Blocks) -> Result<(), IpamError> {
        let state = State { format: FORMAT, blocks: blocks.values().cloned().collect() };
        let text = serde_json::to_vec(&state).map_err(|e| IpamError::Io(e.to_string()))?;
        let tmp = self.dir.join(TEMP);
        let mut f = File::create(&tmp).map_err(|e| io("create", &tmp, e))?;
        f.write_all(&text).map_err(|e| io("write", &tmp, e))?;
        f.sync_data().map_err(|e| io("fsync", &tmp, e))?;
        let path = self.dir.join(STATE);
        fs::rename(&tmp, &path).map_err(|e| io("rename onto", &path, e))?;
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(|e| io("fsync", &self.dir, e))
    }
}

impl Store for FileStore {
    fn load(&self) -> Result<Blocks, IpamError> {
        // Renames are atomic, so a reader needs no lock.
        self.read()
    }

    fn update(&self, f: &mut dyn FnMut(&mut Blocks) -> Result<(), IpamError>) -> Result<(), IpamError> {
        let _lock = lock_dir(&self.dir)?;
        let before = self.read()?;
        let mut blocks = before.clone();
        f(&mut blocks)?;
        if blocks != before {
            self.write(&blocks)?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("merle-filestore-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn update_commits_and_errors_change_nothing() {
        let dir = temp_dir("commit");
        let s = FileStore::open(&dir).unwrap();
        assert!(s.load().unwrap().is_empty());
        let cidr: ipnet::IpNet = "10.9.0.0/26".parse().unwrap();
        crate::transact(&s, |b| {
            b.insert(cidr, Block::new(cidr, Some("a".into())));
            Ok(())
        })
        .unwrap();
        assert_eq!(s.load().unwrap().len(), 1);
        let r: Result<(), _> = crate::transact(&s, |b| {
            b.clear();
            Err(IpamError::NoPools)
        });
        assert!(r.is_err());
        assert_eq!(s.load().unwrap().len(), 1);
        assert!(!dir.join(TEMP).exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn corrupt_file_is_reported_and_kept() {
        let dir = temp_dir("corrupt");
        let s = FileStore::open(&dir).unwrap();
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(STATE), b"{\"format\":1,\"blocks\":[").unwrap();
        let e = crate::transact(&s, |_| Ok(())).unwrap_err();
        assert!(matches!(e, IpamError::Corrupt(_)), "{e}");
        assert_eq!(fs::read(dir.join(STATE)).unwrap(), b"{\"format\":1,\"blocks\":[");
        fs::remove_dir_all(&dir).unwrap();
    }
}
