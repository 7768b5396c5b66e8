//! Prometheus metrics and health endpoints on a local address: `/metrics`,
//! `/healthz` (the process serves) and `/readyz` (programs attached and, with a
//! cluster store, the subnet lease held). A tiny HTTP/1.0 responder: one request per
//! connection, GET only.

use std::{fmt::Write as _, net::SocketAddr, sync::Arc};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::{Mutex, OnceCell},
};

use crate::{agent::Agent, api::Status};

/// The agent, once it is ready.
pub type Ready = Arc<OnceCell<Arc<Mutex<Agent>>>>;

pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding the metrics address {addr}: {e}"))
}

pub async fn serve(listener: TcpListener, ready: Ready) {
    loop {
        if let Ok((stream, _)) = listener.accept().await {
            let ready = ready.clone();
            tokio::spawn(async move {
                let _ = respond(stream, ready).await;
            });
        }
    }
}

async fn respond(mut stream: TcpStream, ready: Ready) -> std::io::Result<()> {
    let request = read_head(&mut stream).await?;
    let path = request.split_whitespace().nth(1).unwrap_or("");
    let (code, body) = match (request.starts_with("GET "), path) {
        (false, _) => ("405 Method Not Allowed", "GET only\n".to_string()),
        (true, "/healthz") => ("200 OK", "ok\n".to_string()),
        (true, "/readyz") => match ready.get() {
            Some(agent) if agent.lock().await.ready() => ("200 OK", "ready\n".to_string()),
            Some(_) => (
                "503 Service Unavailable",
                "not ready: this node does not hold its subnet lease\n".to_string(),
            ),
            None => (
                "503 Service Unavailable",
                "not ready: programs or lease not in place yet\n".to_string(),
            ),
        },
        (true, "/metrics") => match ready.get() {
            Some(agent) => ("200 OK", render(&agent.lock().await.status())),
            None => ("200 OK", "netcore_ready 0\n".to_string()),
        },
        _ => (
            "404 Not Found",
            "try /metrics, /healthz or /readyz\n".to_string(),
        ),
    };
    let head = format!(
        "HTTP/1.0 {code}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

/// Reads a request head (up to the blank line, 4 KiB at most, 5 s at most).
async fn read_head(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 4096 {
        let n = match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(r) => r?,
            Err(_) => break,
        };
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// The Prometheus text exposition of a status snapshot.
pub fn render(s: &Status) -> String {
    let mut m = String::new();
    let node = &s.node;
    let mut metric = |name: &str, kind: &str, help: &str, samples: Vec<(String, u64)>| {
        let _ = writeln!(m, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in samples {
            let _ = writeln!(m, "{name}{{node=\"{node}\"{labels}}} {v}");
        }
    };
    metric(
        "netcore_ready",
        "gauge",
        "1 when programs are attached and the lease is held.",
        vec![(String::new(), 1)],
    );
    let by_reason = |f: fn(&crate::maps::counters::CounterValue) -> u64| {
        s.counters
            .iter()
            .map(|c| {
                (
                    format!(",reason=\"{}\",drop=\"{}\"", c.reason, c.drop),
                    f(c),
                )
            })
            .collect()
    };
    metric(
        "netcore_datapath_packets_total",
        "counter",
        "Packets by data-path outcome.",
        by_reason(|c| c.packets),
    );
    metric(
        "netcore_datapath_bytes_total",
        "counter",
        "Bytes by data-path outcome.",
        by_reason(|c| c.bytes),
    );
    metric(
        "netcore_pods",
        "gauge",
        "Pods on this node.",
        vec![(String::new(), s.pods.len() as u64)],
    );
    metric(
        "netcore_pod_ips_free",
        "gauge",
        "Pod addresses left.",
        vec![(String::new(), (s.ips_total - s.ips_in_use) as u64)],
    );
    let by_source = |src: &str| {
        (
            format!(",source=\"{src}\""),
            s.nodes.iter().filter(|n| n.source == src).count() as u64,
        )
    };
    metric(
        "netcore_remote_nodes",
        "gauge",
        "Remote nodes known, by source.",
        vec![by_source("static"), by_source("store")],
    );
    let in_map = s.nodes.iter().filter(|n| n.in_map).count() as u64;
    metric(
        "netcore_map_entries",
        "gauge",
        "Entries in the data-path maps.",
        vec![
            (
                ",map=\"endpoints\"".into(),
                s.pods.iter().filter(|p| p.in_map).count() as u64,
            ),
            (",map=\"nodes\"".into(), in_map),
        ],
    );
    let attached = s
        .programs
        .iter()
        .map(|a| {
            (
                format!(
                    ",program=\"{}\",interface=\"{}\",direction=\"{}\"",
                    a.program, a.interface, a.direction
                ),
                1,
            )
        })
        .collect();
    metric(
        "netcore_program_attached",
        "gauge",
        "Programs attached, by interface.",
        attached,
    );
    if let Some(h) = &s.store {
        metric(
            "netcore_store_connected",
            "gauge",
            "1 while the cluster store answers.",
            vec![(format!(",backend=\"{}\"", h.backend), h.connected as u64)],
        );
    }
    m
}
