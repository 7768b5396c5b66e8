//! Pods: add, delete, list; the agent side of `netcore pod` and of the CNI plugin.

use tracing::{info, warn};

use super::{Agent, AgentError, Result};
use crate::api::PodAdd;
use crate::{
    api::PodInfo,
    mac::Mac,
    netlink, netns,
    pod::{self, PodSpec},
    state::PodRecord,
};
use aya::programs::TcAttachType;
use netcore_common::pin::PROG_FROM_POD;

impl Agent {
    pub async fn pod_add(&mut self, req: PodAdd) -> Result<PodInfo> {
        let PodAdd {
            name,
            netns,
            ifname,
            container_id,
            namespace,
            k8s_pod,
            labels,
            ports,
        } = req;
        let (cid, ns) = (container_id.as_deref(), netns.as_deref());
        if let Some(pod) = self.cni_readd(cid, ifname.as_deref(), ns).await? {
            return Ok(pod);
        }
        let namespace = namespace.unwrap_or_else(crate::state::default_namespace);
        super::policy::check_namespace(&namespace)?;
        let labels = super::LabelChange {
            set: labels,
            remove: vec![],
        }
        .apply(Default::default())?;
        crate::policy::ports::check_container_ports(&ports)
            .map_err(|e| AgentError::BadPorts(e.to_string()))?;
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(AgentError::BadPodName(name));
        }
        if self.state.pods.contains_key(&name) {
            return Err(AgentError::PodExists(name));
        }
        let (netns, owns_netns) = match netns {
            Some(path) if netns::is_netns(&path) => (path, false),
            Some(path) => return Err(AgentError::NotNetns(path.display().to_string())),
            None if netns::path_of(&name).exists() => return Err(AgentError::ForeignNetns(name)),
            None => (netns::path_of(&name), true),
        };
        let ip = self.ipam.allocate()?;
        let mut rec = PodRecord {
            name: name.clone(),
            netns,
            owns_netns,
            ifname: ifname.unwrap_or_else(|| "eth0".into()),
            ip,
            mac: Mac::default(),
            host_if: pod::host_if_name(ip),
            container_id,
            namespace,
            k8s_pod,
            labels,
            ports,
        };
        // Recorded first: a crash from here on is cleaned up at the next start.
        self.state.pods.insert(name.clone(), rec.clone());
        self.save()?;
        if let Err(e) = self.plumb_pod(&mut rec).await {
            self.remove_pod_objects(&rec).await;
            self.state.pods.remove(&name);
            self.ipam.release(ip);
            self.save()?;
            return Err(e);
        }
        self.state.pods.insert(name.clone(), rec.clone());
        self.save()?;
        self.pods_changed();
        info!(pod = %name, %ip, "pod added");
        Ok(self.pod_info(&rec))
    }

    async fn plumb_pod(&mut self, rec: &mut PodRecord) -> Result<()> {
        if rec.owns_netns {
            if let Err(e) = netns::create(&rec.name) {
                // Not ours after all (someone made it meanwhile): never remove it.
                rec.owns_netns = false;
                return Err(e.into());
            }
        }
        let spec = PodSpec {
            netns: rec.netns.clone(),
            ifname: rec.ifname.clone(),
            host_if: rec.host_if.clone(),
            ip: rec.ip,
            prefix_len: self.net.pod_cidr.prefix_len(),
            gateway: self.net.gateway(),
            mtu: self.pod_mtu(),
            bridge_index: self.bridge.index,
        };
        rec.mac = pod::create(&self.nl, &spec).await?;
        let host = netlink::require_link(&self.nl, &rec.host_if).await?;
        // Program and identity first, then up: the pod never sends unchecked.
        self.dp
            .attach(PROG_FROM_POD, &rec.host_if, TcAttachType::Ingress)?;
        self.maps.endpoints.insert(rec.ip, host.index, rec.mac)?;
        // Its policy too: isolated from its first packet on.
        self.apply_policy()?;
        netlink::set_up(&self.nl, host.index).await?;
        Ok(())
    }

    /// Removes whatever exists of a pod; every step tolerates a missing object.
    pub(super) async fn remove_pod_objects(&mut self, rec: &PodRecord) {
        if let Err(e) = self.maps.endpoints.remove(rec.ip) {
            warn!(pod = %rec.name, "removing endpoint entry: {e}");
        }
        self.dp
            .detach(PROG_FROM_POD, &rec.host_if, TcAttachType::Ingress);
        if let Err(e) = pod::destroy(&self.nl, &rec.host_if).await {
            warn!(pod = %rec.name, "removing interfaces: {e}");
        }
        if rec.owns_netns {
            if let Err(e) = netns::delete(&rec.netns) {
                warn!(pod = %rec.name, "removing namespace: {e}");
            }
        }
    }

    /// Deletes a pod; deleting one that does not exist succeeds (returns false).
    pub async fn pod_del(&mut self, name: &str) -> Result<bool> {
        let Some(rec) = self.state.pods.get(name).cloned() else {
            return Ok(false);
        };
        self.remove_pod_objects(&rec).await;
        self.ipam.release(rec.ip);
        self.state.pods.remove(name);
        self.save()?;
        self.apply_policy()?;
        self.pods_changed();
        info!(pod = %name, ip = %rec.ip, "pod deleted");
        Ok(true)
    }

    pub(super) fn pod_info(&self, rec: &PodRecord) -> PodInfo {
        PodInfo {
            name: rec.name.clone(),
            netns: rec.netns.clone(),
            ifname: rec.ifname.clone(),
            ip: rec.ip,
            prefix_len: self.net.pod_cidr.prefix_len(),
            gateway: self.net.gateway(),
            mac: rec.mac,
            host_interface: rec.host_if.clone(),
            container_id: rec.container_id.clone(),
            namespace: rec.namespace.clone(),
            k8s_pod: rec.k8s_pod.clone(),
            labels: rec.labels.clone(),
            ports: rec.ports.clone(),
            in_map: self.maps.endpoints.get(rec.ip).is_some(),
        }
    }

    pub fn pod_list(&self) -> Vec<PodInfo> {
        self.state.pods.values().map(|p| self.pod_info(p)).collect()
    }
}

