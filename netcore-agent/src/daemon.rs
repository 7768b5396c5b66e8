//! `netcore agent`: discover the node, lease its subnet, bring it up, then serve the
//! API and run the control loop until told to stop.

use std::{path::Path, sync::Arc, time::Duration};

use anyhow::{bail, Context};
use tokio::sync::{mpsc, Mutex};
use tracing::warn;

use crate::{
    agent::{Agent, Identity, Subnets},
    api::server,
    config::AgentConfig,
    control::{lease, sync::Sync, unix_now, ControlHandle, StoreHealth},
    metrics,
    store::{Store, StoreUrl},
};

/// How long start-up waits for the store before falling back to the last subnet.
const LEASE_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn run(config: &Path, bpf_log: bool) -> anyhow::Result<()> {
    let mut cfg = AgentConfig::load(config)?;
    cfg.bpf_log |= bpf_log;
    let listener = server::bind(&cfg.api_socket)?;
    let socket = cfg.api_socket.clone();
    let result = serve(cfg, listener).await;
    let _ = std::fs::remove_file(&socket);
    result
}

/// Everything after the API socket is bound (which `run` removes whatever happens).
async fn serve(cfg: AgentConfig, listener: tokio::net::UnixListener) -> anyhow::Result<()> {
    let ready: metrics::Ready = Default::default();
    if let Some(addr) = cfg.metrics_addr()? {
        tokio::spawn(metrics::serve(metrics::bind(addr).await?, ready.clone()));
    }
    let id = Identity::discover(&cfg).await.context("reading the node")?;
    let url = cfg.store_url()?;
    let (net, control_parts) = match Store::open(&url, &cfg.etcd_security())? {
        None => (static_subnets(&cfg)?, None),
        Some(mut store) => {
            let (net, lease, held) = lease_subnet(&mut store, &cfg, &id).await?;
            (net, Some((store, lease, held)))
        }
    };
    let mut cfg = cfg;
    if let Some((_, lease, _)) = &control_parts {
        // Every node of the cluster uses the network config's VNI and port.
        (cfg.vni, cfg.vxlan_port) = (lease.vni, lease.port);
    }
    let agent = Agent::start(cfg.clone(), id, net)
        .await
        .context("starting the node")?;
    let mut agent = agent;
    let events = agent.take_events();
    tokio::spawn(crate::flows::sample_forever(agent.flows()));
    let agent = Arc::new(Mutex::new(agent));
    tokio::spawn(learn_peer_macs(agent.clone()));
    let hub = crate::monitor::Hub::default();
    if let Some(ring) = events {
        tokio::spawn(crate::monitor::run(ring, hub.clone(), agent.clone()));
    }
    let control = match control_parts {
        Some((store, lease, held)) => {
            Some(start_control(store, lease, held, &cfg, &url, agent.clone()).await)
        }
        None => None,
    };
    let _ = ready.set(agent.clone());
    tracing::info!(socket = %cfg.api_socket.display(), "serving the API");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let (stop_tx, mut stop_rx) = mpsc::channel::<()>(1);
    let served = agent.clone();
    tokio::select! {
        _ = server::serve(listener, served, control, stop_tx, hub) => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        _ = stop_rx.recv() => tracing::info!("left the cluster"),
    }
    if let Err(e) = agent.lock().await.stop_watching() {
        warn!("turning the monitor's events off: {e}");
    }
    tracing::info!("agent stopped; the data path keeps running");
    Ok(())
}

/// How often the MACs of directly routed peers are looked for.
const LEARN_EVERY: Duration = Duration::from_secs(1);

/// Keeps the uplink MACs of directly routed peers learned and pinned.
async fn learn_peer_macs(agent: Arc<Mutex<Agent>>) {
    let mut last_error = String::new();
    loop {
        if let Err(e) = agent.lock().await.learn_peer_macs().await {
            let e = e.to_string();
            if e != last_error {
                warn!("learning direct peers' MACs: {e}");
                last_error = e;
            }
        }
        tokio::time::sleep(LEARN_EVERY).await;
    }
}

