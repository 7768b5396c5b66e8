//! Runs a data-path program on crafted bytes with `BPF_PROG_TEST_RUN`: the verdict,
//! the bytes it leaves and the counters it bumps, without any interface.

use std::{
    net::Ipv4Addr,
    os::fd::{AsRawFd, BorrowedFd},
    path::PathBuf,
};

use anyhow::{bail, Result};
use netcore_agent::{
    datapath::{self, AttachMode, Datapath},
    mac::Mac,
    maps::Maps,
};
use netcore_common::config::{DatapathConfig, FLAG_READY, FLAG_SERVICES};

use crate::unique;

const BPF_PROG_TEST_RUN: libc::c_long = 10;

#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

/// What a program did with one packet.
#[derive(Debug)]
pub struct Run {
    pub verdict: i32,
    pub out: Vec<u8>,
}

pub fn test_run(prog: BorrowedFd<'_>, packet: &[u8]) -> Result<Run> {
    let mut out = vec![0u8; packet.len() + 256];
    let mut attr = TestRunAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: packet.len() as u32,
        data_size_out: out.len() as u32,
        data_in: packet.as_ptr() as u64,
        data_out: out.as_mut_ptr() as u64,
        repeat: 1,
        ..Default::default()
    };
    // SAFETY: the attr points at buffers that outlive the call; sizes are theirs.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            &mut attr as *mut TestRunAttr,
            std::mem::size_of::<TestRunAttr>(),
        )
    };
    if r < 0 {
        bail!("BPF_PROG_TEST_RUN: {}", std::io::Error::last_os_error());
    }
    out.truncate(attr.data_size_out as usize);
    Ok(Run {
        verdict: attr.retval as i32,
        out,
    })
}

/// The data path loaded on its own (maps pinned in a private directory), with a node
/// identity written to its config map.
pub struct Loaded {
    pub dp: Datapath,
    pub maps: Maps,
    pin_dir: PathBuf,
}

pub struct Identity {
    pub node_ip: Ipv4Addr,
    pub gateway: Ipv4Addr,
    pub gateway_mac: Mac,
    pub vtep_mac: Mac,
    pub uplink_ifindex: u32,
}

pub fn identity() -> Identity {
    Identity {
        node_ip: Ipv4Addr::new(192, 168, 50, 11),
        gateway: Ipv4Addr::new(10, 244, 1, 1),
        gateway_mac: Mac([0x02, 0, 0, 0, 0x01, 0x01]),
        vtep_mac: Mac([0x02, 0, 0, 0, 0x0e, 0x01]),
        uplink_ifindex: 1,
    }
}

fn config(id: &Identity, flags: u16) -> DatapathConfig {
    let be = |ip: Ipv4Addr| u32::from_ne_bytes(ip.octets());
    DatapathConfig {
        node_ip: be(id.node_ip),
        gateway_ip: be(id.gateway),
        uplink_ifindex: id.uplink_ifindex,
        vni: 1,
        vxlan_port: 8472,
        flags,
        gateway_mac: id.gateway_mac.0,
        vtep_mac: id.vtep_mac.0,
        vxlan_ifindex: 0,
        cluster_net: be(Ipv4Addr::new(10, 244, 0, 0)),
        cluster_prefix: 16,
        service_prefix: 12,
        trace_every: 0,
        service_net: be(Ipv4Addr::new(10, 96, 0, 0)),
    }
}

impl Loaded {
    pub fn new(id: &Identity) -> Result<Self> {
        let pin_dir = PathBuf::from("/sys/fs/bpf/netcore-test").join(unique("pkt"));
        let state_dir = std::env::temp_dir().join(unique("netcore-pkt"));
        let loaded = Datapath::load(&pin_dir, &state_dir, AttachMode::Tc, false);
        let _ = std::fs::remove_dir_all(&state_dir);
        let (dp, mut maps) = loaded?;
        maps.config.set(&config(id, FLAG_READY))?;
        Ok(Loaded { dp, maps, pin_dir })
    }

    /// Turns service handling on, as the agent does once a service exists.
    pub fn enable_services(&mut self, id: &Identity) -> Result<()> {
        self.set_flags(id, FLAG_READY | FLAG_SERVICES)
    }

    /// Writes the node's config with these `FLAG_*` bits.
    pub fn set_flags(&mut self, id: &Identity, flags: u16) -> Result<()> {
        Ok(self.maps.config.set(&config(id, flags))?)
    }

    pub fn run(&self, program: &'static str, packet: &[u8]) -> Result<Run> {
        test_run(self.dp.program_fd(program)?, packet)
    }

    pub fn counter(&self, reason: &str) -> u64 {
        self.maps
            .counters
            .read()
            .iter()
            .find(|c| c.reason == reason)
            .map_or(0, |c| c.packets)
    }
}

impl Drop for Loaded {
    fn drop(&mut self) {
        let _ = datapath::remove_pins(&self.pin_dir);
    }
}
