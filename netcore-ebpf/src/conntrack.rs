//! Looking flows up in the connection-tracking maps, recording new ones, and moving
//! them along their states: new (in their own table), established once the backend
//! answers, closing on a FIN, closed on a RST.

use aya_ebpf::{helpers::bpf_ktime_get_ns, maps::LruHashMap};
use netcore_common::conntrack::{
    timeout_ns, CtEntry, CtKey, CT_ACK_KNOWN, CT_REFRESH_NS, CT_REVERSE, CT_STATE_CLOSED, CT_STATE_CLOSING,
    CT_STATE_ESTABLISHED, CT_STATE_NEW,
};

use crate::{
    l4::IPPROTO_TCP,
    maps::{NC_CONNTRACK, NC_CT_NEW},
};

/// The live entry for `key` in `map` and whether this lookup refreshed it; `None` if
/// absent or timed out.
#[inline(always)]
fn lookup_in(map: &LruHashMap<CtKey, CtEntry>, key: &CtKey) -> Option<(CtEntry, bool)> {
    let entry = map.get_ptr_mut(key)?;
    let now = unsafe { bpf_ktime_get_ns() };
    let (last, state) = unsafe { ((*entry).last_seen, (*entry).state) };
    if now.saturating_sub(last) > timeout_ns(key.proto == IPPROTO_TCP, state) {
        return None;
    }
    let refresh = now.saturating_sub(last) > CT_REFRESH_NS;
    if refresh {
        unsafe { (*entry).last_seen = now };
    }
    Some((unsafe { *entry }, refresh))
}

/// The live entry for `key`, established or new. Refreshing it refreshes the other
/// direction's entry too: a flow that carries packets one way only (a UDP stream,
/// a long upload) keeps the reverse entry, and with it its masquerade port, alive.
#[inline(always)]
pub fn lookup(key: &CtKey) -> Option<CtEntry> {
    let (e, refreshed) = lookup_in(&NC_CONNTRACK, key).or_else(|| lookup_in(&NC_CT_NEW, key))?;
    if refreshed {
        let (fwd, rev) = keys_of(key, &e);
        let other = if e.flags & CT_REVERSE != 0 { fwd } else { rev };
        let now = e.last_seen;
        for map in [&NC_CONNTRACK, &NC_CT_NEW] {
            if let Some(p) = map.get_ptr_mut(&other) {
                unsafe { (*p).last_seen = now };
            }
        }
    }
    Some(e)
}

/// The entry for `key`, established or new, in place (not copied, not refreshed),
/// while it is live: for what only reads it (an ICMP error about the flow).
#[inline(always)]
pub fn find(key: &CtKey) -> Option<&'static CtEntry> {
    let e = unsafe { NC_CONNTRACK.get(key).or_else(|| NC_CT_NEW.get(key)) }?;
    let idle = unsafe { bpf_ktime_get_ns() }.saturating_sub(e.last_seen);
    (idle <= timeout_ns(key.proto == IPPROTO_TCP, e.state)).then_some(e)
}

/// Records a new flow's entry (in the table of new flows).
#[inline(always)]
pub fn insert(key: &CtKey, mut entry: CtEntry) {
    entry.last_seen = unsafe { bpf_ktime_get_ns() };
    entry.state = CT_STATE_NEW;
    // A full LRU map evicts its oldest entry; an error here only loses tracking.
    let _ = NC_CT_NEW.insert(key, &entry, 0);
}

/// Both keys of the flow `e` (found under `key`) belongs to: forward, reverse.
#[inline(always)]
pub fn keys_of(key: &CtKey, e: &CtEntry) -> (CtKey, CtKey) {
    let other = if e.flags & CT_REVERSE != 0 {
        // A reverse entry holds the client (b) and the address it called (a).
        CtKey { src: e.b_ip, dst: e.a_ip, sport: e.b_port, dport: e.a_port, proto: key.proto, _pad: [0; 3] }
    } else {
        // A forward entry holds the backend (a) and the source it sees (b).
        CtKey { src: e.a_ip, dst: e.b_ip, sport: e.a_port, dport: e.b_port, proto: key.proto, _pad: [0; 3] }
    };
    if e.flags & CT_REVERSE != 0 {
        (other, *key)
    } else {
        (*key, other)
    }
}

/// The flow of `e` (found under `key`) is established (the client completed the TCP
/// handshake, or the backend answered a UDP flow): both entries move to the
/// established table. Nothing to do for a flow already there.
#[inline(always)]
pub fn answered(key: &CtKey, e: &CtEntry) {
    if e.state != CT_STATE_NEW {
        return;
    }
    let (fwd, rev) = keys_of(key, e);
    for k in [fwd, rev] {
        if let Some(mut moved) = unsafe { NC_CT_NEW.get(&k) }.copied() {
            moved.state = CT_STATE_ESTABLISHED;
            moved.last_seen = unsafe { bpf_ktime_get_ns() };
            let _ = NC_CONNTRACK.insert(&k, &moved, 0);
            let _ = NC_CT_NEW.remove(&k);
        }
    }
}

/// A FIN or RST of the flow of `e`: both entries take `state` (never back).
#[inline(always)]
pub fn closing(key: &CtKey, e: &CtEntry, state: u32) {
    if e.state >= state {
        return;
    }
    let (fwd, rev) = keys_of(key, e);
    for k in [fwd, rev] {
        for map in [&NC_CONNTRACK, &NC_CT_NEW] {
            if let Some(p) = map.get_ptr_mut(&k) {
                unsafe { (*p).state = state };
            }
        }
    }
}

/// Whether the flow is over: a new SYN on its addresses and ports starts another.
#[inline(always)]
pub fn is_over(e: &CtEntry) -> bool {
    e.state == CT_STATE_CLOSED || e.state == CT_STATE_CLOSING
}

/// Removes both entries of the flow of `e` (found under `key`) from both tables: a
/// closed flow whose addresses and ports a new SYN reuses.
#[inline(always)]
pub fn forget(key: &CtKey, e: &CtEntry) {
    let (fwd, rev) = keys_of(key, e);
    for k in [fwd, rev] {
        for map in [&NC_CONNTRACK, &NC_CT_NEW] {
            let _ = map.remove(&k);
        }
    }
}

/// The backend's SYN-ACK of the flow of `rev` (its reverse entry, under `key`) went
/// by with sequence number `seq`: the forward entry learns the acknowledgement number
/// that completes the handshake.
#[inline(always)]
pub fn expect_ack(key: &CtKey, rev: &CtEntry, seq: u32) {
    let (fwd, _) = keys_of(key, rev);
    if let Some(p) = NC_CT_NEW.get_ptr_mut(&fwd) {
        unsafe {
            (*p).handshake_ack = seq.wrapping_add(1);
            (*p).flags |= CT_ACK_KNOWN;
        }
    }
}

/// Whether a client segment acknowledging `ack` completes the handshake of the flow
/// of its forward entry `e`: a spoofed source never saw the SYN-ACK, so it cannot
/// move its flow out of the table of new ones.
#[inline(always)]
pub fn completes_handshake(e: &CtEntry, ack: u32) -> bool {
    e.state == CT_STATE_NEW && e.flags & CT_ACK_KNOWN != 0 && e.handshake_ack == ack
}

/// Removes the entry for `key` if it is a reverse one.
#[inline(always)]
pub fn forget_reverse(key: &CtKey) {
    for map in [&NC_CONNTRACK, &NC_CT_NEW] {
        let reverse = unsafe { map.get(key) }.is_some_and(|e| e.flags & CT_REVERSE != 0);
        if reverse {
            let _ = map.remove(key);
        }
    }
}
