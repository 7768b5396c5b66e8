//! What the kernel offers the data path, probed (never guessed from the version) once
//! at start: what netcore cannot do without is refused by name, and what has a
//! fallback picks the attach mode.

use aya::{
    maps::MapType,
    programs::{ProgramType, SchedClassifier, TcAttachType},
    sys::{is_helper_supported, is_map_supported, is_program_supported},
};
use aya_obj::generated::bpf_func_id::{self, *};
use serde::{Deserialize, Serialize};

/// A kernel feature netcore needs, and the Linux version that added it (for the
/// message: the probe, not the version, decides).
#[derive(Debug, Clone, Copy)]
pub struct Required {
    pub what: &'static str,
    pub since: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum FeatureError {
    #[error("this kernel lacks {}, which netcore needs (Linux {} or later)", .0.what, .0.since)]
    Missing(Required),
    #[error("probing the kernel for {what}: {reason}")]
    Probe { what: &'static str, reason: String },
    #[error("attach = \"tcx\" was asked for, but this kernel has no TCX (Linux 6.6 or later)")]
    NoTcx,
}

const HELPERS: [(bpf_func_id, Required); 7] = [
    (
        BPF_FUNC_redirect_peer,
        Required {
            what: "the bpf_redirect_peer helper",
            since: "5.10",
        },
    ),
    (
        BPF_FUNC_redirect_neigh,
        Required {
            what: "the bpf_redirect_neigh helper",
            since: "5.10",
        },
    ),
    (
        BPF_FUNC_skb_adjust_room,
        Required {
            what: "the bpf_skb_adjust_room helper",
            since: "4.13",
        },
    ),
    (
        BPF_FUNC_skb_get_tunnel_key,
        Required {
            what: "the bpf_skb_get_tunnel_key helper",
            since: "4.3",
        },
    ),
    (
        BPF_FUNC_skb_ecn_set_ce,
        Required {
            what: "the bpf_skb_ecn_set_ce helper",
            since: "5.1",
        },
    ),
    (
        BPF_FUNC_get_hash_recalc,
        Required {
            what: "the bpf_get_hash_recalc helper",
            since: "4.8",
        },
    ),
    (
        BPF_FUNC_ktime_get_ns,
        Required {
            what: "the bpf_ktime_get_ns helper",
            since: "4.1",
        },
    ),
];

const MAPS: [(MapType, Required); 5] = [
    (
        MapType::Hash,
        Required {
            what: "BPF hash maps",
            since: "3.19",
        },
    ),
    (
        MapType::Array,
        Required {
            what: "BPF array maps",
            since: "3.19",
        },
    ),
    (
        MapType::PerCpuArray,
        Required {
            what: "per-CPU array maps",
            since: "4.6",
        },
    ),
    (
        MapType::LpmTrie,
        Required {
            what: "LPM trie maps",
            since: "4.11",
        },
    ),
    (
        MapType::LruHash,
        Required {
            what: "LRU hash maps",
            since: "4.10",
        },
    ),
];

/// What the running kernel offers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Features {
    /// `uname -r`.
    pub kernel: String,
    /// TCX links (Linux 6.6): otherwise programs go on clsact as cls_bpf filters.
    pub tcx: bool,
}

/// Probes everything at once; the first missing requirement is the error.
pub fn probe() -> Result<Features, FeatureError> {
    let sched_cls = Required {
        what: "TC classifier programs (sched_cls)",
        since: "4.1",
    };
    require(
        sched_cls,
        is_program_supported(ProgramType::SchedClassifier),
    )?;
    for (helper, req) in HELPERS {
        require(
            req,
            is_helper_supported(ProgramType::SchedClassifier, helper),
        )?;
    }
    for (map, req) in MAPS {
        require(req, is_map_supported(map))?;
    }
    Ok(Features {
        kernel: kernel_release(),
        tcx: has_tcx(),
    })
}

fn require<E: std::fmt::Display>(
    req: Required,
    probed: Result<bool, E>,
) -> Result<(), FeatureError> {
    match probed {
        Ok(true) => Ok(()),
        Ok(false) => Err(FeatureError::Missing(req)),
        Err(e) => Err(FeatureError::Probe {
            what: req.what,
            reason: e.to_string(),
        }),
    }
}

/// TCX answers a query on the loopback's ingress; kernels without it refuse the
/// attach type.
fn has_tcx() -> bool {
    SchedClassifier::query_tcx("lo", TcAttachType::Ingress).is_ok()
}

fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into())
}
