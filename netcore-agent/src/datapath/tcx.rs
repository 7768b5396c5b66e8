//! TCX links pinned in bpffs: a pinned link keeps its program on the interface while
//! the agent is down; on restart the new program replaces the old one in the same
//! link.

use aya::programs::{
    links::{FdLink, LinkError, LinkOrder, PinnedLink},
    tc::{SchedClassifierLink, TcAttachOptions},
    SchedClassifier, TcAttachType,
};

use super::{
    links::{link_err, record_name, remove_record},
    Datapath, DatapathError,
};

impl Datapath {
    pub(super) fn attach_tcx(
        &mut self,
        program: &'static str,
        ifname: &str,
        t: TcAttachType,
    ) -> Result<(), DatapathError> {
        let path = self.links_dir.join(record_name(program, ifname, t));
        let err = link_err(&path);
        let prog: &mut SchedClassifier = super::classifier(&mut self.ebpf, program)?;
        let existing = match PinnedLink::from_pin(&path) {
            Ok(pinned) => SchedClassifierLink::try_from(FdLink::from(pinned)).ok(),
            Err(_) => None,
        };
        if let Some(old) = existing {
            match prog.attach_to_link(old) {
                // The link keeps its pin; the program in it is ours now.
                Ok(id) => return prog.take_link(id).map(drop).map_err(|e| err(e.to_string())),
                // A defunct link (its interface was deleted and re-made): start over.
                Err(_) => remove_record(&path),
            }
        } else {
            remove_record(&path);
        }
        let options = TcAttachOptions::TcxOrder(LinkOrder::default());
        let id = prog
            .attach_with_options(ifname, t, options)
            .map_err(|e| err(format!("attach to {ifname}: {e}")))?;
        let link: FdLink = prog
            .take_link(id)
            .map_err(|e| err(e.to_string()))?
            .try_into()
            .map_err(|e: LinkError| err(e.to_string()))?;
        link.pin(&path).map_err(|e| err(format!("pin: {e}")))?;
        Ok(())
    }
}
