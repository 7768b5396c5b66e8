//! Prometheus metrics and health endpoints on a local address: `/metrics`,
//! `/healthz` (the process serves) and `/readyz` (programs attached and, with a
//! cluster store, the subnet lease held). Served by axum (HTTP/1.1: keep-alive, HEAD),
//! the exposition written by the Prometheus project's client library: OpenMetrics for
//! scrapers that ask for it, the classic text format for the others.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    extract::State,
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::{Registry, Unit},
};
use tokio::{
    net::TcpListener,
    sync::{Mutex, OnceCell},
};

use crate::{agent::Agent, api::Status, flows::FlowSummary};

/// The agent, once it is ready.
pub type Ready = Arc<OnceCell<Arc<Mutex<Agent>>>>;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding the metrics address {addr}: {e}"))
}

pub async fn serve(listener: TcpListener, ready: Ready) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .fallback(|| async { (StatusCode::NOT_FOUND, "try /metrics, /healthz or /readyz\n") })
        .with_state(ready);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::warn!("the metrics server stopped: {e}");
    }
}

async fn readyz(State(ready): State<Ready>) -> (StatusCode, &'static str) {
    match ready.get() {
        Some(agent) if agent.lock().await.ready() => (StatusCode::OK, "ready\n"),
        Some(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: this node does not hold its subnet lease\n",
        ),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: programs or lease not in place yet\n",
        ),
    }
}

/// OpenMetrics when the scraper accepts it, else the classic text format (the same
/// families, without OpenMetrics' `# EOF`).
async fn metrics(State(ready): State<Ready>, headers: HeaderMap) -> Response {
    let snapshot = match ready.get() {
        Some(agent) => {
            let (status, flows) = {
                let a = agent.lock().await;
                (a.status(), a.flow_source())
            };
            Some((status, crate::flows::summary_of(flows, None, TALKERS).await))
        }
        None => None,
    };
    let body = render(snapshot.as_ref().map(|(s, f)| (s, f)));
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    if openmetrics {
        ([(header::CONTENT_TYPE, OPENMETRICS)], body).into_response()
    } else {
        let text = body.trim_end_matches("# EOF\n").to_string();
        ([(header::CONTENT_TYPE, TEXT)], text).into_response()
    }
}

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Talkers per pod in the metrics (each is a label set).
const TALKERS: usize = 3;

/// The OpenMetrics exposition of a status snapshot and flow summary (of nothing yet:
/// not ready).
pub fn render(s: Option<(&Status, &FlowSummary)>) -> String {
    let mut reg = Registry::with_prefix("netcore");
    let ready = Gauge::<i64>::default();
    ready.set(s.is_some() as i64);
    reg.register(
        "ready",
        "1 when programs are attached and the node is up",
        ready,
    );
    if let Some((s, flows)) = s {
        let sub = reg.sub_registry_with_label(("node".into(), s.node.clone().into()));
        datapath(sub, s);
        node(sub, s);
        services(sub, s);
        pod_flows(sub, flows);
    }
    let mut out = String::new();
    encode(&mut out, &reg).expect("writing to a String cannot fail");
    out
}

fn datapath(reg: &mut Registry, s: &Status) {
    let packets = Family::<Labels, Counter>::default();
    let bytes = Family::<Labels, Counter>::default();
    let lost = Counter::<u64>::default();
    for c in &s.counters {
        if c.reason == "monitor-events-lost" {
            lost.inc_by(c.packets);
            continue;
        }
        let l = labels(&[("reason", &c.reason), ("drop", &c.drop.to_string())]);
        packets.get_or_create(&l).inc_by(c.packets);
        bytes.get_or_create(&l).inc_by(c.bytes);
    }
    reg.register(
        "datapath_packets",
        "Packets by data-path outcome (reason)",
        packets,
    );
    reg.register_with_unit(
        "datapath",
        "Bytes by data-path outcome (reason)",
        Unit::Bytes,
        bytes,
    );
    reg.register(
        "monitor_events_lost",
        "Monitor events the ring buffer had no room for",
        lost,
    );
    let attached = Family::<Labels, Gauge>::default();
    for a in &s.programs {
        let l = labels(&[
            ("program", &a.program),
            ("interface", &a.interface),
            ("direction", &a.direction),
        ]);
        attached.get_or_create(&l).set(1);
    }
    reg.register(
        "program_attached",
        "Programs attached, by interface",
        attached,
    );
}

