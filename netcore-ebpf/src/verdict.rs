//! The one exit of every program: count the outcome, return the TC action.

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT},
    programs::TcContext,
};
use netcore_common::{config::FLAG_FLOWS, counters::Reason};

use crate::maps::{NC_CONFIG, NC_COUNTERS};

/// What to do with a packet that is not dropped, and which counter says so.
pub struct Verdict {
    pub reason: Reason,
    pub action: i32,
}

impl Verdict {
    /// Hand the packet to the kernel's normal path.
    #[inline(always)]
    pub const fn pass() -> Self {
        Self { reason: Reason::Passed, action: TC_ACT_OK as i32 }
    }

    /// The packet was given to a redirect helper, whose return value is the action.
    #[inline(always)]
    pub fn redirected(reason: Reason, helper_ret: i64) -> Result<Self, Reason> {
        // The helpers answer TC_ACT_REDIRECT, or TC_ACT_SHOT when they cannot.
        if helper_ret != TC_ACT_REDIRECT as i64 {
            return Err(Reason::DropRedirectFailed);
        }
        Ok(Self { reason, action: TC_ACT_REDIRECT as i32 })
    }
}

/// Counts the outcome of the packet `program` decided on (and, with flow accounting
/// on, its flow), reports it to a watching monitor, and returns the TC action.
#[inline(always)]
pub fn finish(ctx: &TcContext, program: u8, result: Result<Verdict, Reason>) -> i32 {
    let (reason, action) = match result {
        Ok(v) => (v.reason, v.action),
        Err(drop) => (drop, TC_ACT_SHOT as i32),
    };
    count(reason, ctx.len());
    if let Some(cfg) = NC_CONFIG.get(0) {
        if cfg.flags & FLAG_FLOWS != 0 {
            crate::flows::account(ctx, program, reason, cfg.vxlan_port);
        }
        if !crate::monitor::report(ctx, cfg, program, reason) {
            count(Reason::MonitorLost, 0);
        }
    }
    if reason.is_drop() {
        // Compiled in, but pruned by the verifier unless the agent runs with --bpf-log
        // (AYA_LOG_LEVEL is read-only data the agent sets at load time).
        aya_log_ebpf::info!(ctx, "netcore: drop reason {} ({} bytes)", reason as u32, ctx.len());
        if reason == Reason::DropPolicy {
            log_denial(ctx);
        }
    }
    action
}

/// The denied flow's 5-tuple and direction (only with --bpf-log, as above); a call
/// of its own, so that its stack is not added to the program's.
#[inline(never)]
fn log_denial(ctx: &TcContext) {
    let Some(d) = crate::maps::NC_POLICY_DENIED.get(0) else { return };
    let (src, dst) = (u32::from_be(d.flow.src), u32::from_be(d.flow.dst));
    let (sport, dport) = (u16::from_be(d.flow.sport), u16::from_be(d.flow.dport));
    if d.ingress != 0 {
        aya_log_ebpf::info!(ctx, "netcore: policy denies ingress {:i}:{} -> {:i}:{} proto {}", src, sport, dst, dport, d.flow.proto);
    } else {
        aya_log_ebpf::info!(ctx, "netcore: policy denies egress {:i}:{} -> {:i}:{} proto {}", src, sport, dst, dport, d.flow.proto);
    }
}

#[inline(always)]
fn count(reason: Reason, bytes: u32) {
    if let Some(c) = NC_COUNTERS.get_ptr_mut(reason as u32) {
        // Per-CPU slot: no other writer while this program runs on this CPU.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += bytes as u64;
        }
    }
}
