//! Spec versions: which this plugin speaks, parsing a config's `cniVersion`, what each
//! command needs, and the VERSION command's answer.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::error::CniError;

/// Every version this plugin accepts, oldest first.
pub const SUPPORTED: [&str; 3] = ["0.4.0", "1.0.0", "1.1.0"];
/// The version this plugin implements, for answers given before any config is read.
pub const LATEST: &str = "1.1.0";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    V0_4_0,
    V1_0_0,
    V1_1_0,
}

impl Version {
    pub fn parse(s: &str) -> Result<Self, CniError> {
        match s {
            "0.4.0" => Ok(Version::V0_4_0),
            "1.0.0" => Ok(Version::V1_0_0),
            "1.1.0" => Ok(Version::V1_1_0),
            other => Err(CniError::IncompatibleVersion(other.to_string())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Version::V0_4_0 => "0.4.0",
            Version::V1_0_0 => "1.0.0",
            Version::V1_1_0 => "1.1.0",
        }
    }

    /// Results before 1.0.0 name each IP's family (`"version": "4"`).
    pub fn ips_have_family(self) -> bool {
        self < Version::V1_0_0
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The VERSION command's answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VersionResult {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    #[serde(rename = "supportedVersions")]
    pub supported_versions: Vec<String>,
}

#[derive(Deserialize)]
struct VersionOnly {
    #[serde(rename = "cniVersion")]
    cni_version: Option<String>,
}

/// VERSION: echoes the runtime's `cniVersion` (ours when stdin is empty) and lists
/// what this plugin supports, also when the runtime's version is not among them.
pub fn answer(stdin: &[u8]) -> Result<VersionResult, CniError> {
    let asked = if stdin.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        serde_json::from_slice::<VersionOnly>(stdin)
            .map_err(CniError::Decode)?
            .cni_version
    };
    Ok(VersionResult {
        cni_version: asked.unwrap_or_else(|| LATEST.to_string()),
        supported_versions: SUPPORTED.iter().map(|v| v.to_string()).collect(),
    })
}

/// The version to write into an error result: the config's when it is one this
/// plugin speaks, else the latest.
pub fn for_errors(stdin: &[u8]) -> &'static str {
    serde_json::from_slice::<VersionOnly>(stdin)
        .ok()
        .and_then(|v| v.cni_version)
        .and_then(|v| Version::parse(&v).ok())
        .map_or(LATEST, Version::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_supported_versions_and_refuses_others() {
        for v in SUPPORTED {
            assert_eq!(Version::parse(v).unwrap().as_str(), v);
        }
        for bad in ["0.3.1", "1.2.0", "", "1.0"] {
            assert_eq!(Version::parse(bad).unwrap_err().code(), 1, "{bad:?}");
        }
        assert!(Version::V0_4_0 < Version::V1_0_0 && Version::V1_0_0 < Version::V1_1_0);
    }

    #[test]
    fn version_answer_echoes_the_runtime_version() {
        let a = answer(br#"{"cniVersion":"0.3.1"}"#).unwrap();
        assert_eq!(a.cni_version, "0.3.1");
        assert_eq!(a.supported_versions, SUPPORTED);
        assert_eq!(answer(b"").unwrap().cni_version, LATEST);
        assert_eq!(answer(b"{nope").unwrap_err().code(), 6);
    }

    #[test]
    fn errors_use_the_config_version_when_it_is_known() {
        assert_eq!(for_errors(br#"{"cniVersion":"0.4.0"}"#), "0.4.0");
        assert_eq!(for_errors(br#"{"cniVersion":"7.0.0"}"#), LATEST);
        assert_eq!(for_errors(b"garbage"), LATEST);
    }
}
