//! `netcore policy`, `netcore namespace` and label changes: thin clients of the
//! agent's API (the agent parses and validates the policies).

use std::{collections::BTreeMap, io::Read, path::Path, path::PathBuf};

use anyhow::{bail, Context};
use clap::Subcommand;

use super::print_or_json;
use crate::{
    agent::{LabelChange, NamespaceInfo, PolicyInfo},
    api::{client, Request},
};

#[derive(Subcommand)]
pub enum PolicyCmd {
    /// Add or replace the NetworkPolicy objects in FILE (YAML or JSON, several
    /// documents or a List; "-" reads stdin). All or none are applied.
    Apply {
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
    },
    /// Policies with the pods they select here and the flows they allowed here.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Delete the policy NAMESPACE/NAME (NAME alone: in "default").
    Del { name: String },
}

#[derive(Subcommand)]
pub enum NamespaceCmd {
    /// Change a namespace's labels: KEY=VALUE sets, KEY- removes.
    Label {
        name: String,
        #[arg(required = true)]
        changes: Vec<String>,
    },
    /// Namespaces and their labels.
    List {
        #[arg(long)]
        json: bool,
    },
}

/// `KEY=VALUE` for `--label`.
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.into(), v.into())),
        _ => Err(format!("{s:?}: expected KEY=VALUE")),
    }
}

/// `KEY=VALUE` sets, `KEY-` removes.
pub fn parse_changes(args: &[String]) -> anyhow::Result<LabelChange> {
    let mut change = LabelChange::default();
    for a in args {
        if let Some(key) = a.strip_suffix('-').filter(|k| !k.contains('=')) {
            change.remove.push(key.into());
        } else {
            let (k, v) = parse_label(a).map_err(|e| anyhow::anyhow!("{e} or KEY- to remove"))?;
            change.set.insert(k, v);
        }
    }
    Ok(change)
}

pub fn labels_text(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "-".into();
    }
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

pub async fn policy_cmd(sock: &Path, cmd: PolicyCmd) -> anyhow::Result<()> {
    match cmd {
        PolicyCmd::Apply { file } => {
            let mut text = String::new();
            if file.as_os_str() == "-" {
                std::io::stdin()
                    .read_to_string(&mut text)
                    .context("reading stdin")?;
            } else {
                text = std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?;
            }
            let keys: Vec<String> = client::call(sock, &Request::PolicyApply { text }).await?;
            for k in keys {
                println!("networkpolicy {k} applied");
            }
            Ok(())
        }
        PolicyCmd::List { json } => {
            let list: Vec<PolicyInfo> = client::call(sock, &Request::PolicyList).await?;
            print_or_json(json, &list, |l| print_policies(l))
        }
        PolicyCmd::Del { name } => {
            let key = if name.contains('/') {
                name
            } else {
                format!("default/{name}")
            };
            if key.split('/').count() != 2 {
                bail!("{key:?}: expected NAMESPACE/NAME");
            }
            let existed: bool =
                client::call(sock, &Request::PolicyDel { key: key.clone() }).await?;
            println!(
                "networkpolicy {key} {}",
                if existed { "deleted" } else { "does not exist" }
            );
            Ok(())
        }
    }
}

pub async fn namespace_cmd(sock: &Path, cmd: NamespaceCmd) -> anyhow::Result<()> {
    match cmd {
        NamespaceCmd::Label { name, changes } => {
            let change = parse_changes(&changes)?;
            let ns: NamespaceInfo =
                client::call(sock, &Request::NamespaceLabel { name, change }).await?;
            println!("namespace {} labels {}", ns.name, labels_text(&ns.labels));
            Ok(())
        }
        NamespaceCmd::List { json } => {
            let list: Vec<NamespaceInfo> = client::call(sock, &Request::NamespaceList).await?;
            print_or_json(json, &list, |l| {
                println!("{:<24} LABELS", "NAMESPACE");
                for ns in l {
                    println!("{:<24} {}", ns.name, labels_text(&ns.labels));
                }
            })
        }
    }
}

fn print_policies(list: &[PolicyInfo]) {
    println!("{:<32} {:<16} {:>10}  PODS HERE", "POLICY", "TYPES", "HITS");
    for p in list {
        let pods = if p.pods.is_empty() {
            "-".to_string()
        } else {
            p.pods.join(",")
        };
        println!(
            "{:<32} {:<16} {:>10}  {}",
            format!("{}/{}", p.namespace, p.name),
            p.policy_types.join(","),
            p.hits,
            pods
        );
    }
}
