//! The agent side of the CNI plugin. An attachment is a pod with a container ID, found
//! by `(container ID, interface name)`: ADD that never takes a second address, DEL
//! that always succeeds, CHECK of both ends and the map entry, GC.

use std::path::Path;

use netcore_common::{endpoint::EndpointInfo, pin::PROG_FROM_POD};
use tracing::{info, warn};

use super::{Agent, Result};
use crate::{
    api::{
        cni::{Attachment, CheckReport},
        PodInfo,
    },
    mac::Mac,
    netlink, netns,
    pod_check::{self, Expected},
    state::PodRecord,
};

/// The interface name `netcore pod add` and the API use when none is given.
const DEFAULT_IFNAME: &str = "eth0";

impl Agent {
    fn attachment(&self, container_id: &str, ifname: &str) -> Option<&PodRecord> {
        self.state
            .pods
            .values()
            .find(|p| p.container_id.as_deref() == Some(container_id) && p.ifname == ifname)
    }

    /// ADD for an attachment that already has a pod: that pod when it is intact in the
    /// same namespace (a repeated ADD must not take a second address). A pod that is
    /// broken, or left from an earlier namespace of the container, is removed, and the
    /// caller makes a new one.
    pub(super) async fn cni_readd(
        &mut self,
        container_id: Option<&str>,
        ifname: Option<&str>,
        netns: Option<&Path>,
    ) -> Result<Option<PodInfo>> {
        let (Some(cid), Some(netns)) = (container_id, netns) else {
            return Ok(None);
        };
        let ifname = ifname.unwrap_or(DEFAULT_IFNAME);
        let Some(rec) = self.attachment(cid, ifname).cloned() else {
            return Ok(None);
        };
        let problems = self.problems(&rec, netns).await?;
        if problems.is_empty() {
            info!(pod = %rec.name, container = cid, "repeated ADD: the attachment exists");
            return Ok(Some(self.pod_info(&rec)));
        }
        warn!(pod = %rec.name, container = cid, ?problems, "ADD for a broken or moved attachment: replacing it");
        self.pod_del(&rec.name).await?;
        Ok(None)
    }

    /// CNI DEL: removes the attachment's pod; true when there was one.
    pub async fn cni_del(&mut self, container_id: &str, ifname: &str) -> Result<bool> {
        match self
            .attachment(container_id, ifname)
            .map(|p| p.name.clone())
        {
            Some(name) => self.pod_del(&name).await,
            None => Ok(false),
        }
    }

    /// CNI GC: removes the CNI pods (those with a container ID) not listed in `valid`;
    /// returns their names. Pods made by `netcore pod add` are never touched.
    pub async fn cni_gc(&mut self, valid: &[Attachment]) -> Result<Vec<String>> {
        let listed = |p: &PodRecord, cid: &str| {
            valid
                .iter()
                .any(|a| a.container_id == cid && a.ifname == p.ifname)
        };
        let stale: Vec<String> = self
            .state
            .pods
            .values()
            .filter(|p| p.container_id.as_deref().is_some_and(|cid| !listed(p, cid)))
            .map(|p| p.name.clone())
            .collect();
        for name in &stale {
            info!(pod = %name, "GC: the runtime no longer lists this attachment");
            self.pod_del(name).await?;
        }
        Ok(stale)
    }

    /// CNI CHECK: the pod of the attachment, and every way it differs from what ADD made.
    pub async fn cni_check(
        &mut self,
        container_id: &str,
        ifname: &str,
        netns: &Path,
    ) -> Result<CheckReport> {
        let Some(rec) = self.attachment(container_id, ifname).cloned() else {
            return Ok(CheckReport {
                pod: None,
                problems: Vec::new(),
            });
        };
        let problems = self.problems(&rec, netns).await?;
        Ok(CheckReport {
            pod: Some(self.pod_info(&rec)),
            problems,
        })
    }

    /// Every way the attachment differs from what ADD made in `netns`.
    async fn problems(&self, rec: &PodRecord, netns: &Path) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        if !netns::same(&rec.netns, netns) {
            problems.push(format!(
                "the attachment is in {}, not in {}",
                rec.netns.display(),
                netns.display()
            ));
        }
        problems.extend(self.check_host_side(rec).await?);
        let (path, want) = (rec.netns.clone(), self.expected(rec));
        let inside = tokio::task::spawn_blocking(move || pod_check::inside(&path, &want)).await;
        match inside {
            Ok(found) => problems.extend(found),
            Err(e) => problems.push(format!("checking inside the namespace: {e}")),
        }
        Ok(problems)
    }

    fn expected(&self, rec: &PodRecord) -> Expected {
        Expected {
            ifname: rec.ifname.clone(),
            ip: rec.ip,
            prefix_len: self.net.pod_cidr.prefix_len(),
            gateway: self.net.gateway(),
            mac: rec.mac,
        }
    }

    /// The host end on the bridge and up, its program, and the endpoint map entry.
    async fn check_host_side(&self, rec: &PodRecord) -> Result<Vec<String>> {
        let Some(host) = netlink::link(&self.nl, &rec.host_if).await? else {
            return Ok(vec![format!("host interface {} is missing", rec.host_if)]);
        };
        let mut problems = Vec::new();
        if host.master != Some(self.bridge.index) {
            problems.push(format!(
                "{} is not on bridge {}",
                host.name, self.cfg.bridge
            ));
        }
        if !host.up {
            problems.push(format!("{} is down", host.name));
        }
        let attached = self
            .dp
            .attachments()
            .iter()
            .any(|a| a.interface == rec.host_if && a.program == PROG_FROM_POD);
        if !attached {
            problems.push(format!("{PROG_FROM_POD} is not attached to {}", host.name));
        }
        let want = EndpointInfo::new(host.index, rec.mac.0);
        match self.maps.endpoints.get(rec.ip) {
            None => problems.push(format!("{} is not in the endpoint map", rec.ip)),
            Some(got) if got != want => problems.push(format!(
                "the endpoint map sends {} to ifindex {} MAC {}, not to {} ({}) MAC {}",
                rec.ip,
                got.host_ifindex,
                Mac(got.pod_mac),
                host.index,
                host.name,
                rec.mac
            )),
            Some(_) => {}
        }
        Ok(problems)
    }
}
