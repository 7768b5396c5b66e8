//! The `CNI_*` environment variables: which command, which container, which
//! namespace, which interface; checked the way each command needs them.

use std::path::{Path, PathBuf};

use super::error::CniError;

use super::version::Version;

/// What the runtime asked for, with the parameters the command needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    Add(Attachment),
    Del(Attachment),
    Check(Attachment),
    Status,
    Gc,
    Version,
}

/// The attachment parameters of ADD, DEL and CHECK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub container_id: String,
    pub ifname: String,
    /// Checked to be a network namespace for ADD and CHECK; DEL may have none, or
    /// one that is gone already.
    pub netns: Option<PathBuf>,
    /// `CNI_ARGS`: `KEY=VALUE` pairs separated by ';' (runtimes send
    /// `K8S_POD_NAMESPACE` and `K8S_POD_NAME` there).
    pub args: Vec<(String, String)>,
}

impl Attachment {
    pub fn arg(&self, key: &str) -> Option<&str> {
        self.args
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl Invocation {
    pub fn name(&self) -> &'static str {
        match self {
            Invocation::Add(_) => "ADD",
            Invocation::Del(_) => "DEL",
            Invocation::Check(_) => "CHECK",
            Invocation::Status => "STATUS",
            Invocation::Gc => "GC",
            Invocation::Version => "VERSION",
        }
    }

    /// The oldest config version that has this command.
    pub fn min_version(&self) -> Version {
        match self {
            Invocation::Status | Invocation::Gc => Version::V1_1_0,
            _ => Version::V0_4_0,
        }
    }
}

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Reads `CNI_COMMAND` and the variables that command needs.
pub fn invocation(env: Env) -> Result<Invocation, CniError> {
    let invalid = |reason: String| CniError::InvalidEnv {
        var: "CNI_COMMAND",
        reason,
    };
    match env("CNI_COMMAND").as_deref() {
        Some("ADD") => Ok(Invocation::Add(attachment(env, "ADD", true)?)),
        Some("DEL") => Ok(Invocation::Del(attachment(env, "DEL", false)?)),
        Some("CHECK") => Ok(Invocation::Check(attachment(env, "CHECK", true)?)),
        Some("STATUS") => Ok(Invocation::Status),
        Some("GC") => Ok(Invocation::Gc),
        Some("VERSION") => Ok(Invocation::Version),
        Some(other) => Err(invalid(format!(
            "{other:?} is not one of ADD, DEL, CHECK, STATUS, GC, VERSION"
        ))),
        None => Err(invalid("not set".into())),
    }
}

fn attachment(env: Env, cmd: &'static str, needs_netns: bool) -> Result<Attachment, CniError> {
    let container_id = required(env, "CNI_CONTAINERID", cmd)?;
    check_container_id(&container_id)?;
    let ifname = required(env, "CNI_IFNAME", cmd)?;
    check_ifname(&ifname)?;
    let netns = match env("CNI_NETNS").filter(|s| !s.is_empty()) {
        Some(path) if needs_netns => Some(check_netns(PathBuf::from(path))?),
        Some(path) => Some(PathBuf::from(path)),
        None if needs_netns => return Err(missing("CNI_NETNS", cmd)),
        None => None,
    };
    let args = cni_args(env("CNI_ARGS").as_deref().unwrap_or_default())?;
    Ok(Attachment {
        container_id,
        ifname,
        netns,
        args,
    })
}

/// `K1=V1;K2=V2`; empty pieces are skipped, a piece without '=' is refused.
fn cni_args(text: &str) -> Result<Vec<(String, String)>, CniError> {
    text.split(';')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(CniError::InvalidEnv {
                var: "CNI_ARGS",
                reason: format!("{p:?} is not KEY=VALUE"),
            }),
        })
        .collect()
}

fn missing(var: &'static str, cmd: &str) -> CniError {
    CniError::InvalidEnv {
        var,
        reason: format!("not set ({cmd} needs it)"),
    }
}

fn required(env: Env, var: &'static str, cmd: &str) -> Result<String, CniError> {
    env(var)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| missing(var, cmd))
}

/// The spec's container ID: an alphanumeric, then alphanumerics, '_', '.' or '-'.
fn check_container_id(id: &str) -> Result<(), CniError> {
    let mut chars = id.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
        return Ok(());
    }
    Err(CniError::InvalidEnv {
        var: "CNI_CONTAINERID",
        reason: format!(
            "{id:?} must start with a letter or digit and hold only letters, digits, '_', '.' and '-'"
        ),
    })
}

