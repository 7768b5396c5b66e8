//! Services: ClusterIP frontends (and NodePorts) with their backends, written into
//! the service maps; the data path balances per connection.

use std::collections::BTreeMap;

use netcore_common::service::{
    ServiceInfo, MAX_BACKENDS_PER_SERVICE, MAX_SERVICES, SVC_LOCAL_KEEPS_SOURCE,
};
use tracing::{info, warn};

use super::{Agent, AgentError, Result};
use crate::{
    api::service::{ServiceSpec, ServiceStatus, MAX_AFFINITY_SECONDS},
    maps::service::{backend, key},
    state::ServiceRecord,
};

/// NodePorts, as Kubernetes' default `--service-node-port-range`.
const NODE_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;

fn bad(m: String) -> Result<()> {
    Err(AgentError::BadService(m))
}

/// The map keys a service answers on: its ClusterIP and, with a NodePort, any node
/// address (0) on that port.
fn frontends(spec: &ServiceSpec) -> Vec<netcore_common::service::ServiceKey> {
    let proto = spec.proto.number();
    let mut keys = vec![key(spec.vip.ip, spec.vip.port, proto)];
    if let Some(port) = spec.node_port {
        keys.push(key(std::net::Ipv4Addr::UNSPECIFIED, port, proto));
    }
    keys
}

impl Agent {
    pub fn service_add(&mut self, spec: ServiceSpec, replace: bool) -> Result<ServiceStatus> {
        self.validate_service(&spec, replace)?;
        let old = self.state.services.get(&spec.name).cloned();
        let id = match &old {
            Some(o) => o.id,
            None => self.free_service_id()?,
        };
        self.install_service(id, &spec, old.as_ref())?;
        let rec = ServiceRecord {
            id,
            spec: spec.clone(),
        };
        self.state.services.insert(spec.name.clone(), rec.clone());
        self.write_datapath_config()?;
        self.save()?;
        info!(service = %spec.name, vip = %spec.vip, backends = spec.backends.len(), "service set");
        Ok(self.service_status(&rec))
    }

    fn install_service(
        &mut self,
        id: u32,
        spec: &ServiceSpec,
        old: Option<&ServiceRecord>,
    ) -> Result<()> {
        let backends: Vec<_> = spec
            .backends
            .iter()
            .map(|b| backend(b.ip, b.port))
            .collect();
        let old_count = old.map_or(0, |o| o.spec.backends.len() as u32);
        let flags = if spec.keep_source {
            SVC_LOCAL_KEEPS_SOURCE
        } else {
            0
        };
        let info = ServiceInfo {
            id,
            count: backends.len() as u32,
            flags,
        };
        // Backends first, then the count that makes them visible, then the slots
        // beyond it: from the moment the count shrinks, removed backends get no new flow.
        self.maps.services.write_backends(id, &backends)?;
        let keys = frontends(spec);
        for k in &keys {
            self.maps.services.set_frontend(*k, info)?;
        }
        self.maps
            .services
            .set_affinity(id, spec.affinity_seconds.unwrap_or(0))?;
        self.maps
            .services
            .trim_backends(id, backends.len() as u32, old_count)?;
        let gone: Vec<_> = old
            .map_or(&[][..], |o| &o.spec.backends)
            .iter()
            .filter(|b| !spec.backends.contains(b))
            .map(|b| backend(b.ip, b.port))
            .collect();
        self.maps.services.forget_backends(id, &gone)?;
        self.end_flows(id, &spec.name, &gone)?;
        if let Some(o) = old {
            for k in frontends(&o.spec).into_iter().filter(|k| !keys.contains(k)) {
                self.maps.services.remove_frontend(k)?;
            }
        }
        Ok(())
    }

    /// Ends the tracked flows of service `id` to backends it no longer has.
    fn end_flows(
        &mut self,
        id: u32,
        name: &str,
        gone: &[netcore_common::service::Backend],
    ) -> Result<()> {
        if gone.is_empty() {
            return Ok(());
        }
        let ended = self.maps.conntrack.purge_backends(id, gone)?;
        if ended > 0 {
            info!(service = %name, flows = ended, "ended the flows to removed backends");
        }
        Ok(())
    }

    fn free_service_id(&self) -> Result<u32> {
        (1..MAX_SERVICES)
            .find(|id| !self.state.services.values().any(|s| s.id == *id))
            .ok_or_else(|| AgentError::BadService(format!("at most {} services", MAX_SERVICES - 1)))
    }

