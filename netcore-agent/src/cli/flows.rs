//! `netcore status --flows`: each local pod's traffic over the last minute, its top
//! talkers and its drops by reason (a thin client: the agent summarises).

use std::path::Path;

use super::print_or_json;
use crate::{
    api::{client, Request},
    flows::{FlowSummary, Traffic},
};

pub async fn show(sock: &Path, pod: Option<String>, top: usize, json: bool) -> anyhow::Result<()> {
    let req = Request::Flows { pod, top };
    let summary: FlowSummary = client::call(sock, &req).await?;
    print_or_json(json, &summary, print)
}

fn print(s: &FlowSummary) {
    if !s.enabled {
        println!("flow accounting is off on this node (agent config: flows = true turns it on)");
        return;
    }
    println!(
        "traffic over the last {} s, most bytes first",
        s.window_secs
    );
    if s.pods.is_empty() {
        println!("  (no pod traffic)");
    }
    for p in &s.pods {
        let ip = p.ip.map(|a| a.to_string()).unwrap_or_default();
        println!(
            "{:<20} {:<16} sent {}  received {}",
            p.pod,
            ip,
            traffic(&p.sent),
            traffic(&p.received)
        );
        for (reason, packets) in &p.drops {
            println!("  dropped   {packets} packets  {reason}");
        }
        for t in &p.talkers {
            let name = t.name.as_deref().unwrap_or("-");
            let dropped = if t.dropped > 0 {
                format!("  dropped {}", t.dropped)
            } else {
                String::new()
            };
            println!(
                "  {:<16} {:<20} sent {}  received {}{dropped}",
                t.peer,
                name,
                traffic(&t.sent),
                traffic(&t.received)
            );
        }
    }
}

fn traffic(t: &Traffic) -> String {
    format!("{} pkts / {}", t.packets, bytes(t.bytes))
}

fn bytes(b: u64) -> String {
    match b {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}
