//! Network policy across the cluster: policies and namespaces' labels written to the
//! store by whichever node's API took the change, and every node's pods (address,
//! namespace, labels) written by that node. Every node lists them after each change
//! the store reports and compiles its own maps from them.

use std::{
    collections::{BTreeMap, HashSet},
    net::Ipv4Addr,
};

use tokio::sync::Mutex;
use tracing::warn;

use crate::{
    agent::{Agent, LabelChange},
    policy::{compile::PodIdentity, parse, selector::Labels, types::NetworkPolicy},
    store::{flannel, Entry, Store, StoreError},
};

/// The policies the last listing parsed, by key, with the value they came from: a
/// value listed again is not parsed and validated again (the store is listed after
/// every change it reports, and the file store every 250 ms).
#[derive(Default)]
pub struct ParsedPolicies(BTreeMap<String, (String, Option<NetworkPolicy>)>);

/// Lists the policy state in the store, applies it, and writes this node's pods where
/// the store's copy differs.
pub async fn sync(
    store: &mut Store,
    prefix: &str,
    agent: &Mutex<Agent>,
    reported: &mut HashSet<(String, String)>,
    parsed: &mut ParsedPolicies,
) -> Result<(), StoreError> {
    let policies = store.list(&flannel::policies_prefix(prefix)).await?;
    let namespaces = store.list(&flannel::namespaces_prefix(prefix)).await?;
    let pods = store.list(&flannel::pods_prefix(prefix)).await?;
    let policies = parse_policies(prefix, policies, reported, parsed);
    let namespaces = parse_namespaces(prefix, namespaces, reported);
    let (pods, mine) = {
        let mut a = agent.lock().await;
        let pod_cidr = a.pod_cidr();
        let (remote, stored_mine) = parse_pods(prefix, pods, pod_cidr, reported);
        if let Err(e) = a.set_store_policies(policies) {
            warn!("applying the store's network policies: {e}");
        }
        if let Err(e) = a.set_store_namespaces(namespaces) {
            warn!("applying the store's namespaces: {e}");
        }
        (remote, (stored_mine, a.local_identities()))
    };
    if let Err(e) = agent.lock().await.set_store_pods(pods) {
        warn!("applying the store's pods: {e}");
    }
    write_own_pods(store, prefix, mine).await
}

/// Puts this node's pods the store lacks or has wrong; deletes the ones it no longer has.
async fn write_own_pods(
    store: &mut Store,
    prefix: &str,
    (stored, local): (BTreeMap<Ipv4Addr, PodIdentity>, Vec<PodIdentity>),
) -> Result<(), StoreError> {
    for pod in &local {
        if stored.get(&pod.ip) != Some(pod) {
            let json = serde_json::to_string(pod).expect("pods serialize");
            store.put(&pod_key(prefix, pod.ip), &json, None).await?;
        }
    }
    for ip in stored
        .keys()
        .filter(|ip| !local.iter().any(|p| p.ip == **ip))
    {
        store.delete(&pod_key(prefix, *ip)).await?;
    }
    Ok(())
}

fn pod_key(prefix: &str, ip: Ipv4Addr) -> String {
    format!("{}{ip}", flannel::pods_prefix(prefix))
}

/// Reports a bad entry once per value.
fn skip(reported: &mut HashSet<(String, String)>, e: &Entry, why: &str) {
    if reported.insert((e.key.clone(), e.value.clone())) {
        warn!(key = %e.key, "skipping {why}");
    }
}

fn parse_policies(
    prefix: &str,
    entries: Vec<Entry>,
    reported: &mut HashSet<(String, String)>,
    parsed: &mut ParsedPolicies,
) -> BTreeMap<String, NetworkPolicy> {
    let mut out = BTreeMap::new();
    let mut now = BTreeMap::new();
    for e in entries {
        let key = e
            .key
            .strip_prefix(&flannel::policies_prefix(prefix))
            .unwrap_or_default()
            .to_string();
        let policy = match parsed.0.remove(&key) {
            Some((value, policy)) if value == e.value => policy,
            _ => parse_policy(&key, &e, reported),
        };
        if let Some(p) = &policy {
            out.insert(key.clone(), p.clone());
        }
        now.insert(key, (e.value, policy));
    }
    parsed.0 = now;
    out
}

/// A stored policy, if it is valid and stored under its own name.
fn parse_policy(
    key: &str,
    e: &Entry,
    reported: &mut HashSet<(String, String)>,
) -> Option<NetworkPolicy> {
    let valid = serde_json::from_str::<NetworkPolicy>(&e.value)
        .map_err(|x| x.to_string())
        .and_then(|np| parse::validate(np).map_err(|x| x.to_string()));
    match valid {
        Ok(p) if p.key() == key => Some(p.object),
        Ok(_) => {
            skip(reported, e, "a policy stored under another name");
            None
        }
        Err(why) => {
            skip(reported, e, &format!("a policy netcore cannot use: {why}"));
            None
        }
    }
}

