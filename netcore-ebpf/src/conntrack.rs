//! Looking flows up in the connection-tracking maps, recording new ones, and moving
//! them along their states: new (in their own table), established once the backend
//! answers, closing on a FIN, closed on a RST.

use aya_ebpf::{helpers::bpf_ktime_get_ns, maps::LruHashMap};
use netcore_common::conntrack::{
    timeout_ns, CtEntry, CtKey, CT_REFRESH_NS, CT_REVERSE, CT_STATE_CLOSED, CT_STATE_CLOSING,
    CT_STATE_ESTABLISHED, CT_STATE_NEW,
};

use crate::{
    l4::IPPROTO_TCP,
    maps::{NC_CONNTRACK, NC_CT_NEW},
};

/// The live entry for `key` in `map`, refreshed; `None` if absent or timed out.
#[inline(always)]
fn lookup_in(map: &LruHashMap<CtKey, CtEntry>, key: &CtKey) -> Option<CtEntry> {
    let entry = map.get_ptr_mut(key)?;
    let now = unsafe { bpf_ktime_get_ns() };
    let (last, state) = unsafe { ((*entry).last_seen, (*entry).state) };
    if now.saturating_sub(last) > timeout_ns(key.proto == IPPROTO_TCP, state) {
        return None;
    }
    if now.saturating_sub(last) > CT_REFRESH_NS {
        unsafe { (*entry).last_seen = now };
    }
    Some(unsafe { *entry })
}

/// The live entry for `key`, established or new.
#[inline(always)]
pub fn lookup(key: &CtKey) -> Option<CtEntry> {
    lookup_in(&NC_CONNTRACK, key).or_else(|| lookup_in(&NC_CT_NEW, key))
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
