//! What the programs count: one numbered reason per outcome (verdicts below
//! `FIRST_DROP`, drops from it on), in a per-CPU array indexed by the reason.

use bytemuck::{Pod, Zeroable};

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

const _: () = assert!(core::mem::size_of::<Counter>() == 16);

crate::user_pod!(Counter);

macro_rules! reasons {
    ($($name:ident = $num:literal, $text:literal;)*) => {
        /// Outcome of one packet in one program.
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Reason { $($name = $num,)* }

        impl Reason {
            pub const ALL: &'static [Reason] = &[$(Reason::$name,)*];

            /// The stable name shown by `netcore status` and in metrics.
            pub const fn name(self) -> &'static str {
                match self { $(Reason::$name => $text,)* }
            }
        }
    };
}

reasons! {
    RedirectedLocal = 0, "redirected-local";
    Passed = 1, "passed";
    Encapsulated = 2, "encapsulated";
    Decapsulated = 3, "decapsulated";
    DecapsulatedToHost = 4, "decapsulated-to-host";
    NodePortReply = 5, "nodeport-reply";
    PassedToVxlan = 6, "passed-to-vxlan-device";
    EncapsulatedByDevice = 7, "encapsulated-by-device";
    ForwardedDirect = 8, "forwarded-direct";
    ReceivedDirect = 9, "received-direct";
    DropMalformed = 16, "dropped-malformed";
    DropIpOptions = 17, "dropped-ip-options";
    DropFragment = 18, "dropped-fragment";
    DropUnknownSource = 19, "dropped-unknown-source";
    DropBadVni = 20, "dropped-bad-vni";
    DropNoRoute = 21, "dropped-no-route";
    DropInnerNotIpv4 = 22, "dropped-inner-not-ipv4";
    DropNotReady = 23, "dropped-not-ready";
    DropEncapFailed = 24, "dropped-encap-failed";
    DropDecapFailed = 25, "dropped-decap-failed";
    DropRedirectFailed = 26, "dropped-redirect-failed";
    DropNatFailed = 27, "dropped-nat-failed";
    DropSpoofedSource = 29, "dropped-spoofed-source";
    DropBadChecksum = 30, "dropped-bad-checksum";
    RejectedNoBackend = 28, "rejected-no-backend";
    DropCeOnNotEct = 31, "dropped-ce-on-not-ect";
    DropUnderlayToPods = 32, "dropped-underlay-to-pods";
    DropSpoofedMac = 33, "dropped-spoofed-mac";
    DropSpoofedArp = 34, "dropped-spoofed-arp";
    DropEtherType = 35, "dropped-ether-type";
    RejectedNoFlow = 36, "rejected-no-flow";
    DropPolicy = 37, "dropped-policy";
    DropTooBig = 38, "dropped-too-big";
    MonitorLost = 15, "monitor-events-lost";
}

/// Reasons numbered from here on are drops.
pub const FIRST_DROP: u32 = 16;
/// Slots in the counter array (every reason number is below it).
pub const MAX_REASONS: u32 = 64;

impl Reason {
    pub const fn is_drop(self) -> bool {
        self as u32 >= FIRST_DROP
    }

    pub fn from_index(index: u32) -> Option<Reason> {
        Reason::ALL.iter().copied().find(|r| *r as u32 == index)
    }
}
