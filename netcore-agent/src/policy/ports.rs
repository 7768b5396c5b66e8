//! Pods' named ports (Kubernetes `ContainerPort`), which a policy's `port: "http"`
//! refers to: validated as the API server does, and resolved to a number the way
//! Kubernetes resolves them (the pod the traffic goes to, by name and protocol).

use serde::{Deserialize, Serialize};

use super::{
    parse::{SCTP, TCP, UDP},
    PolicyError,
};

/// A container port as a pod spec has it: `{"name": "http", "containerPort": 8080,
/// "protocol": "TCP"}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ContainerPort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub container_port: i64,
    #[serde(default = "default_protocol")]
    pub protocol: String,
}

fn default_protocol() -> String {
    "TCP".into()
}

/// A protocol name as Kubernetes spells it, as an IP protocol number.
pub fn protocol_number(name: &str) -> Option<u8> {
    match name {
        "TCP" => Some(TCP),
        "UDP" => Some(UDP),
        "SCTP" => Some(SCTP),
        _ => None,
    }
}

/// An IANA service name, as Kubernetes validates port names (`IsValidPortName`):
/// 1-15 characters of `[a-z0-9-]`, at least one letter, no hyphen at either end and
/// no two in a row.
pub fn check_port_name(name: &str) -> Result<(), PolicyError> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.chars().any(|c| c.is_ascii_lowercase())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if !ok {
        return Err(PolicyError::Invalid(format!(
            "port name {name:?} is not an IANA service name (1-15 lower case letters, digits \
             and single inner hyphens, at least one letter)"
        )));
    }
    Ok(())
}

/// A pod's ports: each number 1-65535, each protocol TCP, UDP or SCTP, each name
/// valid and used once.
pub fn check_container_ports(ports: &[ContainerPort]) -> Result<(), PolicyError> {
    let bad = |s: String| Err(PolicyError::Invalid(s));
    let mut names = std::collections::BTreeSet::new();
    for p in ports {
        if !(1..=65535).contains(&p.container_port) {
            return bad(format!(
                "containerPort {} is not between 1 and 65535",
                p.container_port
            ));
        }
        if protocol_number(&p.protocol).is_none() {
            return bad(format!(
                "port protocol {:?} is not TCP, UDP or SCTP",
                p.protocol
            ));
        }
        if let Some(name) = &p.name {
            check_port_name(name)?;
            if !names.insert(name) {
                return bad(format!("port name {name:?} is used twice"));
            }
        }
    }
    Ok(())
}

/// The number `name` stands for on a pod with `ports`, for `proto`; none when the pod
/// has no port of that name and protocol.
pub fn resolve(ports: &[ContainerPort], name: &str, proto: u8) -> Option<u16> {
    ports
        .iter()
        .find(|p| p.name.as_deref() == Some(name) && protocol_number(&p.protocol) == Some(proto))
        .and_then(|p| u16::try_from(p.container_port).ok())
}

/// `NAME=PORT[/PROTOCOL]` (`http=8080`, `dns=53/UDP`), as `netcore pod add --port`
/// takes it.
pub fn parse_port_arg(s: &str) -> Result<ContainerPort, String> {
    let (name, rest) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected NAME=PORT[/PROTOCOL]"))?;
    let (number, protocol) = match rest.split_once('/') {
        Some((n, p)) => (n, p.to_ascii_uppercase()),
        None => (rest, default_protocol()),
    };
    let container_port = number
        .parse()
        .map_err(|_| format!("{s:?}: {number:?} is not a port number"))?;
    let port = ContainerPort {
        name: Some(name.to_string()),
        container_port,
        protocol,
    };
    check_container_ports(std::slice::from_ref(&port)).map_err(|e| format!("{s:?}: {e}"))?;
    Ok(port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(name: &str, n: i64, proto: &str) -> ContainerPort {
        ContainerPort {
            name: Some(name.into()),
            container_port: n,
            protocol: proto.into(),
        }
    }

    #[test]
    fn port_names_follow_kubernetes() {
        for good in ["http", "serve-80-tcp", "a", "h2c", "x1-y2"] {
            assert!(check_port_name(good).is_ok(), "{good} is valid");
        }
        for bad in [
            "",
            "80",
            "HTTP",
            "-http",
            "http-",
            "ht--tp",
            "a_b",
            "sixteen-chars-xx",
        ] {
            assert!(check_port_name(bad).is_err(), "{bad:?} is refused");
        }
    }

    #[test]
    fn pods_ports_are_checked() {
        assert!(check_container_ports(&[port("http", 80, "TCP"), port("dns", 53, "UDP")]).is_ok());
        assert!(check_container_ports(&[port("http", 0, "TCP")]).is_err());
        assert!(check_container_ports(&[port("http", 65536, "TCP")]).is_err());
        assert!(check_container_ports(&[port("http", 80, "tcp")]).is_err());
        assert!(
            check_container_ports(&[port("http", 80, "TCP"), port("http", 81, "UDP")]).is_err()
        );
    }

    #[test]
    fn names_resolve_by_name_and_protocol() {
        let ports = [port("http", 8080, "TCP"), port("dns", 53, "UDP")];
        assert_eq!(resolve(&ports, "http", TCP), Some(8080));
        assert_eq!(resolve(&ports, "http", UDP), None, "http is TCP only");
        assert_eq!(resolve(&ports, "dns", UDP), Some(53));
        assert_eq!(resolve(&ports, "smtp", TCP), None);
    }

    #[test]
    fn the_cli_form_parses() {
        assert_eq!(
            parse_port_arg("http=8080").unwrap(),
            port("http", 8080, "TCP")
        );
        assert_eq!(
            parse_port_arg("dns=53/udp").unwrap(),
            port("dns", 53, "UDP")
        );
        assert!(parse_port_arg("http").is_err());
        assert!(parse_port_arg("http=x").is_err());
        assert!(parse_port_arg("HTTP=80").is_err());
        assert!(parse_port_arg("http=80/icmp").is_err());
    }
}
