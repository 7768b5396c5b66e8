//! The network config on stdin: parsed, checked, and the fields this plugin uses.
//!
//! ```json
//! {"cniVersion": "1.0.0", "name": "netcore", "type": "netcore-cni",
//!  "socket": "/run/netcore/netcore.sock", "dns": {"nameservers": ["10.96.0.10"]}}
//! ```

use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;

use crate::policy::ports::ContainerPort;

use super::{
    error::CniError,
    types::{Dns, Success, ValidAttachment},
    version::Version,
};

/// Where the agent listens unless the config says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/netcore/netcore.sock";

/// A checked network config.
#[derive(Debug, Clone)]
pub struct NetConf {
    pub version: Version,
    pub name: String,
    pub socket: PathBuf,
    pub dns: Dns,
    pub prev_result: Option<Success>,
    pub valid_attachments: Option<Vec<ValidAttachment>>,
    /// Pod labels, from `args.cni.labels` (the CNI args convention: a list of
    /// `{"key", "value"}`) and `runtimeConfig.labels` (an object), the latter winning.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Named ports, from `args.cni.ports`: Kubernetes `ContainerPort`s
    /// (`{"name", "containerPort", "protocol"}`), for policies that name ports.
    pub ports: Vec<ContainerPort>,
}

/// The config as it comes, before checks (every field may be missing).
#[derive(Deserialize)]
struct RawConf {
    #[serde(rename = "cniVersion")]
    cni_version: Option<String>,
    name: Option<String>,
    #[serde(rename = "type")]
    plugin_type: Option<String>,
    socket: Option<PathBuf>,
    #[serde(default)]
    dns: Dns,
    #[serde(rename = "prevResult")]
    prev_result: Option<Value>,
    #[serde(rename = "cni.dev/valid-attachments")]
    valid_attachments: Option<Vec<ValidAttachment>>,
    #[serde(default)]
    args: Option<Value>,
    #[serde(rename = "runtimeConfig", default)]
    runtime_config: Option<Value>,
}

#[derive(Deserialize)]
struct KeyValue {
    key: String,
    value: String,
}

/// Labels from `args.cni.labels` and `runtimeConfig.labels`.
fn labels(
    args: Option<&Value>,
    runtime: Option<&Value>,
) -> Result<std::collections::BTreeMap<String, String>, CniError> {
    let bad = |what: &str, e: serde_json::Error| CniError::InvalidConfig(format!("{what}: {e}"));
    let mut out = std::collections::BTreeMap::new();
    if let Some(list) = args.and_then(|a| a.pointer("/cni/labels")) {
        let list: Vec<KeyValue> = serde_json::from_value(list.clone())
            .map_err(|e| bad("args.cni.labels must be a list of {key, value}", e))?;
        out.extend(list.into_iter().map(|kv| (kv.key, kv.value)));
    }
    if let Some(map) = runtime.and_then(|r| r.get("labels")) {
        let map: std::collections::BTreeMap<String, String> =
            serde_json::from_value(map.clone())
                .map_err(|e| bad("runtimeConfig.labels must be an object of strings", e))?;
        out.extend(map);
    }
    Ok(out)
}

/// Named ports from `args.cni.ports`, checked as Kubernetes checks a pod's.
fn ports(args: Option<&Value>) -> Result<Vec<ContainerPort>, CniError> {
    let Some(list) = args.and_then(|a| a.pointer("/cni/ports")) else {
        return Ok(Vec::new());
    };
    let ports: Vec<ContainerPort> = serde_json::from_value(list.clone()).map_err(|e| {
        CniError::InvalidConfig(format!(
            "args.cni.ports must be a list of {{name, containerPort, protocol}}: {e}"
        ))
    })?;
    crate::policy::ports::check_container_ports(&ports)
        .map_err(|e| CniError::InvalidConfig(format!("args.cni.ports: {e}")))?;
    Ok(ports)
}

/// Parses and checks the config: invalid JSON is code 6, a config that is not what
/// the spec and this plugin need is 7, an unknown `cniVersion` is 1.
pub fn parse(stdin: &[u8]) -> Result<NetConf, CniError> {
    let value: Value = serde_json::from_slice(stdin).map_err(CniError::Decode)?;
    if !value.is_object() {
        return Err(CniError::InvalidConfig(
            "the config must be a JSON object".into(),
        ));
    }
    let raw: RawConf =
        serde_json::from_value(value).map_err(|e| CniError::InvalidConfig(e.to_string()))?;
    let version = raw
        .cni_version
        .as_deref()
        .ok_or_else(|| CniError::InvalidConfig("cniVersion is missing".into()))
        .and_then(Version::parse)?;
    let name = raw
        .name
        .ok_or_else(|| CniError::InvalidConfig("name is missing".into()))?;
    check_name(&name)?;
    if raw.plugin_type.as_deref().is_none_or(str::is_empty) {
        return Err(CniError::InvalidConfig("type is missing".into()));
    }
    let socket = raw.socket.unwrap_or_else(|| DEFAULT_SOCKET.into());
    if !socket.is_absolute() {
        return Err(CniError::InvalidConfig(format!(
            "socket {} is not an absolute path",
            socket.display()
        )));
    }
    let prev_result = raw
        .prev_result
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| CniError::InvalidConfig(format!("prevResult is not a CNI result: {e}")))?;
    let labels = labels(raw.args.as_ref(), raw.runtime_config.as_ref())?;
    let ports = ports(raw.args.as_ref())?;
    Ok(NetConf {
        version,
        name,
        socket,
        dns: raw.dns,
        prev_result,
        valid_attachments: raw.valid_attachments,
        labels,
        ports,
    })
}