fn node(reg: &mut Registry, s: &Status) {
    let gauge = |v: usize| {
        let g = Gauge::<i64>::default();
        g.set(v as i64);
        g
    };
    reg.register("pods", "Pods on this node", gauge(s.pods.len()));
    reg.register(
        "pod_ips_free",
        "Pod addresses left",
        gauge(s.ips_total - s.ips_in_use),
    );
    let remote = Family::<Labels, Gauge>::default();
    for src in ["static", "store"] {
        let n = s.nodes.iter().filter(|n| n.source == src).count();
        remote
            .get_or_create(&labels(&[("source", src)]))
            .set(n as i64);
    }
    reg.register("remote_nodes", "Remote nodes known, by source", remote);
    let routes = Family::<Labels, Gauge>::default();
    for n in &s.nodes {
        let kind = serde_json::to_value(n.route).ok();
        let kind = kind.as_ref().and_then(|k| k.as_str()).unwrap_or("unknown");
        routes.get_or_create(&labels(&[("route", kind)])).inc();
    }
    reg.register("remote_node_routes", "Remote nodes by route kind", routes);
    let entries = Family::<Labels, Gauge>::default();
    let pods_in = s.pods.iter().filter(|p| p.in_map).count();
    entries
        .get_or_create(&labels(&[("map", "endpoints")]))
        .set(pods_in as i64);
    let nodes_in = s.nodes.iter().filter(|n| n.in_map).count();
    entries
        .get_or_create(&labels(&[("map", "nodes")]))
        .set(nodes_in as i64);
    reg.register("map_entries", "Entries in the data-path maps", entries);
    let watchers = Family::<Labels, Gauge>::default();
    watchers
        .get_or_create(&labels(&[("kind", "drops")]))
        .set(s.monitor.drops as i64);
    watchers
        .get_or_create(&labels(&[("kind", "trace")]))
        .set(s.monitor.trace as i64);
    reg.register("monitor_watchers", "Clients of netcore monitor", watchers);
    if let Some(h) = &s.store {
        let connected = Family::<Labels, Gauge>::default();
        connected
            .get_or_create(&labels(&[("backend", &h.backend)]))
            .set(h.connected as i64);
        reg.register(
            "store_connected",
            "1 while the cluster store answers",
            connected,
        );
    }
}

fn services(reg: &mut Registry, s: &Status) {
    let families: [(&str, &str, Family<Labels, Counter>); 4] = [
        (
            "service_packets",
            "Packets to each service",
            Default::default(),
        ),
        ("service_bytes", "Bytes to each service", Default::default()),
        (
            "service_connections",
            "Connections balanced by each service",
            Default::default(),
        ),
        (
            "service_rejected",
            "Connections each service refused",
            Default::default(),
        ),
    ];
    for v in &s.services {
        let l = labels(&[("service", &v.spec.name)]);
        let values = [v.packets, v.bytes, v.connections, v.rejected];
        for ((_, _, f), value) in families.iter().zip(values) {
            f.get_or_create(&l).inc_by(value);
        }
    }
    for (name, help, family) in families {
        reg.register(name, help, family);
    }
}

/// Each pod's last minute (gauges: the window slides), and its top talkers' bytes.
fn pod_flows(reg: &mut Registry, f: &FlowSummary) {
    let packets = Family::<Labels, Gauge>::default();
    let bytes = Family::<Labels, Gauge>::default();
    let drops = Family::<Labels, Gauge>::default();
    let talkers = Family::<Labels, Gauge>::default();
    let set = |fam: &Family<Labels, Gauge>, l: &[(&str, &str)], v: u64| {
        fam.get_or_create(&labels(l)).set(v as i64);
    };
    for p in &f.pods {
        let pod = p.pod.as_str();
        for (dir, t) in [("sent", &p.sent), ("received", &p.received)] {
            set(&packets, &[("pod", pod), ("direction", dir)], t.packets);
            set(&bytes, &[("pod", pod), ("direction", dir)], t.bytes);
        }
        for (reason, n) in &p.drops {
            set(&drops, &[("pod", pod), ("reason", reason)], *n);
        }
        for t in &p.talkers {
            let peer = t.peer.to_string();
            let name = t.name.as_deref().unwrap_or("");
            for (dir, v) in [("sent", t.sent.bytes), ("received", t.received.bytes)] {
                set(
                    &talkers,
                    &[
                        ("pod", pod),
                        ("peer", &peer),
                        ("peer_name", name),
                        ("direction", dir),
                    ],
                    v,
                );
            }
        }
    }
    let window = Gauge::<i64>::default();
    window.set(f.window_secs as i64);
    reg.register_with_unit(
        "flow_window",
        "Seconds the pod flow figures cover (about a minute)",
        Unit::Seconds,
        window,
    );
    reg.register(
        "pod_packets",
        "Packets each local pod sent and received over the last minute",
        packets,
    );
    reg.register_with_unit(
        "pod",
        "Bytes each local pod sent and received over the last minute",
        Unit::Bytes,
        bytes,
    );
    reg.register(
        "pod_drops",
        "Packets from or to each local pod dropped over the last minute, by reason",
        drops,
    );
    reg.register_with_unit(
        "pod_talker",
        "Bytes between each local pod and its top talkers over the last minute",
        Unit::Bytes,
        talkers,
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn not_ready_is_one_family() {
        let text = super::render(None);
        assert!(text.contains("# TYPE netcore_ready gauge"), "{text}");
        assert!(text.contains("netcore_ready 0"), "{text}");
        assert!(
            text.ends_with("# EOF\n"),
            "OpenMetrics ends with EOF: {text}"
        );
    }
}