impl Agent {
    /// Pods in the state whose interfaces still exist are kept (same IP, map entry and
    /// program); the rest, and anything a crash left behind, is removed.
    pub(super) async fn reconcile_pods(&mut self) -> Result<()> {
        let records: Vec<PodRecord> = self.state.pods.values().cloned().collect();
        let mut keep = vec![
            self.cfg.uplink.clone(),
            self.cfg.bridge.clone(),
            self.cfg.vxlan_device.clone(),
        ];
        for rec in records {
            let host = netlink::link(&self.nl, &rec.host_if).await?;
            let complete = rec.mac != Mac::default() && pod::exists_inside(&rec.netns, &rec.ifname);
            match host {
                Some(host) if complete && self.ipam.reserve(rec.ip).is_ok() => {
                    self.maps.endpoints.insert(rec.ip, host.index, rec.mac)?;
                    self.dp
                        .attach(PROG_FROM_POD, &rec.host_if, TcAttachType::Ingress)?;
                    if host.master != Some(self.bridge.index) || !host.up {
                        netlink::set_master_up(&self.nl, host.index, self.bridge.index).await?;
                    }
                    keep.push(rec.host_if.clone());
                }
                _ => {
                    warn!(pod = %rec.name, "pod is incomplete or gone: removing what is left of it");
                    self.remove_pod_objects(&rec).await;
                    self.state.pods.remove(&rec.name);
                }
            }
        }
        for link in netlink::links(&self.nl).await? {
            if pod::is_host_if_name(&link.name) && !keep.contains(&link.name) {
                warn!(interface = %link.name, "removing a pod interface no pod owns");
                netlink::del_link(&self.nl, &link.name).await?;
            }
        }
        for (ip, _) in self.maps.endpoints.entries() {
            if !self.state.pods.values().any(|p| p.ip == ip) {
                self.maps.endpoints.remove(ip)?;
            }
        }
        self.maps.endpoints.remove_orphan_ifaces()?;
        for stale in self.dp.stale_attachments(&keep) {
            self.dp.remove_attachment(&stale);
        }
        Ok(())
    }
}
