//! Attaching programs to interfaces, in one of two modes that keep a program on its
//! interface while the agent is down and let a restarted agent swap in its newly
//! loaded program with no moment without one:
//!
//! - TCX (Linux 6.6+): links pinned in bpffs (`tcx.rs`);
//! - legacy TC: cls_bpf direct-action filters on a clsact qdisc at a fixed priority
//!   and handle, replaced in place (`legacy.rs`); a record file per filter in the
//!   state dir stands for the pin.
//!
//! Either way, an attachment is named `program@interface@direction`.

use std::path::{Path, PathBuf};

use aya::programs::TcAttachType;
use serde::{Deserialize, Serialize};

use super::{Datapath, DatapathError};

/// How programs are attached on this node.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    /// TCX links (Linux 6.6+).
    Tcx,
    /// cls_bpf filters on clsact (any kernel netcore runs on).
    Tc,
}

impl AttachMode {
    pub fn name(self) -> &'static str {
        match self {
            AttachMode::Tcx => "tcx",
            AttachMode::Tc => "tc",
        }
    }
}

/// One program on one interface.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Attachment {
    pub program: String,
    pub interface: String,
    pub direction: String,
}

pub(super) fn direction(t: TcAttachType) -> &'static str {
    match t {
        TcAttachType::Ingress => "ingress",
        TcAttachType::Egress => "egress",
        TcAttachType::Custom(_) => "custom",
    }
}

fn direction_of(name: &str) -> Option<TcAttachType> {
    match name {
        "ingress" => Some(TcAttachType::Ingress),
        "egress" => Some(TcAttachType::Egress),
        _ => None,
    }
}

pub(super) fn record_name(program: &str, ifname: &str, t: TcAttachType) -> String {
    format!("{program}@{ifname}@{}", direction(t))
}

/// Where the records of attachments made in `mode` live.
pub(super) fn records_dir(dp: &Datapath, mode: AttachMode) -> &Path {
    match mode {
        AttachMode::Tcx => &dp.links_dir,
        AttachMode::Tc => &dp.filters_dir,
    }
}

impl Datapath {
    pub fn attach_mode(&self) -> AttachMode {
        self.mode
    }

    /// Attaches `program` to `ifname` (in the agent's namespace), or swaps the program
    /// of an existing attachment.
    pub fn attach(
        &mut self,
        program: &'static str,
        ifname: &str,
        t: TcAttachType,
    ) -> Result<(), DatapathError> {
        match self.mode {
            AttachMode::Tcx => self.attach_tcx(program, ifname, t),
            AttachMode::Tc => self.attach_legacy(program, ifname, t),
        }
    }

    /// Removes the attachment of `program` on `ifname`: the program detaches.
    pub fn detach(&mut self, program: &str, ifname: &str, t: TcAttachType) {
        self.detach_in(self.mode, &record_name(program, ifname, t));
    }

    fn detach_in(&mut self, mode: AttachMode, name: &str) {
        match mode {
            AttachMode::Tcx => remove_record(&self.links_dir.join(name)),
            AttachMode::Tc => self.detach_legacy(name),
        }
    }

    /// The attachments of this node, in its attach mode.
    pub fn attachments(&self) -> Vec<Attachment> {
        let mut out = list_records(records_dir(self, self.mode));
        out.sort_by(|a, b| (&a.interface, &a.program).cmp(&(&b.interface, &b.program)));
        out
    }

    /// Attachments whose interface is not in `keep`: for clean-up after a crash.
    pub fn stale_attachments(&self, keep: &[String]) -> Vec<Attachment> {
        self.attachments()
            .into_iter()
            .filter(|a| !keep.contains(&a.interface))
            .collect()
    }

    pub fn remove_attachment(&mut self, a: &Attachment) {
        self.detach_in(
            self.mode,
            &format!("{}@{}@{}", a.program, a.interface, a.direction),
        );
    }

    /// Removes what an agent in the other attach mode left (a node whose mode was
    /// changed): called once the programs are attached in this mode.
    pub fn remove_other_mode(&mut self) {
        let other = match self.mode {
            AttachMode::Tcx => AttachMode::Tc,
            AttachMode::Tc => AttachMode::Tcx,
        };
        for a in list_records(records_dir(self, other)) {
            tracing::info!(program = %a.program, interface = %a.interface, "removing a {} attachment left by an earlier mode", other.name());
            self.detach_in(
                other,
                &format!("{}@{}@{}", a.program, a.interface, a.direction),
            );
        }
    }
}

fn list_records(dir: &Path) -> Vec<Attachment> {
    let Ok(dir) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|name| parse_record(&name))
        .collect()
}

fn parse_record(name: &str) -> Option<Attachment> {
    let mut parts = name.splitn(3, '@');
    let a = Attachment {
        program: parts.next()?.into(),
        interface: parts.next()?.into(),
        direction: parts.next()?.into(),
    };
    direction_of(&a.direction)?;
    Some(a)
}

/// The interface and direction of a record name.
pub(super) fn parse_target(name: &str) -> Option<(String, TcAttachType)> {
    let a = parse_record(name)?;
    Some((a.interface, direction_of(&a.direction)?))
}

pub(super) fn remove_record(path: &Path) {
    let _ = std::fs::remove_file(path);
}

pub(super) fn link_err(path: &Path) -> impl Fn(String) -> DatapathError + '_ {
    move |reason| DatapathError::Link {
        path: PathBuf::from(path),
        reason,
    }
}