/// The spec's network name: an alphanumeric, then alphanumerics, '_', '.' or '-'.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    first_ok && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

fn check_name(name: &str) -> Result<(), CniError> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(CniError::InvalidConfig(format!(
            "network name {name:?} must start with a letter or digit and hold only letters, digits, '_', '.' and '-'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(stdin: &str) -> u32 {
        parse(stdin.as_bytes()).unwrap_err().code()
    }

    #[test]
    fn a_minimal_config_gets_the_default_socket() {
        let c = parse(br#"{"cniVersion":"1.0.0","name":"nc","type":"netcore-cni"}"#).unwrap();
        assert_eq!(c.version, Version::V1_0_0);
        assert_eq!(c.socket, PathBuf::from(DEFAULT_SOCKET));
        assert!(c.prev_result.is_none() && c.dns.is_empty());
    }

    #[test]
    fn takes_socket_dns_and_prev_result() {
        let c = parse(
            br#"{"cniVersion":"1.1.0","name":"nc","type":"netcore-cni","socket":"/tmp/a.sock",
                "dns":{"nameservers":["10.0.0.10"]},"runtimeConfig":{"portMappings":[]},
                "prevResult":{"cniVersion":"1.1.0","ips":[{"address":"10.1.0.2/24"}]}}"#,
        )
        .unwrap();
        assert_eq!(c.socket, PathBuf::from("/tmp/a.sock"));
        assert_eq!(c.dns.nameservers, ["10.0.0.10"]);
        assert_eq!(c.prev_result.unwrap().ips[0].address, "10.1.0.2/24");
    }

    #[test]
    fn refuses_bad_configs_with_the_spec_codes() {
        assert_eq!(code("{not json"), 6);
        assert_eq!(code(""), 6);
        assert_eq!(code("[1,2]"), 7);
        assert_eq!(code(r#"{"name":"nc","type":"t"}"#), 7);
        assert_eq!(code(r#"{"cniVersion":"0.3.1","name":"nc","type":"t"}"#), 1);
        assert_eq!(code(r#"{"cniVersion":"2.0.0","name":"nc","type":"t"}"#), 1);
        assert_eq!(code(r#"{"cniVersion":"1.0.0","type":"t"}"#), 7);
        assert_eq!(code(r#"{"cniVersion":"1.0.0","name":"-x","type":"t"}"#), 7);
        assert_eq!(code(r#"{"cniVersion":"1.0.0","name":"nc"}"#), 7);
        assert_eq!(code(r#"{"cniVersion":1,"name":"nc","type":"t"}"#), 7);
        assert_eq!(
            code(r#"{"cniVersion":"1.0.0","name":"nc","type":"t","socket":"rel.sock"}"#),
            7
        );
        assert_eq!(
            code(r#"{"cniVersion":"1.0.0","name":"nc","type":"t","prevResult":{"ips":5}}"#),
            7
        );
    }

    #[test]
    fn named_ports_come_from_args_and_are_checked() {
        let with = |ports: &str| {
            format!(
                r#"{{"cniVersion":"1.0.0","name":"nc","type":"t","args":{{"cni":{{"ports":{ports}}}}}}}"#
            )
        };
        let c = parse(with(r#"[{"name":"http","containerPort":8080},{"name":"dns","containerPort":53,"protocol":"UDP"}]"#).as_bytes()).unwrap();
        assert_eq!(c.ports.len(), 2);
        assert_eq!(
            (c.ports[0].container_port, c.ports[0].protocol.as_str()),
            (8080, "TCP")
        );
        assert_eq!(c.ports[1].name.as_deref(), Some("dns"));
        for bad in [
            r#"{"http":8080}"#,
            r#"[{"name":"HTTP","containerPort":8080}]"#,
            r#"[{"name":"http","containerPort":70000}]"#,
            r#"[{"name":"http","containerPort":80,"protocol":"ICMP"}]"#,
            r#"[{"name":"http","containerPort":80},{"name":"http","containerPort":81}]"#,
            r#"[{"name":"http","port":80}]"#,
        ] {
            assert_eq!(code(&with(bad)), 7, "{bad} is refused as an invalid config");
        }
    }
}