fn parse_namespaces(
    prefix: &str,
    entries: Vec<Entry>,
    reported: &mut HashSet<(String, String)>,
) -> BTreeMap<String, Labels> {
    let mut out = BTreeMap::new();
    for e in entries {
        let ns = e
            .key
            .strip_prefix(&flannel::namespaces_prefix(prefix))
            .unwrap_or_default()
            .to_string();
        let labels = serde_json::from_str::<Labels>(&e.value).ok().and_then(|l| {
            let checked = LabelChange {
                set: l,
                remove: vec![],
            }
            .apply(Labels::new())
            .ok()?;
            crate::agent::policy_check_namespace(&ns)
                .ok()
                .map(|()| checked)
        });
        match labels {
            Some(l) => {
                out.insert(ns, l);
            }
            None => skip(reported, &e, "namespace labels netcore cannot use"),
        }
    }
    out
}

/// Other nodes' pods, and what the store holds of this node's (in `own`).
fn parse_pods(
    prefix: &str,
    entries: Vec<Entry>,
    own: ipnet::Ipv4Net,
    reported: &mut HashSet<(String, String)>,
) -> (
    BTreeMap<Ipv4Addr, PodIdentity>,
    BTreeMap<Ipv4Addr, PodIdentity>,
) {
    let (mut remote, mut mine) = (BTreeMap::new(), BTreeMap::new());
    for e in entries {
        let ip: Option<Ipv4Addr> = e
            .key
            .strip_prefix(&flannel::pods_prefix(prefix))
            .and_then(|s| s.parse().ok());
        let pod = serde_json::from_str::<PodIdentity>(&e.value)
            .ok()
            .filter(|p| {
                Some(p.ip) == ip
                    && crate::agent::policy_check_namespace(&p.namespace).is_ok()
                    && crate::policy::selector::check_labels(&p.labels).is_ok()
                    && crate::policy::ports::check_container_ports(&p.ports).is_ok()
            });
        match (ip, pod) {
            (Some(ip), _) if own.contains(&ip) => {
                // Ours: compared (and rewritten) whatever it holds.
                let value = serde_json::from_str::<PodIdentity>(&e.value).unwrap_or(PodIdentity {
                    ip,
                    namespace: String::new(),
                    labels: Labels::new(),
                    ports: Vec::new(),
                });
                mine.insert(ip, value);
            }
            (Some(ip), Some(p)) => {
                remote.insert(ip, p);
            }
            _ => skip(reported, &e, "a pod record netcore cannot use"),
        }
    }
    (remote, mine)
}

/// `policy apply` with a store: applied here first (which validates), then written.
pub async fn apply(
    store: &mut Store,
    prefix: &str,
    agent: &Mutex<Agent>,
    text: &str,
) -> Result<serde_json::Value, String> {
    let policies = parse::parse_documents(text).map_err(|e| e.to_string())?;
    let objects: Vec<NetworkPolicy> = policies.iter().map(|p| p.object.clone()).collect();
    let keys = agent
        .lock()
        .await
        .policy_put(policies)
        .map_err(|e| e.to_string())?;
    for (key, np) in keys.iter().zip(objects) {
        let json = serde_json::to_string(&np).expect("policies serialize");
        let at = format!("{}{key}", flannel::policies_prefix(prefix));
        store
            .put(&at, &json, None)
            .await
            .map_err(|e| format!("writing {at}: {e}"))?;
    }
    Ok(serde_json::to_value(keys).expect("serializes"))
}

pub async fn delete(
    store: &mut Store,
    prefix: &str,
    agent: &Mutex<Agent>,
    key: &str,
) -> Result<serde_json::Value, String> {
    let existed = agent
        .lock()
        .await
        .policy_del(key)
        .map_err(|e| e.to_string())?;
    let at = format!("{}{key}", flannel::policies_prefix(prefix));
    store
        .delete(&at)
        .await
        .map_err(|e| format!("deleting {at}: {e}"))?;
    Ok(serde_json::Value::Bool(existed))
}

pub async fn label_namespace(
    store: &mut Store,
    prefix: &str,
    agent: &Mutex<Agent>,
    name: &str,
    change: &LabelChange,
) -> Result<serde_json::Value, String> {
    let (info, labels) = {
        let mut a = agent.lock().await;
        let info = a.namespace_label(name, change).map_err(|e| e.to_string())?;
        (info, a.namespace_labels(name))
    };
    let at = format!("{}{name}", flannel::namespaces_prefix(prefix));
    let written = if labels.is_empty() {
        store.delete(&at).await
    } else {
        store
            .put(
                &at,
                &serde_json::to_string(&labels).expect("labels serialize"),
                None,
            )
            .await
    };
    written.map_err(|e| format!("writing {at}: {e}"))?;
    Ok(serde_json::to_value(info).expect("serializes"))
}
