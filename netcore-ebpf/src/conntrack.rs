//! Looking flows up in the connection-tracking map and recording new ones.

use aya_ebpf::helpers::bpf_ktime_get_ns;
use netcore_common::conntrack::{
    CtEntry, CtKey, CT_REFRESH_NS, CT_REVERSE, CT_TIMEOUT_TCP_NS, CT_TIMEOUT_UDP_NS,
};

use crate::{l4::IPPROTO_TCP, maps::NC_CONNTRACK};

#[inline(always)]
fn timeout(proto: u8) -> u64 {
    if proto == IPPROTO_TCP {
        CT_TIMEOUT_TCP_NS
    } else {
        CT_TIMEOUT_UDP_NS
    }
}

/// The live entry for `key`, refreshed; `None` if absent or timed out.
#[inline(always)]
pub fn lookup(key: &CtKey) -> Option<CtEntry> {
    let entry = NC_CONNTRACK.get_ptr_mut(key)?;
    let now = unsafe { bpf_ktime_get_ns() };
    let last = unsafe { (*entry).last_seen };
    if now.saturating_sub(last) > timeout(key.proto) {
        return None;
    }
    if now - last > CT_REFRESH_NS {
        unsafe { (*entry).last_seen = now };
    }
    Some(unsafe { *entry })
}

#[inline(always)]
pub fn insert(key: &CtKey, mut entry: CtEntry) {
    entry.last_seen = unsafe { bpf_ktime_get_ns() };
    // A full LRU map evicts its oldest entry; an error here only loses tracking.
    let _ = NC_CONNTRACK.insert(key, &entry, 0);
}

/// Removes the entry for `key` if it is a reverse one.
#[inline(always)]
pub fn forget_reverse(key: &CtKey) {
    let reverse = unsafe { NC_CONNTRACK.get(key) }.is_some_and(|e| e.flags & CT_REVERSE != 0);
    if reverse {
        let _ = NC_CONNTRACK.remove(key);
    }
}
