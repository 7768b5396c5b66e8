//! The connection-rate tool (`xtask cps-server`, `xtask cps-client`): a new TCP
//! connection per transaction (connect, one byte each way, close), as netperf's
//! TCP_CRR; the server echoes every connection until the client closes. Both are
//! pinned to the same CPU like the request/response tool (see `rr`).

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::{
    cmd::{self, Process},
    datapaths::Target,
    rr,
};

/// The longest one connection may take before the run is reported as failed.
const CONN_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CpsResult {
    pub connections: u64,
    pub connections_per_s: f64,
}

/// Serves connections one after the other, echoing each until its client closes;
/// runs until killed.
pub fn server(port: u16) -> Result<()> {
    let listener =
        TcpListener::bind(("0.0.0.0", port)).with_context(|| format!("binding {port}"))?;
    loop {
        let (mut conn, _) = listener.accept().context("accepting")?;
        let _ = conn.set_nodelay(true);
        let _ = conn.set_read_timeout(Some(CONN_TIMEOUT));
        let mut b = [0u8; 1];
        while matches!(conn.read(&mut b), Ok(1)) {
            if conn.write_all(&b).is_err() {
                break;
            }
        }
    }
}

/// Opens, uses and closes connections to `addr` for `seconds`.
pub fn client(addr: SocketAddr, seconds: f64) -> Result<CpsResult> {
    wait_for_server(addr)?;
    let mut connections = 0u64;
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < seconds {
        one_connection(addr).with_context(|| format!("connection {}", connections + 1))?;
        connections += 1;
    }
    Ok(CpsResult {
        connections,
        connections_per_s: connections as f64 / start.elapsed().as_secs_f64(),
    })
}

fn wait_for_server(addr: SocketAddr) -> Result<()> {
    let start = Instant::now();
    loop {
        match one_connection(addr) {
            Ok(()) => return Ok(()),
            Err(e) if start.elapsed() > Duration::from_secs(5) => {
                return Err(e).with_context(|| format!("no server at {addr}"))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn one_connection(addr: SocketAddr) -> Result<()> {
    let mut conn = TcpStream::connect_timeout(&addr, CONN_TIMEOUT)
        .with_context(|| format!("connecting to {addr}"))?;
    conn.set_nodelay(true)?;
    conn.set_read_timeout(Some(CONN_TIMEOUT))?;
    let mut b = [0x5au8; 1];
    conn.write_all(&b)?;
    conn.read_exact(&mut b).context("no reply")?;
    Ok(())
}

/// Runs server and client for one target (to `t.server_ip`, the port `port` on both
/// ends), both pinned to the last CPU.
pub fn measure(t: &Target, port: u16, seconds: u32) -> Result<CpsResult> {
    let exe = rr::own_binary()?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpu = (cpus - 1).to_string();
    let port_s = port.to_string();
    let server_args = ["taskset", "-c", &cpu, &exe, "cps-server", &port_s];
    let mut server = Process::spawn(
        &mut cmd::in_ns(&t.server, &server_args),
        &format!("cps-server in {}", t.server),
    )?;
    let addr = format!("{}:{port}", t.server_ip);
    let secs = seconds.to_string();
    let client_args = [
        "taskset",
        "-c",
        &cpu,
        &exe,
        "cps-client",
        &addr,
        "--seconds",
        &secs,
    ];
    let out = cmd::run(&mut cmd::in_ns(&t.client, &client_args));
    server.check_alive()?;
    let out = out?;
    let r: CpsResult =
        serde_json::from_str(&out).with_context(|| format!("cps-client printed {out}"))?;
    if r.connections == 0 {
        bail!("no connection completed");
    }
    Ok(r)
}
