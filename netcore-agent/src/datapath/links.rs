//! Attaching programs through TCX links pinned in bpffs: a pinned link keeps its
//! program on the interface while the agent is down; on restart the new program
//! replaces the old one in the same link (no moment without a program).

use std::path::PathBuf;

use aya::programs::{
    links::{FdLink, LinkError, PinnedLink},
    tc::SchedClassifierLink,
    SchedClassifier, TcAttachType,
};
use serde::{Deserialize, Serialize};

use super::{Datapath, DatapathError};

/// One program on one interface.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Attachment {
    pub program: String,
    pub interface: String,
    pub direction: String,
}

fn direction(t: TcAttachType) -> &'static str {
    match t {
        TcAttachType::Ingress => "ingress",
        TcAttachType::Egress => "egress",
        TcAttachType::Custom(_) => "custom",
    }
}

fn pin_name(program: &str, ifname: &str, t: TcAttachType) -> String {
    format!("{program}@{ifname}@{}", direction(t))
}

impl Datapath {
    fn link_path(&self, name: &str) -> PathBuf {
        self.links_dir.join(name)
    }

    /// Attaches `program` to `ifname` (in the agent's namespace) and pins the link, or
    /// swaps the program inside an already pinned link.
    pub fn attach(
        &mut self,
        program: &'static str,
        ifname: &str,
        t: TcAttachType,
    ) -> Result<(), DatapathError> {
        let path = self.link_path(&pin_name(program, ifname, t));
        let link_err = |reason: String| DatapathError::Link {
            path: path.clone(),
            reason,
        };
        let prog: &mut SchedClassifier = super::classifier(&mut self.ebpf, program)?;
        let existing = match PinnedLink::from_pin(&path) {
            Ok(pinned) => SchedClassifierLink::try_from(FdLink::from(pinned)).ok(),
            Err(_) => None,
        };
        if let Some(old) = existing {
            match prog.attach_to_link(old) {
                // The link keeps its pin; the program in it is ours now.
                Ok(id) => return forget(prog, id, &path),
                // A defunct link (its interface was deleted and re-made): start over.
                Err(_) => remove_pin(&path),
            }
        } else {
            remove_pin(&path);
        }
        let id = prog
            .attach(ifname, t)
            .map_err(|e| link_err(format!("attach to {ifname}: {e}")))?;
        let link: FdLink = prog
            .take_link(id)
            .map_err(|e| link_err(e.to_string()))?
            .try_into()
            .map_err(|e: LinkError| link_err(e.to_string()))?;
        link.pin(&path).map_err(|e| link_err(format!("pin: {e}")))?;
        Ok(())
    }

    /// Removes the pinned link of `program` on `ifname`: the program detaches.
    pub fn detach(&mut self, program: &str, ifname: &str, t: TcAttachType) {
        remove_pin(&self.link_path(&pin_name(program, ifname, t)));
    }

    /// The attachments pinned for this node.
    pub fn attachments(&self) -> Vec<Attachment> {
        let Ok(dir) = std::fs::read_dir(&self.links_dir) else {
            return Vec::new();
        };
        let mut out: Vec<Attachment> = dir
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|name| {
                let mut parts = name.splitn(3, '@');
                Some(Attachment {
                    program: parts.next()?.into(),
                    interface: parts.next()?.into(),
                    direction: parts.next()?.into(),
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.interface, &a.program).cmp(&(&b.interface, &b.program)));
        out
    }

    /// Pinned links whose interface is not in `keep`: for clean-up after a crash.
    pub fn stale_attachments(&self, keep: &[String]) -> Vec<Attachment> {
        self.attachments()
            .into_iter()
            .filter(|a| !keep.contains(&a.interface))
            .collect()
    }

    pub fn remove_attachment(&mut self, a: &Attachment) {
        remove_pin(&self.link_path(&format!("{}@{}@{}", a.program, a.interface, a.direction)));
    }
}

/// Stops tracking a link the program now owns, so dropping the program (or the agent
/// exiting) leaves it attached through its pin.
fn forget(
    prog: &mut SchedClassifier,
    id: aya::programs::tc::SchedClassifierLinkId,
    path: &std::path::Path,
) -> Result<(), DatapathError> {
    prog.take_link(id)
        .map(drop)
        .map_err(|e| DatapathError::Link {
            path: path.into(),
            reason: e.to_string(),
        })
}

fn remove_pin(path: &std::path::Path) {
    let _ = std::fs::remove_file(path);
}
