//! ADD's result: the pod's interfaces, address, route and DNS in the spec's format,
//! appended to the chain's `prevResult` when there is one; and CHECK's reading of a
//! `prevResult`.

use std::path::Path;

use super::{
    config::NetConf,
    types::{Interface, IpConfig, Route, Success},
    version::Version,
};
use crate::api::PodInfo;

/// The result of ADD for `pod`, whose interface is in `netns` (as the runtime named it).
pub fn for_pod(pod: &PodInfo, netns: &Path, conf: &NetConf) -> Success {
    let gateway = pod.gateway.to_string();
    let ours = Success {
        interfaces: vec![
            Interface {
                name: pod.host_interface.clone(),
                ..Interface::default()
            },
            Interface {
                name: pod.ifname.clone(),
                mac: Some(pod.mac.to_string()),
                sandbox: Some(netns.display().to_string()),
                ..Interface::default()
            },
        ],
        ips: vec![IpConfig {
            address: format!("{}/{}", pod.ip, pod.prefix_len),
            gateway: Some(gateway.clone()),
            interface: Some(1),
            ..IpConfig::default()
        }],
        routes: vec![Route {
            dst: "0.0.0.0/0".into(),
            gw: Some(gateway),
            ..Route::default()
        }],
        dns: conf.dns.clone(),
        ..Success::default()
    };
    let merged = match &conf.prev_result {
        Some(prev) => append(prev.clone(), ours),
        None => ours,
    };
    encode(merged, conf.version)
}

/// `ours` after what earlier plugins in the chain made; our interface indexes move
/// past theirs, and our DNS settings, when there are any, replace theirs.
fn append(mut prev: Success, ours: Success) -> Success {
    let offset = prev.interfaces.len();
    prev.interfaces.extend(ours.interfaces);
    prev.ips.extend(ours.ips.into_iter().map(|mut ip| {
        ip.interface = ip.interface.map(|i| i + offset);
        ip
    }));
    prev.routes.extend(ours.routes);
    if !ours.dns.is_empty() {
        prev.dns = ours.dns;
    }
    prev
}

/// The result in the config's version: before 1.0.0 every IP names its family.
fn encode(mut result: Success, version: Version) -> Success {
    result.cni_version = version.as_str().into();
    for ip in &mut result.ips {
        ip.version = version.ips_have_family().then(|| {
            let family = if ip.address.contains(':') { "6" } else { "4" };
            family.to_string()
        });
    }
    result
}

/// CHECK: what `prev` (the chain's final ADD result) lacks of `pod`.
pub fn missing_from(prev: &Success, pod: &PodInfo, netns: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let address = format!("{}/{}", pod.ip, pod.prefix_len);
    if !prev.ips.iter().any(|ip| ip.address == address) {
        problems.push(format!(
            "prevResult does not list the pod's address {address}"
        ));
    }
    let sandbox = netns.display().to_string();
    let listed = prev
        .interfaces
        .iter()
        .any(|i| i.name == pod.ifname && i.sandbox.as_deref() == Some(sandbox.as_str()));
    if !listed {
        problems.push(format!(
            "prevResult does not list {} in {sandbox}",
            pod.ifname
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cni::config;

    fn pod() -> PodInfo {
        PodInfo {
            name: "c1-eth0".into(),
            netns: "/run/netns/c1".into(),
            ifname: "eth0".into(),
            ip: "10.244.1.7".parse().unwrap(),
            prefix_len: 24,
            gateway: "10.244.1.1".parse().unwrap(),
            mac: "02:00:00:00:00:07".parse().unwrap(),
            host_interface: "nc0af40107".into(),
            container_id: Some("c1".into()),
            namespace: "default".into(),
            k8s_pod: None,
            labels: Default::default(),
            ports: Vec::new(),
            in_map: true,
        }
    }

    fn conf(json: &str) -> NetConf {
        config::parse(json.as_bytes()).unwrap()
    }

    #[test]
    fn a_first_plugin_result_follows_the_spec() {
        let c = conf(
            r#"{"cniVersion":"1.1.0","name":"nc","type":"netcore-cni","dns":{"nameservers":["10.96.0.10"]}}"#,
        );
        let r = serde_json::to_value(for_pod(&pod(), Path::new("/run/netns/c1"), &c)).unwrap();
        let want = serde_json::json!({
            "cniVersion": "1.1.0",
            "interfaces": [
                {"name": "nc0af40107"},
                {"name": "eth0", "mac": "02:00:00:00:00:07", "sandbox": "/run/netns/c1"}
            ],
            "ips": [{"address": "10.244.1.7/24", "gateway": "10.244.1.1", "interface": 1}],
            "routes": [{"dst": "0.0.0.0/0", "gw": "10.244.1.1"}],
            "dns": {"nameservers": ["10.96.0.10"]}
        });
        assert_eq!(r, want);
    }

    #[test]
    fn old_versions_name_the_ip_family() {
        let c = conf(r#"{"cniVersion":"0.4.0","name":"nc","type":"netcore-cni"}"#);
        let r = for_pod(&pod(), Path::new("/run/netns/c1"), &c);
        assert_eq!(r.cni_version, "0.4.0");
        assert_eq!(r.ips[0].version.as_deref(), Some("4"));
        let json = serde_json::to_value(&r).unwrap();
        assert!(json.get("dns").is_none(), "no empty dns object: {json}");
    }

    #[test]
    fn a_chained_result_keeps_what_came_before() {
        let c = conf(
            r#"{"cniVersion":"1.0.0","name":"nc","type":"netcore-cni",
               "prevResult":{"cniVersion":"1.0.0",
                 "interfaces":[{"name":"dummy0","sandbox":"/x","custom":1}],
                 "ips":[{"address":"fd00::5/64","interface":0}],
                 "dns":{"search":["example"]}}}"#,
        );
        let r = for_pod(&pod(), Path::new("/run/netns/c1"), &c);
        assert_eq!(r.interfaces.len(), 3);
        assert_eq!(
            r.interfaces[0].other["custom"], 1,
            "unknown fields pass through"
        );
        assert_eq!(r.ips[0].interface, Some(0));
        assert_eq!(r.ips[1].interface, Some(2), "our index moves past theirs");
        assert_eq!(
            r.dns.search,
            ["example"],
            "their DNS stays when we have none"
        );
        assert!(r.ips.iter().all(|ip| ip.version.is_none()));
    }

    #[test]
    fn check_reads_the_prev_result() {
        let ns = Path::new("/run/netns/c1");
        let c = conf(r#"{"cniVersion":"1.0.0","name":"nc","type":"netcore-cni"}"#);
        let good = for_pod(&pod(), ns, &c);
        assert!(missing_from(&good, &pod(), ns).is_empty());
        let mut other = pod();
        other.ip = "10.244.1.8".parse().unwrap();
        assert_eq!(missing_from(&good, &other, ns).len(), 1);
        assert_eq!(missing_from(&Success::default(), &pod(), ns).len(), 2);
    }
}
