//! `netcore-cni`: the CNI plugin (spec 1.1; configs of 0.4.0 and 1.0.0 are accepted
//! too). A thin client of the agent: the runtime's environment and stdin become one
//! API request, the agent's reply becomes the spec's result or error on stdout.
//!
//! - `env`: the `CNI_*` variables; `config`: the network config on stdin;
//!   `version`: versions and the VERSION answer;
//! - `commands`: ADD, DEL, CHECK, STATUS, GC as agent requests;
//! - `types`, `result`: the spec's result types and ADD's result;
//! - `error`: errors and their spec codes; `install`: `netcore install-cni`.

pub mod commands;
pub mod config;
pub mod env;
pub mod error;
pub mod install;
pub mod result;
pub mod types;
pub mod version;

use std::{io::Read, process::ExitCode};

use commands::Output;
use env::Invocation;
use error::CniError;

/// What the plugin prints on stdout, and whether it succeeded.
#[derive(Debug)]
pub struct Reply {
    pub stdout: String,
    pub success: bool,
}

/// The plugin's entry point.
pub fn main() -> ExitCode {
    let mut stdin = Vec::new();
    let reply = match std::io::stdin().read_to_end(&mut stdin) {
        Ok(_) => run(&|k| std::env::var(k).ok(), &stdin),
        Err(source) => {
            let e = CniError::Io {
                what: "reading the network config from stdin",
                source,
            };
            failure(&e, version::LATEST)
        }
    };
    if !reply.stdout.is_empty() {
        println!("{}", reply.stdout);
    }
    if reply.success {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs one invocation: `env` looks up the `CNI_*` variables, `stdin` is the config.
pub fn run(env: &dyn Fn(&str) -> Option<String>, stdin: &[u8]) -> Reply {
    match execute(env, stdin) {
        Ok(Output::Nothing) => Reply {
            stdout: String::new(),
            success: true,
        },
        Ok(Output::Added(result)) => success_json(&result),
        Ok(Output::Version(answer)) => success_json(&answer),
        Err(e) => failure(&e, version::for_errors(stdin)),
    }
}

fn execute(env: &dyn Fn(&str) -> Option<String>, stdin: &[u8]) -> Result<Output, CniError> {
    let inv = env::invocation(env)?;
    if inv == Invocation::Version {
        return version::answer(stdin).map(Output::Version);
    }
    let conf = config::parse(stdin)?;
    if conf.version < inv.min_version() {
        return Err(CniError::CommandTooNew {
            command: inv.name(),
            need: inv.min_version(),
            have: conf.version,
        });
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| CniError::Io {
            what: "starting the plugin's event loop",
            source,
        })?;
    rt.block_on(commands::run(inv, &conf))
}

fn success_json<T: serde::Serialize>(v: &T) -> Reply {
    Reply {
        stdout: serde_json::to_string(v).expect("results serialize"),
        success: true,
    }
}

fn failure(e: &CniError, cni_version: &str) -> Reply {
    Reply {
        stdout: serde_json::to_string(&e.to_result(cni_version)).expect("errors serialize"),
        success: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_with(pairs: &[(&str, &str)], stdin: &str) -> (serde_json::Value, bool) {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let env = move |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let reply = run(&env, stdin.as_bytes());
        let json = serde_json::from_str(&reply.stdout).unwrap_or(serde_json::Value::Null);
        (json, reply.success)
    }

    const CONF: &str = r#"{"cniVersion":"1.0.0","name":"nc","type":"netcore-cni","socket":"/nonexistent/nc.sock"}"#;

    #[test]
    fn version_needs_no_config_and_no_agent() {
        let (json, ok) = run_with(&[("CNI_COMMAND", "VERSION")], r#"{"cniVersion":"1.0.0"}"#);
        assert!(ok);
        assert_eq!(json["cniVersion"], "1.0.0");
        assert_eq!(
            json["supportedVersions"],
            serde_json::json!(version::SUPPORTED)
        );
    }

    #[test]
    fn status_and_gc_need_a_1_1_config() {
        for cmd in ["STATUS", "GC"] {
            let (json, ok) = run_with(&[("CNI_COMMAND", cmd)], CONF);
            assert!(!ok);
            assert_eq!(json["code"], 1, "{cmd}: {json}");
            assert_eq!(json["cniVersion"], "1.0.0");
        }
    }

    #[test]
    fn an_absent_agent_is_try_again_later_and_not_available_for_status() {
        let del = [
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "eth0"),
        ];
        let (json, ok) = run_with(&del, CONF);
        assert!(!ok);
        assert_eq!(json["code"], 11, "{json}");
        let conf11 = CONF.replace("1.0.0", "1.1.0");
        let (json, _) = run_with(&[("CNI_COMMAND", "STATUS")], &conf11);
        assert_eq!(json["code"], 50, "{json}");
    }

    #[test]
    fn bad_input_gives_spec_errors_not_panics() {
        let (json, ok) = run_with(&[("CNI_COMMAND", "STATUS")], "{broken");
        assert!(!ok);
        assert_eq!(json["code"], 6);
        let (json, _) = run_with(&[], CONF);
        assert_eq!(json["code"], 4);
        let (json, _) = run_with(&[("CNI_COMMAND", "DEL")], "\u{0}\u{1}");
        assert_eq!(json["code"], 4, "env is checked before the config: {json}");
    }
}
