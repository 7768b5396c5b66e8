//! The socket hooks (cgroup sock_addr programs, see netcore-ebpf's `from_socket`) on
//! the cgroup v2 root, where every process of the host is: links pinned in bpffs like
//! the TCX links, so they stay while the agent is down. A restarted agent attaches
//! its newly loaded programs first and then lets the old links go; meanwhile both act
//! alike (the first sends the socket to a backend, the second finds nothing to do).

use std::path::PathBuf;

use aya::programs::{cgroup_sock_addr::CgroupSockAddr, links::FdLink, CgroupAttachMode};
use netcore_common::pin::{PROG_SOCK_CONNECT4, PROG_SOCK_RECVMSG4, PROG_SOCK_SENDMSG4};

use super::{
    links::{link_err, remove_record},
    Datapath, DatapathError,
};

pub const SOCKET_PROGRAMS: [&str; 3] = [PROG_SOCK_CONNECT4, PROG_SOCK_SENDMSG4, PROG_SOCK_RECVMSG4];

/// The pin name of a socket hook's link (not an interface attachment: `@cgroup`).
fn record(program: &str) -> String {
    format!("{program}@cgroup")
}

impl Datapath {
    /// Attaches the socket hooks to the cgroup v2 root; returns where that is, or
    /// `None` when no cgroup v2 hierarchy is mounted (then nothing is attached).
    pub fn attach_socket_hooks(&mut self) -> Result<Option<PathBuf>, DatapathError> {
        let Some(root) = cgroup2_root() else {
            return Ok(None);
        };
        let cgroup = std::fs::File::open(&root).map_err(|source| DatapathError::PinDir {
            path: root.clone(),
            source,
        })?;
        for name in SOCKET_PROGRAMS {
            let path = self.links_dir.join(record(name));
            let err = link_err(&path);
            let prog = socket_program(&mut self.ebpf, name)?;
            // A link (Linux 5.7+) always shares its hook with others; link_create
            // takes no mode flag (aya passes the mode as flags: Single is 0).
            let id = prog
                .attach(&cgroup, CgroupAttachMode::Single)
                .map_err(|e| err(format!("attach to {}: {}", root.display(), chain(&e))))?;
            let link: FdLink = prog
                .take_link(id)
                .map_err(|e| err(e.to_string()))?
                .try_into()
                .map_err(|e: aya::programs::links::LinkError| err(e.to_string()))?;
            // The previous agent's link goes (its program detaches) once ours is on.
            remove_record(&path);
            link.pin(&path).map_err(|e| err(format!("pin: {e}")))?;
        }
        Ok(Some(root))
    }
}

/// An error with its sources (aya's name the syscall, their sources the errno).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(&format!(": {s}"));
        source = s.source();
    }
    out
}

/// The socket hook `name` of the object.
pub(super) fn socket_program<'a>(
    ebpf: &'a mut aya::Ebpf,
    name: &'static str,
) -> Result<&'a mut CgroupSockAddr, DatapathError> {
    super::program(ebpf, name)
}

/// Where the cgroup v2 hierarchy is mounted (`/sys/fs/cgroup`, or
/// `/sys/fs/cgroup/unified` on a hybrid system), from /proc/self/mountinfo.
fn cgroup2_root() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(cgroup2_mount)
}

/// The mount point of a mountinfo line if it mounts cgroup2 (the fields after " - "
/// are the filesystem type, the source and the options).
fn cgroup2_mount(line: &str) -> Option<PathBuf> {
    let (fields, rest) = line.split_once(" - ")?;
    if rest.split_whitespace().next()? != "cgroup2" {
        return None;
    }
    fields.split_whitespace().nth(4).map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_cgroup2_mount_is_found_in_mountinfo() {
        let hybrid = "35 25 0:30 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw";
        let v1 = "36 25 0:31 / /sys/fs/cgroup/cpu rw shared:11 - cgroup cgroup rw,cpu";
        assert_eq!(
            super::cgroup2_mount(hybrid).unwrap().to_str(),
            Some("/sys/fs/cgroup/unified")
        );
        assert_eq!(
            super::cgroup2_mount(v1),
            None,
            "a cgroup v1 controller is not it"
        );
        assert_eq!(super::cgroup2_mount("garbage"), None);
    }
}
