//! The commands. Each is one request to the agent over its socket, and a translation
//! of the reply into the spec's terms: the agent owns IPAM, maps and programs.

use std::{path::Path, time::Duration};

use serde::de::DeserializeOwned;

use super::{
    config::NetConf,
    env::{Attachment, Invocation},
    error::CniError,
    result,
    types::Success,
    version::{self, VersionResult},
};
use crate::api::{
    client::{self, ClientError},
    cni::{self as api_cni, CheckReport},
    PodInfo, Request, Status,
};

/// How long the agent may take to plumb a pod, and to answer anything else.
const ADD_TIMEOUT: Duration = Duration::from_secs(60);
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// What a successful command prints.
#[derive(Debug)]
pub enum Output {
    Nothing,
    Added(Success),
    Version(VersionResult),
}

pub async fn run(inv: Invocation, conf: &NetConf) -> Result<Output, CniError> {
    match inv {
        Invocation::Add(a) => add(&a, conf).await.map(Output::Added),
        Invocation::Del(a) => del(&a, conf).await.map(|()| Output::Nothing),
        Invocation::Check(a) => check(&a, conf).await.map(|()| Output::Nothing),
        Invocation::Status => status(conf).await.map(|()| Output::Nothing),
        Invocation::Gc => gc(conf).await.map(|()| Output::Nothing),
        Invocation::Version => Ok(Output::Version(VersionResult {
            cni_version: conf.version.to_string(),
            supported_versions: version::SUPPORTED.iter().map(|v| v.to_string()).collect(),
        })),
    }
}

/// The pod name for an attachment: unique per (container ID, interface), at most 64
/// characters; long IDs are shortened and made unique again with a hash.
pub fn pod_name(container_id: &str, ifname: &str) -> String {
    const KEEP: usize = 24;
    if container_id.len() <= KEEP {
        return format!("{container_id}-{ifname}");
    }
    let hash = container_id.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    format!("{}-{hash:08x}-{ifname}", &container_id[..KEEP])
}

async fn add(a: &Attachment, conf: &NetConf) -> Result<Success, CniError> {
    let netns = a.netns.clone().ok_or_else(|| CniError::InvalidEnv {
        var: "CNI_NETNS",
        reason: "not set (ADD needs it)".into(),
    })?;
    let req = Request::PodAdd(crate::api::PodAdd {
        name: pod_name(&a.container_id, &a.ifname),
        netns: Some(netns.clone()),
        ifname: Some(a.ifname.clone()),
        container_id: Some(a.container_id.clone()),
        namespace: a.arg("K8S_POD_NAMESPACE").map(str::to_string),
        k8s_pod: a.arg("K8S_POD_NAME").map(str::to_string),
        labels: conf.labels.clone(),
        ports: conf.ports.clone(),
    });
    let pod: PodInfo = call(conf, "ADD", &req, ADD_TIMEOUT).await?;
    Ok(result::for_pod(&pod, &netns, conf))
}

async fn del(a: &Attachment, conf: &NetConf) -> Result<(), CniError> {
    let req = Request::CniDel {
        container_id: a.container_id.clone(),
        ifname: a.ifname.clone(),
    };
    let _existed: bool = call(conf, "DEL", &req, CALL_TIMEOUT).await?;
    Ok(())
}

async fn check(a: &Attachment, conf: &NetConf) -> Result<(), CniError> {
    let netns = a.netns.clone().unwrap_or_default();
    let req = Request::CniCheck {
        container_id: a.container_id.clone(),
        ifname: a.ifname.clone(),
        netns: netns.clone(),
    };
    let report: CheckReport = call(conf, "CHECK", &req, CALL_TIMEOUT).await?;
    let problems = match (&report.pod, &conf.prev_result) {
        (None, _) => vec!["the netcore agent has no such attachment".to_string()],
        (Some(pod), Some(prev)) => {
            [report.problems, result::missing_from(prev, pod, &netns)].concat()
        }
        (Some(_), None) => report.problems,
    };
    if problems.is_empty() {
        return Ok(());
    }
    Err(CniError::CheckFailed {
        container_id: a.container_id.clone(),
        ifname: a.ifname.clone(),
        problems,
    })
}

/// STATUS: ready when the agent answers and has an address left for another pod.
async fn status(conf: &NetConf) -> Result<(), CniError> {
    let not_available = |reason: String| CniError::NotAvailable {
        socket: conf.socket.clone(),
        reason,
    };
    let st: Status = match call(conf, "STATUS", &Request::Status, CALL_TIMEOUT).await {
        Ok(st) => st,
        Err(CniError::AgentUnreachable { reason, .. }) => return Err(not_available(reason)),
        Err(e) => return Err(e),
    };
    if st.ips_in_use >= st.ips_total {
        return Err(not_available(format!(
            "every address of {} is in use",
            st.pod_cidr
        )));
    }
    Ok(())
}

async fn gc(conf: &NetConf) -> Result<(), CniError> {
    let valid = conf.valid_attachments.as_ref().ok_or_else(|| {
        CniError::InvalidConfig(
            "GC needs cni.dev/valid-attachments (an empty list removes every attachment)".into(),
        )
    })?;
    let valid = valid
        .iter()
        .map(|v| api_cni::Attachment {
            container_id: v.container_id.clone(),
            ifname: v.ifname.clone(),
        })
        .collect();
    let _removed: Vec<String> = call(conf, "GC", &Request::CniGc { valid }, CALL_TIMEOUT).await?;
    Ok(())
}

/// One request to the agent: unreachable or too slow is "try again later".
async fn call<T: DeserializeOwned>(
    conf: &NetConf,
    op: &'static str,
    req: &Request,
    timeout: Duration,
) -> Result<T, CniError> {
    let unreachable = |socket: &Path, reason: String| CniError::AgentUnreachable {
        socket: socket.into(),
        reason,
    };
    let reply = tokio::time::timeout(timeout, client::call(&conf.socket, req))
        .await
        .map_err(|_| unreachable(&conf.socket, format!("no answer within {timeout:?}")))?;
    reply.map_err(|e| match e {
        ClientError::Unreachable { path, source } => unreachable(&path, source.to_string()),
        ClientError::Io(e) => unreachable(&conf.socket, e.to_string()),
        ClientError::Timeout(t) => unreachable(&conf.socket, format!("no answer within {t:?}")),
        ClientError::BadReply(m) => CniError::BadReply(m),
        ClientError::Agent(message) => CniError::AgentRefused { op, message },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_names_are_unique_short_and_valid() {
        assert_eq!(pod_name("abc", "eth0"), "abc-eth0");
        let long = "4dcfaf97e97f421e18d5330bba0d090f0056d30be4a10036b588c9a90d0fcfe0";
        let name = pod_name(long, "a-long-ifname15");
        assert!(name.len() <= 64, "{name}");
        assert!(name.starts_with(&long[..24]));
        let other = format!("{}1", &long[..63]);
        assert_ne!(pod_name(&other, "eth0"), pod_name(long, "eth0"));
        assert_ne!(pod_name(long, "eth0"), pod_name(long, "eth1"));
    }
}
