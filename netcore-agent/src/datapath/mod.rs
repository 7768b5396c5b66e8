//! The eBPF side as the agent holds it: the object loaded once, its maps reused from
//! the pin directory (so the data path keeps its state across agent restarts), and
//! its programs attached in the node's attach mode (TCX links or clsact filters).

mod cgroup;
pub mod features;
mod legacy;
mod links;
mod tcx;

use std::path::{Path, PathBuf};

use aya::{Ebpf, EbpfLoader};
use netcore_common::pin::{
    OLD_PIN_LAYOUTS, PIN_LAYOUT, PIN_LINKS, PIN_MAPS, PROG_FROM_HOST, PROG_FROM_OVERLAY,
    PROG_FROM_POD, PROG_FROM_UPLINK,
};

pub use legacy::remove_all_filters;
pub use links::{AttachMode, Attachment};

use crate::maps::{MapError, Maps};

/// The compiled data path (built by build.rs from netcore-ebpf).
static OBJECT: &[u8] = aya::include_bytes_aligned!(env!("NETCORE_EBPF_OBJ"));

pub const PROGRAMS: [&str; 4] = [
    PROG_FROM_POD,
    PROG_FROM_HOST,
    PROG_FROM_UPLINK,
    PROG_FROM_OVERLAY,
];

/// The state-dir subdirectory with one record per legacy TC filter.
const FILTERS_DIR: &str = "tc-filters";

#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error("bpffs is not mounted at or above {0} (mount -t bpf bpf /sys/fs/bpf)")]
    NoBpffs(PathBuf),
    #[error("pin directory {path}: {source}")]
    PinDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("loading the eBPF object: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("program {name}: {source}")]
    Program {
        name: &'static str,
        source: aya::programs::ProgramError,
    },
    #[error(transparent)]
    Map(#[from] MapError),
    #[error(transparent)]
    Feature(#[from] features::FeatureError),
    #[error("link {path}: {reason}")]
    Link { path: PathBuf, reason: String },
}

pub struct Datapath {
    ebpf: Ebpf,
    mode: AttachMode,
    /// Pinned TCX links.
    links_dir: PathBuf,
    /// Records of legacy TC filters (bpffs holds no plain files).
    filters_dir: PathBuf,
}

/// aya-log levels: 0 turns every log statement off (the verifier removes them); the
/// programs log at info.
const BPF_LOG_OFF: u8 = 0;
const BPF_LOG_ON: u8 = 3;

/// `<pin dir>/<layout version>`: everything of one layout lives under it.
pub fn layout_dir(pin_dir: &Path) -> PathBuf {
    pin_dir.join(PIN_LAYOUT)
}

impl Datapath {
    /// Loads the programs, reusing pinned maps under `pin_dir` or creating and pinning
    /// them, and returns the maps for the agent to fill. Programs will be attached in
    /// `mode`; legacy filters are recorded under `state_dir`.
    pub fn load(
        pin_dir: &Path,
        state_dir: &Path,
        mode: AttachMode,
        bpf_log: bool,
    ) -> Result<(Self, Maps), DatapathError> {
        let root = layout_dir(pin_dir);
        let maps_dir = root.join(PIN_MAPS);
        let links_dir = root.join(PIN_LINKS);
        let filters_dir = state_dir.join(FILTERS_DIR);
        for dir in [&maps_dir, &links_dir, &filters_dir] {
            std::fs::create_dir_all(dir).map_err(|source| DatapathError::PinDir {
                path: dir.clone(),
                source,
            })?;
        }
        if !on_bpffs(&maps_dir) {
            return Err(DatapathError::NoBpffs(maps_dir));
        }
        let level = if bpf_log { BPF_LOG_ON } else { BPF_LOG_OFF };
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(&maps_dir)
            .override_global(aya_log::LEVEL, &level, true)
            .load(OBJECT)?;
        if bpf_log {
            start_bpf_log(&mut ebpf);
        }
        for name in PROGRAMS {
            classifier(&mut ebpf, name)?
                .load()
                .map_err(|source| DatapathError::Program { name, source })?;
        }
        for name in cgroup::SOCKET_PROGRAMS {
            cgroup::socket_program(&mut ebpf, name)?
                .load()
                .map_err(|source| DatapathError::Program { name, source })?;
        }
        let maps = Maps::take(&mut ebpf)?;
        let dp = Self {
            ebpf,
            mode,
            links_dir,
            filters_dir,
        };
        Ok((dp, maps))
    }

    /// Removes the pins of earlier layout versions: their links, and with them the
    /// older programs, leave the interfaces. Called once this version's programs are
    /// attached and its maps filled, so an upgrade has no moment without a program
    /// (TCX runs the older links first until they go).
    pub fn remove_old_layouts(&self, pin_dir: &Path) {
        for old in OLD_PIN_LAYOUTS {
            let dir = pin_dir.join(old);
            if dir.exists() {
                tracing::info!(dir = %dir.display(), "removing the pins of an earlier netcore version");
                if let Err(e) = remove_pins(&dir) {
                    tracing::warn!(dir = %dir.display(), "removing old pins: {e}");
                }
            }
        }
    }
}

impl Datapath {
    /// The loaded program's file descriptor (for `BPF_PROG_TEST_RUN` in the packet tests).
    pub fn program_fd(
        &self,
        name: &'static str,
    ) -> Result<std::os::fd::BorrowedFd<'_>, DatapathError> {
        use std::os::fd::AsFd;
        let err = |source| DatapathError::Program { name, source };
        let prog: &aya::programs::SchedClassifier = self
            .ebpf
            .program(name)
            .ok_or(err(aya::programs::ProgramError::NotLoaded))?
            .try_into()
            .map_err(err)?;
        Ok(prog.fd().map_err(err)?.as_fd())
    }
}

/// Forwards the programs' aya-log records to the agent's log until the agent exits.
fn start_bpf_log(ebpf: &mut Ebpf) {
    let logger = match aya_log::EbpfLogger::init(ebpf) {
        Ok(l) => l,
        Err(e) => return tracing::warn!("eBPF logging unavailable: {e}"),
    };
    // SAFETY: the logger owns its ring buffer fd for as long as the AsyncFd lives.
    let registered = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE)
    };
    let mut fd = match registered {
        Ok(fd) => fd,
        Err(e) => return tracing::warn!("eBPF logging unavailable: {e}"),
    };
    tracing::info!("eBPF per-packet logging is on (debugging only: it costs throughput)");
    tokio::spawn(async move {
        while let Ok(mut guard) = fd.readable_mut().await {
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    });
}

/// The TC program `name` of the object.
pub(crate) fn classifier<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut aya::programs::SchedClassifier, DatapathError> {
    program(ebpf, name)
}

/// The program `name` of the object, as the kind `P` it must be.
pub(crate) fn program<'a, P>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut P, DatapathError>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let missing = aya::programs::ProgramError::NotLoaded;
    ebpf.program_mut(name)
        .ok_or(DatapathError::Program {
            name,
            source: missing,
        })?
        .try_into()
        .map_err(|source| DatapathError::Program { name, source })
}

fn on_bpffs(path: &Path) -> bool {
    const BPF_FS_MAGIC: i64 = 0xcafe4a11;
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type().0 == BPF_FS_MAGIC)
}

/// Removes everything pinned for a node (its maps and links): the data path stops.
pub fn remove_pins(pin_dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(pin_dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}
