//! Legacy TC (kernels without TCX, or `attach = "tc"`): a cls_bpf filter in
//! direct-action mode on the interface's clsact qdisc, at netcore's own priority and
//! handle, as Cilium and Calico attach on such kernels. The filter holds the program
//! while the agent is down; a restarted agent replaces the program inside the same
//! filter (one RTM_NEWTFILTER without NLM_F_CREATE: the kernel swaps it under RCU).

use aya::programs::{
    tc::{self, NlOptions, SchedClassifierLink, TcAttachOptions, TcHandle},
    SchedClassifier, TcAttachType,
};

use super::{
    links::{link_err, parse_target, record_name, remove_record},
    Datapath, DatapathError,
};

/// Priority 1 runs before filters other software adds with the default priorities.
pub const FILTER_PRIORITY: u16 = 1;
/// "NC": tells netcore's filter apart from others at the same priority.
pub const FILTER_HANDLE: TcHandle = TcHandle::new(0, 0x4e43);

fn existing(ifname: &str, t: TcAttachType) -> Option<SchedClassifierLink> {
    SchedClassifierLink::attached(ifname, t, FILTER_PRIORITY, FILTER_HANDLE, None).ok()
}

impl Datapath {
    pub(super) fn attach_legacy(
        &mut self,
        program: &'static str,
        ifname: &str,
        t: TcAttachType,
    ) -> Result<(), DatapathError> {
        let record = self.filters_dir.join(record_name(program, ifname, t));
        let err = link_err(&record);
        add_clsact(ifname).map_err(|e| err(format!("clsact qdisc on {ifname}: {e}")))?;
        let prog: &mut SchedClassifier = super::classifier(&mut self.ebpf, program)?;
        let id = match existing(ifname, t).map(|old| prog.attach_to_link(old)) {
            // Replaced in place.
            Some(Ok(id)) => id,
            // No filter yet (a new interface, or a record left by a crash).
            _ => {
                let options = TcAttachOptions::Netlink(NlOptions {
                    priority: FILTER_PRIORITY,
                    handle: FILTER_HANDLE,
                    ..Default::default()
                });
                prog.attach_with_options(ifname, t, options)
                    .map_err(|e| err(format!("attach to {ifname}: {e}")))?
            }
        };
        // The filter stays when the program object goes: it holds the program itself.
        let link = prog.take_link(id).map_err(|e| err(e.to_string()))?;
        std::mem::forget(link);
        std::fs::write(&record, b"").map_err(|e| err(format!("record: {e}")))?;
        Ok(())
    }

    pub(super) fn detach_legacy(&mut self, name: &str) {
        delete_filter(&self.filters_dir, name);
    }
}

/// Deletes netcore's filter behind the record `name` (if the interface still has it)
/// and the record.
fn delete_filter(dir: &std::path::Path, name: &str) {
    if let Some((ifname, t)) = parse_target(name) {
        // Dropping the link deletes the filter (RTM_DELTFILTER).
        drop(existing(&ifname, t));
    }
    remove_record(&dir.join(name));
}

/// Deletes every recorded filter (`netcore reset`, with no agent running).
pub fn remove_all_filters(state_dir: &std::path::Path) {
    let dir = state_dir.join(super::FILTERS_DIR);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for name in entries.filter_map(|e| e.ok()?.file_name().into_string().ok()) {
        delete_filter(&dir, &name);
    }
    let _ = std::fs::remove_dir(&dir);
}

/// Adds the clsact qdisc unless the interface has one.
fn add_clsact(ifname: &str) -> Result<(), tc::TcError> {
    match tc::qdisc_add_clsact(ifname) {
        Err(tc::TcError::NetlinkError(e)) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        other => other,
    }
}