fn static_subnets(cfg: &AgentConfig) -> anyhow::Result<Subnets> {
    let Some(pod_cidr) = cfg.pod_cidr else {
        bail!("pod_cidr is required without a cluster store")
    };
    Ok(Subnets {
        pod_cidr,
        cluster_cidr: cfg.cluster_cidr,
        backend: cfg.node_backend(),
    })
}

/// Leases the subnet. While the store cannot be reached, a restarted node carries on
/// with the subnet it had; a new node waits for the store (and is not ready). A store
/// that answers with something wrong (bad network config, subnet taken) stops start-up.
async fn lease_subnet(
    store: &mut Store,
    cfg: &AgentConfig,
    id: &Identity,
) -> anyhow::Result<(Subnets, lease::OwnLease, bool)> {
    let previous = id.state.pod_cidr;
    let mut backoff = Duration::from_millis(500);
    loop {
        let got = tokio::time::timeout(
            LEASE_TIMEOUT,
            lease::acquire(store, cfg, id.node_ip, id.state.vtep_mac, previous),
        )
        .await;
        let err = match got {
            Ok(Ok(l)) => {
                return Ok((
                    Subnets {
                        pod_cidr: l.subnet,
                        cluster_cidr: l.network,
                        backend: l.backend,
                    },
                    l,
                    true,
                ))
            }
            Ok(Err(lease::LeaseError::Store(e))) => e.to_string(),
            Ok(Err(e)) => bail!(
                "cannot lease a subnet from the cluster store {}: {e}",
                cfg.store
            ),
            Err(_) => format!("no answer within {LEASE_TIMEOUT:?}"),
        };
        if let Some(pod_cidr) = previous {
            warn!("cannot reach the cluster store ({err}); keeping {pod_cidr} and retrying in the background");
            let own = remembered(cfg, id, pod_cidr);
            return Ok((
                Subnets {
                    pod_cidr,
                    cluster_cidr: own.network,
                    backend: own.backend,
                },
                own,
                false,
            ));
        }
        warn!(
            "waiting for the cluster store {} to lease a subnet: {err}",
            cfg.store
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// The lease this node held before (with the backend it last ran), to be renewed
/// once the store answers.
fn remembered(cfg: &AgentConfig, id: &Identity, pod_cidr: ipnet::Ipv4Net) -> lease::OwnLease {
    let backend = id
        .state
        .backend
        .as_deref()
        .and_then(crate::backend::Backend::from_name)
        .unwrap_or_else(|| cfg.node_backend());
    let value =
        crate::store::flannel::LeaseValue::of(backend, id.node_ip, cfg.vni, id.state.vtep_mac);
    lease::OwnLease {
        key: crate::store::flannel::subnet_key(&cfg.store_prefix, pod_cidr),
        subnet: pod_cidr,
        network: id.state.cluster_cidr.unwrap_or(cfg.cluster_cidr),
        value,
        ttl: cfg.lease_ttl(),
        backend,
        vni: cfg.vni,
        port: cfg.vxlan_port,
    }
}

async fn start_control(
    store: Store,
    lease: lease::OwnLease,
    held: bool,
    cfg: &AgentConfig,
    url: &StoreUrl,
    agent: Arc<Mutex<Agent>>,
) -> ControlHandle {
    let health = Arc::new(std::sync::Mutex::new(StoreHealth {
        backend: store.backend().into(),
        url: format!("{url:?}"),
        connected: true,
        since: unix_now(),
        last_error: None,
        lease_key: lease.key.clone(),
        lease_held: held,
    }));
    agent.lock().await.set_store_health(health.clone());
    let (tx, rx) = mpsc::channel(8);
    let sync = Sync::new(
        store,
        lease,
        cfg.store_prefix.clone(),
        agent.clone(),
        health,
    );
    agent.lock().await.set_store_nudge(sync.nudge());
    tokio::spawn(sync.run(rx));
    ControlHandle { requests: tx }
}
