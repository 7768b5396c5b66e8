//! The request/response tool (`xtask rr-server`, `xtask rr-client`): one TCP
//! connection, one byte each way per transaction, as netperf's TCP_RR; the client
//! times every transaction. The bench pins both with `taskset` to the same CPU (the
//! last one): each transaction then costs the path's CPU work, not cross-CPU wake-ups.
//! Measured here: client and server on different CPUs gave p50 24 µs and p99 1.2 ms
//! over a bare veth (waking a halted vCPU is an IPI through the hypervisor); on one
//! CPU p50 17 µs and p99 37 µs, and three times the transactions.

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
    stats,
};

pub const PORT: u16 = 7007;
const WARMUP: u32 = 200;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RrResult {
    pub transactions: u64,
    pub transactions_per_s: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

/// Serves one connection: echoes every byte until the client closes; gives up when
/// no client comes within `timeout`.
pub fn server(port: u16, timeout: Duration) -> Result<()> {
    let listener =
        TcpListener::bind(("0.0.0.0", port)).with_context(|| format!("binding {port}"))?;
    listener.set_nonblocking(true)?;
    let start = Instant::now();
    let mut conn = loop {
        match listener.accept() {
            Ok((c, _)) => break c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e).context("accepting"),
        }
        if start.elapsed() > timeout {
            bail!("no client within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    conn.set_nonblocking(false)?;
    conn.set_nodelay(true)?;
    let mut b = [0u8; 1];
    loop {
        if conn.read(&mut b)? == 0 {
            return Ok(());
        }
        conn.write_all(&b)?;
    }
}

/// Runs transactions against `addr` for `seconds`.
pub fn client(addr: SocketAddr, seconds: f64) -> Result<RrResult> {
    let mut conn = connect(addr)?;
    conn.set_nodelay(true)?;
    for _ in 0..WARMUP {
        transaction(&mut conn)?;
    }
    let mut lat_us = Vec::with_capacity(1 << 20);
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < seconds {
        let t = Instant::now();
        transaction(&mut conn)?;
        lat_us.push(t.elapsed().as_nanos() as f64 / 1e3);
    }
    let elapsed = start.elapsed().as_secs_f64();
    Ok(RrResult {
        transactions: lat_us.len() as u64,
        transactions_per_s: lat_us.len() as f64 / elapsed,
        p50_us: stats::percentile(&lat_us, 50.0).context("no transactions")?,
        p99_us: stats::percentile(&lat_us, 99.0).context("no transactions")?,
    })
}

fn connect(addr: SocketAddr) -> Result<TcpStream> {
    let start = Instant::now();
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Ok(c) => return Ok(c),
            Err(e) if start.elapsed() > Duration::from_secs(5) => {
                return Err(e).with_context(|| format!("connecting to {addr}"))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn transaction(conn: &mut TcpStream) -> Result<()> {
    let mut b = [0x5au8; 1];
    conn.write_all(&b)?;
    conn.read_exact(&mut b).context("the server closed")?;
    Ok(())
}

/// This binary's path. The bench's own build step may have replaced the file it runs
/// from (the kernel then reports it as "PATH (deleted)"): the new one at PATH has the
/// same tool.
pub fn own_binary() -> Result<String> {
    let exe = std::env::current_exe().context("finding the xtask binary")?;
    let exe = exe.to_string_lossy();
    Ok(exe.strip_suffix(" (deleted)").unwrap_or(&exe).to_string())
}

/// Runs server and client for one target, both pinned to the last CPU.
pub fn measure(t: &Target, seconds: u32) -> Result<RrResult> {
    let exe = own_binary()?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpu = (cpus - 1).to_string();
    let (client_cpu, server_cpu) = (&cpu, &cpu);
    let port = PORT.to_string();
    let server_args = ["taskset", "-c", server_cpu, &exe, "rr-server", &port];
    let _server = Process::spawn(
        &mut cmd::in_ns(&t.server, &server_args),
        &format!("rr-server in {}", t.server),
    )?;
    let addr = format!("{}:{PORT}", t.server_ip);
    let secs = seconds.to_string();
    let client_args = [
        "taskset",
        "-c",
        client_cpu,
        &exe,
        "rr-client",
        &addr,
        "--seconds",
        &secs,
    ];
    let out = cmd::run(&mut cmd::in_ns(&t.client, &client_args))?;
    serde_json::from_str(&out).with_context(|| format!("rr-client printed {out}"))
}
