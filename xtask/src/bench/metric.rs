//! What is measured per datapath and round, with units and which way is better.

use super::{datapaths::Datapath, profile::Profile};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    Tcp1,
    Tcp4,
    PingRtt,
    RrP50,
    RrP99,
    RrRate,
    CpuPerGb,
    Retransmits,
    Dsacks,
    OutOfOrder,
    /// Mean size of the packets the server's interfaces received during the 1-stream
    /// TCP run: far above the MTU when GRO merged them.
    RxPacket,
}

/// One measured value.
#[derive(Clone, Debug)]
pub struct Sample {
    pub profile: Profile,
    pub datapath: Datapath,
    pub metric: Metric,
    pub round: usize,
    pub value: f64,
}

impl Metric {
    pub const ALL: [Metric; 11] = [
        Metric::Tcp1,
        Metric::Tcp4,
        Metric::PingRtt,
        Metric::RrP50,
        Metric::RrP99,
        Metric::RrRate,
        Metric::CpuPerGb,
        Metric::Retransmits,
        Metric::Dsacks,
        Metric::OutOfOrder,
        Metric::RxPacket,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Metric::Tcp1 => "tcp_1_stream",
            Metric::Tcp4 => "tcp_4_streams",
            Metric::PingRtt => "ping_rtt",
            Metric::RrP50 => "rr_p50",
            Metric::RrP99 => "rr_p99",
            Metric::RrRate => "rr_rate",
            Metric::CpuPerGb => "cpu_per_gb",
            Metric::Retransmits => "tcp_1_stream_retransmits",
            Metric::Dsacks => "tcp_1_stream_dsacks",
            Metric::OutOfOrder => "tcp_1_stream_out_of_order",
            Metric::RxPacket => "tcp_1_stream_rx_packet_bytes",
        }
    }

    pub fn unit(self) -> &'static str {
        match self {
            Metric::Tcp1 | Metric::Tcp4 => "Gbit/s",
            Metric::PingRtt => "ms",
            Metric::RrP50 | Metric::RrP99 => "us",
            Metric::RrRate => "transactions/s",
            Metric::CpuPerGb => "CPU s/GB",
            Metric::Retransmits | Metric::Dsacks | Metric::OutOfOrder => "segments",
            Metric::RxPacket => "bytes",
        }
    }

    pub fn higher_is_better(self) -> bool {
        matches!(
            self,
            Metric::Tcp1 | Metric::Tcp4 | Metric::RrRate | Metric::RxPacket
        )
    }

    /// Column heading in the markdown table.
    pub fn heading(self) -> &'static str {
        match self {
            Metric::Tcp1 => "TCP 1 stream Gbit/s",
            Metric::Tcp4 => "TCP 4 streams Gbit/s",
            Metric::PingRtt => "ping ms",
            Metric::RrP50 => "RR p50 µs",
            Metric::RrP99 => "RR p99 µs",
            Metric::RrRate => "RR trans/s",
            Metric::CpuPerGb => "CPU s/GB",
            Metric::Retransmits => "retransmits",
            Metric::Dsacks => "DSACKed (spurious)",
            Metric::OutOfOrder => "out of order at receiver",
            Metric::RxPacket => "bytes per packet at receiver",
        }
    }
}
