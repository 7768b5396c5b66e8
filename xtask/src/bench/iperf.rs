//! TCP throughput with iperf3: a one-shot server in the target's server namespace, the
//! client in its client namespace, the result read from the client's JSON, and the
//! CPU time the whole machine spent while it ran.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::{
    cmd::{self, Process},
    cpu,
    datapaths::Target,
    netstat,
};

const PORT: &str = "5201";

#[derive(Debug, Clone, PartialEq)]
pub struct Throughput {
    pub gbit_per_s: f64,
    /// Bytes the receiver got.
    pub bytes: u64,
    pub retransmits: u64,
    /// Segments the receiver reported back as duplicates (DSACK): retransmissions
    /// that were spurious.
    pub dsacks: u64,
    /// Segments the receiver queued out of order.
    pub out_of_order: u64,
    /// Mean size of what the server's interfaces received meanwhile (bytes/packet).
    pub rx_packet_bytes: f64,
}

/// One iperf3 run: throughput, and CPU seconds spent machine-wide during it.
pub fn run(t: &Target, streams: u32, seconds: u32, cc: &str) -> Result<(Throughput, f64)> {
    let mut server = Process::spawn(
        &mut cmd::in_ns(&t.server, &["iperf3", "-s", "-1", "-p", PORT]),
        &format!("iperf3 server in {}", t.server),
    )?;
    wait_listening(&t.server, &mut server)?;
    let (ip, streams, secs) = (
        t.server_ip.to_string(),
        streams.to_string(),
        seconds.to_string(),
    );
    let args = [
        "iperf3", "-c", &ip, "-p", PORT, "-P", &streams, "-t", &secs, "-C", cc, "-J",
    ];
    let (tx0, rx0) = (netstat::tcp_ext(&t.client)?, netstat::tcp_ext(&t.server)?);
    let dev0 = netstat::rx_totals(&t.server)?;
    let before = cpu::snapshot()?;
    let out = cmd::output(&mut cmd::in_ns(&t.client, &args))?;
    let after = cpu::snapshot()?;
    let json = String::from_utf8_lossy(&out.stdout);
    let mut result = parse(&json).with_context(|| format!("iperf3 to {ip} from {}", t.client))?;
    let (tx1, rx1) = (netstat::tcp_ext(&t.client)?, netstat::tcp_ext(&t.server)?);
    let dev1 = netstat::rx_totals(&t.server)?;
    let packets = dev1.1.saturating_sub(dev0.1).max(1);
    result.rx_packet_bytes = dev1.0.saturating_sub(dev0.0) as f64 / packets as f64;
    result.dsacks = netstat::delta(&tx0, &tx1, "TCPDSACKRecvSegs");
    result.out_of_order = netstat::delta(&rx0, &rx1, "TCPOFOQueue");
    Ok((result, cpu::busy_seconds(before, after)))
}

fn wait_listening(ns: &str, server: &mut Process) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        server.check_alive()?;
        let filter = format!("sport = :{PORT}");
        if !cmd::run(&mut cmd::in_ns(ns, &["ss", "-Hltn", &filter]))?
            .trim()
            .is_empty()
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("iperf3 server in {ns} did not listen within 5 s")
}

/// Reads iperf3's `-J` output (also its error report).
pub fn parse(json: &str) -> Result<Throughput> {
    let v: Value = serde_json::from_str(json)
        .with_context(|| format!("iperf3 printed no JSON: {}", json.trim()))?;
    if let Some(err) = v["error"].as_str() {
        bail!("iperf3: {err}");
    }
    let received = &v["end"]["sum_received"];
    let (Some(bps), Some(bytes)) = (
        received["bits_per_second"].as_f64(),
        received["bytes"].as_u64(),
    ) else {
        bail!("iperf3's JSON has no end.sum_received");
    };
    Ok(Throughput {
        gbit_per_s: bps / 1e9,
        bytes,
        retransmits: v["end"]["sum_sent"]["retransmits"].as_u64().unwrap_or(0),
        dsacks: 0,
        out_of_order: 0,
        rx_packet_bytes: 0.0,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_receiver_sum_and_errors() {
        let json = r#"{"end":{"sum_sent":{"retransmits":12},
            "sum_received":{"bits_per_second":8.5e9,"bytes":5312500000}}}"#;
        let t = super::parse(json).unwrap();
        assert_eq!(
            (t.gbit_per_s, t.bytes, t.retransmits),
            (8.5, 5312500000, 12)
        );
        let err = super::parse(r#"{"error":"unable to connect"}"#).unwrap_err();
        assert!(err.to_string().contains("unable to connect"));
        assert!(super::parse("not json").is_err());
    }
}