    fn validate_service(&self, spec: &ServiceSpec, replace: bool) -> Result<()> {
        let name_ok = |n: &str| {
            !n.is_empty()
                && n.len() <= 63
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-.".contains(c))
        };
        if !name_ok(&spec.name) {
            return bad(format!(
                "name {:?}: use 1 to 63 letters, digits, '-' or '.'",
                spec.name
            ));
        }
        if self.state.services.contains_key(&spec.name) && !replace {
            return bad(format!(
                "service {} already exists (use --replace to change it)",
                spec.name
            ));
        }
        let vip = spec.vip.ip;
        if spec.vip.port == 0 || spec.node_port == Some(0) {
            return bad("port 0 is not a service port".into());
        }
        if let Some(p) = spec.node_port.filter(|p| !NODE_PORTS.contains(p)) {
            return bad(format!(
                "NodePort {p} is outside {}-{} (Kubernetes' range: clear of the VXLAN port and of the node's own connections' ports)",
                NODE_PORTS.start(),
                NODE_PORTS.end()
            ));
        }
        if self.net.cluster_cidr.contains(&vip)
            || vip.is_unspecified()
            || vip.is_multicast()
            || vip.is_broadcast()
            || vip == self.node_ip
        {
            return bad(format!("{vip} cannot be a service address (it is in the pod network {}, or not unicast, or a node's)", self.net.cluster_cidr));
        }
        if spec
            .affinity_seconds
            .is_some_and(|s| !(1..=MAX_AFFINITY_SECONDS).contains(&s))
        {
            return bad(format!(
                "session affinity of {} seconds: use 1 to {MAX_AFFINITY_SECONDS}",
                spec.affinity_seconds.unwrap_or(0)
            ));
        }
        if spec.backends.len() > MAX_BACKENDS_PER_SERVICE as usize {
            return bad(format!(
                "{} backends: at most {MAX_BACKENDS_PER_SERVICE}",
                spec.backends.len()
            ));
        }
        if let Some(b) = spec
            .backends
            .iter()
            .find(|b| b.port == 0 || b.ip.is_unspecified() || b.ip.is_multicast())
        {
            return bad(format!("backend {b} is not a unicast address with a port"));
        }
        let mut seen = spec.backends.clone();
        seen.sort();
        seen.dedup();
        if seen.len() != spec.backends.len() {
            return bad("a backend is listed twice".into());
        }
        let mine = frontends(spec);
        if let Some(other) = self.state.services.values().find(|o| {
            o.spec.name != spec.name && frontends(&o.spec).iter().any(|k| mine.contains(k))
        }) {
            return bad(format!(
                "{}/{} or its NodePort is already service {}",
                spec.vip, spec.proto, other.spec.name
            ));
        }
        Ok(())
    }

    pub fn service_del(&mut self, name: &str) -> Result<bool> {
        let Some(rec) = self.state.services.remove(name) else {
            return Ok(false);
        };
        for k in frontends(&rec.spec) {
            self.maps.services.remove_frontend(k)?;
        }
        self.maps
            .services
            .trim_backends(rec.id, 0, rec.spec.backends.len() as u32)?;
        let gone: Vec<_> = rec
            .spec
            .backends
            .iter()
            .map(|b| backend(b.ip, b.port))
            .collect();
        self.maps.services.forget_backends(rec.id, &gone)?;
        self.end_flows(rec.id, name, &gone)?;
        self.maps.services.set_affinity(rec.id, 0)?;
        self.write_datapath_config()?;
        self.save()?;
        info!(service = %name, "service removed");
        Ok(true)
    }

    fn service_status(&self, rec: &ServiceRecord) -> ServiceStatus {
        let c = self.maps.services.counters(rec.id);
        ServiceStatus {
            spec: rec.spec.clone(),
            id: rec.id,
            packets: c.packets,
            bytes: c.bytes,
            connections: c.connections,
            rejected: c.rejected,
        }
    }

    pub fn service_list(&self) -> Vec<ServiceStatus> {
        self.state
            .services
            .values()
            .map(|r| self.service_status(r))
            .collect()
    }

    /// Makes the services exactly those of the cluster store; invalid ones are logged
    /// and skipped (a service already installed stays as it was).
    pub fn set_store_services(&mut self, specs: BTreeMap<String, ServiceSpec>) -> Result<()> {
        let gone: Vec<String> = self
            .state
            .services
            .keys()
            .filter(|n| !specs.contains_key(*n))
            .cloned()
            .collect();
        for name in gone {
            self.service_del(&name)?;
        }
        for (name, spec) in specs {
            if self
                .state
                .services
                .get(&name)
                .is_some_and(|r| r.spec == spec)
            {
                continue;
            }
            if let Err(e) = self.service_add(spec, true) {
                warn!(service = %name, "skipping a service from the store: {e}");
            }
        }
        Ok(())
    }

    /// At start-up: the maps hold exactly the recorded services.
    pub(super) fn apply_services(&mut self) -> Result<()> {
        let wanted: Vec<_> = self
            .state
            .services
            .values()
            .flat_map(|r| frontends(&r.spec))
            .collect();
        for (k, _) in self.maps.services.frontends() {
            if !wanted.contains(&k) {
                self.maps.services.remove_frontend(k)?;
            }
        }
        let records: Vec<ServiceRecord> = self.state.services.values().cloned().collect();
        for rec in records {
            self.install_service(rec.id, &rec.spec, Some(&rec))?;
        }
        Ok(())
    }
}
