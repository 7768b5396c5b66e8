//! Named network namespaces (`/run/netns/NAME`, as `ip netns` makes them) and running
//! code inside a namespace on a thread of its own (the calling thread never moves).

use std::{
    fs::File,
    io,
    path::{Path, PathBuf},
};

use nix::{
    mount::{mount, umount2, MntFlags, MsFlags},
    sched::{setns, unshare, CloneFlags},
};

pub const NETNS_DIR: &str = "/run/netns";

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("network namespace {0} already exists")]
    Exists(PathBuf),
    #[error("network namespace {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("network namespace {path}: {op} failed: {errno}")]
    Sys {
        path: PathBuf,
        op: &'static str,
        errno: nix::Error,
    },
}

pub fn path_of(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// Creates `/run/netns/NAME` holding a new, empty network namespace.
pub fn create(name: &str) -> Result<PathBuf, NetnsError> {
    let path = path_of(name);
    let sys = |op, errno| NetnsError::Sys {
        path: path.clone(),
        op,
        errno,
    };
    share_netns_dir().map_err(|e| sys("making /run/netns shared", e))?;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(NetnsError::Exists(path)),
        Err(source) => return Err(NetnsError::Io { path, source }),
    }
    let target = path.clone();
    let made = std::thread::spawn(move || -> Result<(), (&'static str, nix::Error)> {
        unshare(CloneFlags::CLONE_NEWNET).map_err(|e| ("unshare", e))?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| ("bind mount", e))
    })
    .join()
    .expect("netns thread does not panic");
    if let Err((op, errno)) = made {
        let _ = std::fs::remove_file(&path);
        return Err(sys(op, errno));
    }
    Ok(path)
}

/// Like `ip netns add`: `/run/netns` is a shared mount so that namespaces made here
/// show in other mount namespaces.
fn share_netns_dir() -> Result<(), nix::Error> {
    std::fs::create_dir_all(NETNS_DIR)
        .map_err(|e| nix::Error::from_raw(e.raw_os_error().unwrap_or(0)))?;
    let shared = MsFlags::MS_SHARED | MsFlags::MS_REC;
    if mount(None::<&str>, NETNS_DIR, None::<&str>, shared, None::<&str>).is_ok() {
        return Ok(());
    }
    mount(
        Some(NETNS_DIR),
        NETNS_DIR,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )?;
    mount(None::<&str>, NETNS_DIR, None::<&str>, shared, None::<&str>)
}

/// Removes a named namespace; a missing one is not an error.
pub fn delete(path: &Path) -> Result<(), NetnsError> {
    if !path.exists() {
        return Ok(());
    }
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(errno) => {
            return Err(NetnsError::Sys {
                path: path.into(),
                op: "umount",
                errno,
            })
        }
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(NetnsError::Io {
            path: path.into(),
            source,
        }),
    }
}

/// Whether `path` refers to a network namespace (an nsfs bind mount).
pub fn is_netns(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
}

/// Whether two paths refer to the same namespace (same nsfs inode); two paths that
/// cannot be read are the same only when they are equal.
pub fn same(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => (x.dev(), x.ino()) == (y.dev(), y.ino()),
        _ => a == b,
    }
}

/// Runs `f` on a new thread that has joined the namespace at `path`.
pub fn run_in<T: Send>(path: &Path, f: impl FnOnce() -> T + Send) -> Result<T, NetnsError> {
    let file = File::open(path).map_err(|source| NetnsError::Io {
        path: path.into(),
        source,
    })?;
    std::thread::scope(|s| {
        s.spawn(|| {
            setns(&file, CloneFlags::CLONE_NEWNET).map_err(|errno| NetnsError::Sys {
                path: path.into(),
                op: "setns",
                errno,
            })?;
            Ok(f())
        })
        .join()
        .expect("netns thread does not panic")
    })
}