/// An interface name this plugin can make: 1 to 15 letters, digits, '_', '.' or '-'.
fn check_ifname(name: &str) -> Result<(), CniError> {
    let chars_ok = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if chars_ok && (1..=15).contains(&name.len()) && name != "." && name != ".." {
        return Ok(());
    }
    Err(CniError::InvalidEnv {
        var: "CNI_IFNAME",
        reason: format!("{name:?} is not an interface name netcore can make (1 to 15 letters, digits, '_', '.' or '-')"),
    })
}

fn check_netns(path: PathBuf) -> Result<PathBuf, CniError> {
    let reason = if !path.is_absolute() {
        "is not an absolute path"
    } else if !Path::new(&path).exists() {
        "does not exist"
    } else if !crate::netns::is_netns(&path) {
        "is not a network namespace"
    } else {
        return Ok(path);
    };
    Err(CniError::InvalidEnv {
        var: "CNI_NETNS",
        reason: format!("{} {reason}", path.display()),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn run(pairs: &[(&str, &str)]) -> Result<Invocation, CniError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        invocation(&move |k: &str| map.get(k).cloned())
    }

    fn invalid_var(r: Result<Invocation, CniError>) -> &'static str {
        match r {
            Err(CniError::InvalidEnv { var, .. }) => var,
            other => panic!("expected an invalid variable, got {other:?}"),
        }
    }

    const ID: (&str, &str) = ("CNI_CONTAINERID", "abc");
    const IF: (&str, &str) = ("CNI_IFNAME", "eth0");
    const NS: (&str, &str) = ("CNI_NETNS", "/proc/self/ns/net");

    #[test]
    fn reads_every_command_and_refuses_others() {
        assert_eq!(run(&[("CNI_COMMAND", "GC")]).unwrap(), Invocation::Gc);
        assert_eq!(
            run(&[("CNI_COMMAND", "STATUS")]).unwrap(),
            Invocation::Status
        );
        assert_eq!(
            run(&[("CNI_COMMAND", "VERSION")]).unwrap(),
            Invocation::Version
        );
        assert_eq!(invalid_var(run(&[("CNI_COMMAND", "add")])), "CNI_COMMAND");
        assert_eq!(invalid_var(run(&[])), "CNI_COMMAND");
    }

    #[test]
    fn add_needs_container_id_ifname_and_an_existing_netns() {
        let add = ("CNI_COMMAND", "ADD");
        let Invocation::Add(a) = run(&[add, ID, IF, NS]).unwrap() else {
            panic!("not an ADD")
        };
        assert_eq!(
            (a.container_id.as_str(), a.ifname.as_str()),
            ("abc", "eth0")
        );
        assert_eq!(invalid_var(run(&[add, IF, NS])), "CNI_CONTAINERID");
        assert_eq!(invalid_var(run(&[add, ID, NS])), "CNI_IFNAME");
        assert_eq!(invalid_var(run(&[add, ID, IF])), "CNI_NETNS");
        let gone = ("CNI_NETNS", "/run/netns/surely-not-here");
        assert_eq!(
            invalid_var(run(&[("CNI_COMMAND", "CHECK"), ID, IF, gone])),
            "CNI_NETNS"
        );
        let not_ns = ("CNI_NETNS", "/proc/self/status");
        assert_eq!(invalid_var(run(&[add, ID, IF, not_ns])), "CNI_NETNS");
        let relative = ("CNI_NETNS", "netns/x");
        assert_eq!(invalid_var(run(&[add, ID, IF, relative])), "CNI_NETNS");
    }

    #[test]
    fn del_takes_a_missing_or_vanished_netns() {
        let del = ("CNI_COMMAND", "DEL");
        assert!(matches!(run(&[del, ID, IF]).unwrap(), Invocation::Del(a) if a.netns.is_none()));
        let gone = ("CNI_NETNS", "/run/netns/surely-not-here");
        assert!(run(&[del, ID, IF, gone]).is_ok());
        assert_eq!(invalid_var(run(&[del, IF])), "CNI_CONTAINERID");
    }

    #[test]
    fn refuses_bad_ids_and_interface_names() {
        let with = |id: &str, ifname: &str| {
            run(&[
                ("CNI_COMMAND", "DEL"),
                ("CNI_CONTAINERID", id),
                ("CNI_IFNAME", ifname),
            ])
        };
        assert_eq!(invalid_var(with("-abc", "eth0")), "CNI_CONTAINERID");
        assert_eq!(invalid_var(with("a/b", "eth0")), "CNI_CONTAINERID");
        assert_eq!(invalid_var(with("abc", "eth0/x")), "CNI_IFNAME");
        assert_eq!(invalid_var(with("abc", "a-very-long-name0")), "CNI_IFNAME");
        assert_eq!(invalid_var(with("abc", "..")), "CNI_IFNAME");
        assert!(with("a_b.c-1", "net1").is_ok());
    }
}
