//! The plugin's errors and the spec's error result (`code`, `msg`, `details`), with
//! the spec's well-known codes and netcore's own (100 and up).

use std::path::PathBuf;

use serde::Serialize;

use super::version::{self, Version};

/// Plugin-specific codes (the spec leaves 100 and up to plugins).
pub const CODE_AGENT_REFUSED: u32 = 100;
pub const CODE_CHECK_FAILED: u32 = 101;
pub const CODE_BAD_REPLY: u32 = 102;

#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error("incompatible CNI version {0:?}")]
    IncompatibleVersion(String),
    #[error("{command} needs cniVersion {need} or later; the config has {have}")]
    CommandTooNew {
        command: &'static str,
        need: Version,
        have: Version,
    },
    #[error("invalid environment variable {var}: {reason}")]
    InvalidEnv { var: &'static str, reason: String },
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("the network config is not valid JSON: {0}")]
    Decode(serde_json::Error),
    #[error("invalid network config: {0}")]
    InvalidConfig(String),
    #[error("cannot reach the netcore agent at {socket}: {reason}")]
    AgentUnreachable { socket: PathBuf, reason: String },
    #[error("the netcore agent at {socket} is not available: {reason}")]
    NotAvailable { socket: PathBuf, reason: String },
    #[error("the netcore agent refused {op}: {message}")]
    AgentRefused { op: &'static str, message: String },
    #[error("the attachment of container {container_id} as {ifname} is not as ADD made it: {}", problems.join("; "))]
    CheckFailed {
        container_id: String,
        ifname: String,
        problems: Vec<String>,
    },
    #[error("the netcore agent sent a reply this plugin does not understand: {0}")]
    BadReply(String),
}

impl CniError {
    pub fn code(&self) -> u32 {
        match self {
            CniError::IncompatibleVersion(_) | CniError::CommandTooNew { .. } => 1,
            CniError::InvalidEnv { .. } => 4,
            CniError::Io { .. } => 5,
            CniError::Decode(_) => 6,
            CniError::InvalidConfig(_) => 7,
            CniError::AgentUnreachable { .. } => 11,
            CniError::NotAvailable { .. } => 50,
            CniError::AgentRefused { .. } => CODE_AGENT_REFUSED,
            CniError::CheckFailed { .. } => CODE_CHECK_FAILED,
            CniError::BadReply(_) => CODE_BAD_REPLY,
        }
    }

    /// The spec's short description of the code.
    fn summary(&self) -> &'static str {
        match self.code() {
            1 => "Incompatible CNI version",
            4 => "Invalid necessary environment variables",
            5 => "I/O failure",
            6 => "Failed to decode content",
            7 => "Invalid network config",
            11 => "Try again later",
            50 => "The plugin is not available",
            CODE_AGENT_REFUSED => "The netcore agent refused the request",
            CODE_CHECK_FAILED => "The attachment is broken",
            _ => "Unexpected reply from the netcore agent",
        }
    }

    /// What the runtime could do about it, when there is something to say.
    fn hint(&self) -> Option<String> {
        match self {
            CniError::IncompatibleVersion(_) => Some(format!(
                "netcore-cni supports {}",
                version::SUPPORTED.join(", ")
            )),
            CniError::AgentUnreachable { .. } | CniError::NotAvailable { .. } => Some(
                "start `netcore agent` or point \"socket\" in the network config at its API socket"
                    .into(),
            ),
            _ => None,
        }
    }

    /// The spec's error result for this error.
    pub fn to_result(&self, cni_version: &str) -> ErrorResult {
        let mut details = self.to_string();
        if let Some(hint) = self.hint() {
            details = format!("{details} ({hint})");
        }
        let msg = match self {
            // The spec wants the names of invalid variables in the message.
            CniError::InvalidEnv { var, .. } => format!("{}: {var}", self.summary()),
            _ => self.summary().to_string(),
        };
        ErrorResult {
            cni_version: cni_version.to_string(),
            code: self.code(),
            msg,
            details,
        }
    }
}

/// The spec's error result.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ErrorResult {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    pub code: u32,
    pub msg: String,
    pub details: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_results_carry_the_spec_codes() {
        let env = CniError::InvalidEnv {
            var: "CNI_NETNS",
            reason: "not set".into(),
        };
        let r = env.to_result("1.0.0");
        assert_eq!((r.code, r.cni_version.as_str()), (4, "1.0.0"));
        assert!(r.msg.contains("CNI_NETNS"), "{r:?}");
        let down = CniError::AgentUnreachable {
            socket: "/run/x.sock".into(),
            reason: "No such file".into(),
        };
        assert_eq!(down.code(), 11);
        assert!(down.to_result("1.1.0").details.contains("/run/x.sock"));
        assert_eq!(CniError::InvalidConfig("x".into()).code(), 7);
        assert_eq!(CniError::IncompatibleVersion("9.9.9".into()).code(), 1);
        let json = serde_json::to_value(down.to_result("1.1.0")).unwrap();
        for key in ["cniVersion", "code", "msg", "details"] {
            assert!(json.get(key).is_some(), "{key} missing in {json}");
        }
    }
}
