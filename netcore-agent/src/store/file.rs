//! The embedded store: a directory of files, one per key, shared by the agents of one
//! host. Writes are serialized with `flock` on the directory's lock file and land by
//! rename, so a create is atomic and racing agents get distinct subnets. A key with a
//! TTL has the owner-execute bit set and its mtime at the expiry time; any other file
//! (a config written by hand, say) never expires.

use std::{
    fs::{File, OpenOptions},
    io::Write,
    os::unix::fs::PermissionsExt,
    path::{Component, Path, PathBuf},
    time::{Duration, SystemTime},
};

use nix::fcntl::{Flock, FlockArg};

use super::{Entry, StoreError};

/// How often agents look at the directory.
pub const POLL: Duration = Duration::from_millis(250);
const LOCK: &str = ".lock";
/// Marks a file whose mtime is its expiry (a key with a TTL). Files without it, such
/// as a network config written by hand, never expire.
const TTL_MODE_BIT: u32 = 0o100;

pub struct FileStore {
    root: PathBuf,
    /// What `changed` saw last: (entry, inode, mtime, TTL mark, expired) of every
    /// file and directory under the prefix, hashed.
    seen: Option<u64>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::File {
        path: path.into(),
        source,
    }
}

impl FileStore {
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(root).map_err(io(root))?;
        Ok(FileStore {
            root: root.into(),
            seen: None,
        })
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        let rel = Path::new(key.trim_start_matches('/'));
        if key.is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(StoreError::BadKey(key.into()));
        }
        Ok(self.root.join(rel))
    }

    fn lock(&self) -> Result<Flock<File>, StoreError> {
        let path = self.root.join(LOCK);
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| StoreError::File {
            path,
            source: std::io::Error::from(e),
        })
    }

    fn read_live(path: &Path) -> Result<Option<Entry>, StoreError> {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(path)(e)),
        };
        let mtime = meta.modified().map_err(io(path))?;
        let expires = (meta.permissions().mode() & TTL_MODE_BIT != 0).then_some(mtime);
        if expires.is_some_and(|t| t <= SystemTime::now()) {
            return Ok(None);
        }
        let value = match std::fs::read_to_string(path) {
            Ok(v) => v,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(path)(e)),
        };
        Ok(Some(Entry {
            key: String::new(),
            value,
            expires,
        }))
    }

    pub fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(Self::read_live(&self.path(key)?)?.map(|e| e.value))
    }

    /// Writes by rename; the caller holds the lock.
    fn write(&self, path: &Path, value: &str, ttl: Option<Duration>) -> Result<(), StoreError> {
        let dir = path.parent().expect("keys live under the root");
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let tmp = dir.join(format!(".tmp-{}", std::process::id()));
        let mut f = File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(value.as_bytes()).map_err(io(&tmp))?;
        if let Some(ttl) = ttl {
            f.set_permissions(std::fs::Permissions::from_mode(0o644 | TTL_MODE_BIT))
                .map_err(io(&tmp))?;
            f.set_modified(SystemTime::now() + ttl).map_err(io(&tmp))?;
        }
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io(path))
    }

    pub fn create(
        &self,
        key: &str,
        value: &str,
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError> {
        let path = self.path(key)?;
        let _lock = self.lock()?;
        if Self::read_live(&path)?.is_some() {
            return Ok(false);
        }
        self.write(&path, value, ttl)?;
        Ok(true)
    }

    pub fn put(&self, key: &str, value: &str, ttl: Option<Duration>) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let _lock = self.lock()?;
        self.write(&path, value, ttl)
    }

    /// Rewrites `key` with a fresh TTL if it is absent or still holds `value`; false
    /// (and nothing written) if someone else's value is there.
    pub fn renew(&self, key: &str, value: &str, ttl: Option<Duration>) -> Result<bool, StoreError> {
        let path = self.path(key)?;
        let _lock = self.lock()?;
        if Self::read_live(&path)?.is_some_and(|e| e.value != value) {
            return Ok(false);
        }
        self.write(&path, value, ttl)?;
        Ok(true)
    }

    pub fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let _lock = self.lock()?;
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&path)(e)),
            _ => Ok(()),
        }
    }

    /// Returns once something under `prefix` was written, removed or has expired since
    /// the last call looked (the first call returns after one poll). Looking costs a
    /// `stat` per key, not a read: the caller lists only after a change.
    pub async fn changed(&mut self, prefix: &str) -> Result<(), StoreError> {
        loop {
            tokio::time::sleep(POLL).await;
            let now = self.fingerprint(prefix)?;
            if self.seen.replace(now) != Some(now) {
                return Ok(());
            }
        }
    }

    fn fingerprint(&self, prefix: &str) -> Result<u64, StoreError> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        let dir = self.path(prefix.trim_end_matches('/'))?;
        Self::hash_tree(&dir, SystemTime::now(), &mut h)?;
        0u8.hash(&mut h);
        Ok(h.finish())
    }

    fn hash_tree(
        dir: &Path,
        now: SystemTime,
        h: &mut impl std::hash::Hasher,
    ) -> Result<(), StoreError> {
        use std::{hash::Hash, os::unix::fs::MetadataExt};
        let read = match std::fs::read_dir(dir) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io(dir)(e)),
        };
        let mut items: Vec<_> = read.filter_map(|i| i.ok()).collect();
        items.sort_by_key(|i| i.file_name());
        for item in items {
            let name = item.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            let path = item.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let ttl = meta.permissions().mode() & TTL_MODE_BIT != 0;
            let expired = ttl && meta.modified().is_ok_and(|t| t <= now);
            (
                name,
                meta.ino(),
                meta.mtime(),
                meta.mtime_nsec(),
                ttl,
                expired,
            )
                .hash(h);
            if meta.is_dir() {
                Self::hash_tree(&path, now, h)?;
            }
        }
        Ok(())
    }

    /// Live keys under `prefix` (a directory), at any depth, as etcd lists a prefix.
    pub fn list(&self, prefix: &str) -> Result<Vec<Entry>, StoreError> {
        let dir = self.path(prefix.trim_end_matches('/'))?;
        let mut out = Vec::new();
        Self::collect(&dir, prefix, &mut out)?;
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn collect(dir: &Path, prefix: &str, out: &mut Vec<Entry>) -> Result<(), StoreError> {
        let read = match std::fs::read_dir(dir) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io(dir)(e)),
        };
        for item in read {
            let item = item.map_err(io(dir))?;
            let name = item.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let path = item.path();
            if item.file_type().map_err(io(&path))?.is_dir() {
                Self::collect(&path, &format!("{prefix}{name}/"), out)?;
            } else if let Some(mut e) = Self::read_live(&path)? {
                e.key = format!("{prefix}{name}");
                out.push(e);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(tag: &str) -> (FileStore, PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("netcore-filestore-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        (FileStore::open(&dir).unwrap(), dir)
    }

    #[test]
    fn create_is_exclusive_until_expiry() {
        let (s, dir) = store("excl");
        assert!(s
            .create("/p/subnets/a", "1", Some(Duration::from_millis(300)))
            .unwrap());
        assert!(
            !s.create("/p/subnets/a", "2", None).unwrap(),
            "a live key cannot be created again"
        );
        assert_eq!(s.get("/p/subnets/a").unwrap().as_deref(), Some("1"));
        std::thread::sleep(Duration::from_millis(400));
        assert_eq!(
            s.list("/p/subnets/").unwrap(),
            vec![],
            "an expired key is not listed"
        );
        assert!(
            s.create("/p/subnets/a", "3", None).unwrap(),
            "an expired key can be taken"
        );
        let l = s.list("/p/subnets/").unwrap();
        assert_eq!(
            (l[0].key.as_str(), l[0].value.as_str(), l[0].expires),
            ("/p/subnets/a", "3", None)
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn racing_creators_get_one_winner() {
        let (s, dir) = store("race");
        let winners: usize = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..8)
                .map(|i| {
                    let s = &s;
                    sc.spawn(move || {
                        s.create("/p/subnets/x", &i.to_string(), None).unwrap() as usize
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(winners, 1, "exactly one of eight racing creates wins");
        assert!(matches!(
            s.put("/p/../etc/passwd", "x", None),
            Err(StoreError::BadKey(_))
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// `changed` reports writes (at any depth), removals and expiries, and nothing else.
    #[tokio::test]
    async fn changed_reports_writes_removals_and_expiry_only() {
        let (mut s, dir) = store("changed");
        let within = |secs| Duration::from_secs(secs);
        tokio::time::timeout(within(5), s.changed("/p/"))
            .await
            .expect("the first call looks once")
            .unwrap();
        let quiet = tokio::time::timeout(Duration::from_millis(800), s.changed("/p/")).await;
        assert!(quiet.is_err(), "no change reported while nothing changed");
        s.put("/p/policies/x/deny", "{}", None).unwrap();
        tokio::time::timeout(within(5), s.changed("/p/"))
            .await
            .expect("a nested write is a change")
            .unwrap();
        s.delete("/p/policies/x/deny").unwrap();
        tokio::time::timeout(within(5), s.changed("/p/"))
            .await
            .expect("a removal is a change")
            .unwrap();
        s.put("/p/subnets/a", "1", Some(Duration::from_millis(2000)))
            .unwrap();
        tokio::time::timeout(within(5), s.changed("/p/"))
            .await
            .expect("the write")
            .unwrap();
        tokio::time::timeout(within(5), s.changed("/p/"))
            .await
            .expect("its expiry is a change")
            .unwrap();
        assert_eq!(s.list("/p/subnets/").unwrap(), vec![], "expired by then");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
