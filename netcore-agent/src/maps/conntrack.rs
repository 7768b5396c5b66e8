//! The connection-tracking maps (established flows, and new ones): the agent only
//! purges them, when a service loses backends, so that the flows to a removed backend
//! end at once instead of waiting out their timeout (a UDP client on a fixed port
//! would be black-holed all along).

use aya::maps::{HashMap, Map, MapData};
use netcore_common::{
    conntrack::{CtEntry, CtKey, CT_FORWARD, CT_REVERSE},
    service::Backend,
};

use super::{err, is_not_found, MapError};

pub struct ConntrackMaps {
    tables: [(HashMap<MapData, CtKey, CtEntry>, &'static str); 2],
}

impl ConntrackMaps {
    pub fn new(
        established: (Map, &'static str),
        new: (Map, &'static str),
    ) -> Result<Self, MapError> {
        let open = |(m, name): (Map, &'static str)| -> Result<_, MapError> {
            Ok((HashMap::try_from(m).map_err(err(name))?, name))
        };
        Ok(Self {
            tables: [open(established)?, open(new)?],
        })
    }

    /// Removes both entries of every flow of service `id` to one of `gone`; returns
    /// how many flows ended. The next packet of such a flow finds none: a UDP client
    /// is balanced to a remaining backend, a TCP client gets a reset.
    pub fn purge_backends(&mut self, id: u32, gone: &[Backend]) -> Result<usize, MapError> {
        let to_gone = |k: &CtKey, e: &CtEntry| {
            e.service_id == id
                && gone.iter().any(|b| {
                    // Forward entries name the backend; reverse ones are keyed by it.
                    (e.flags & CT_FORWARD != 0 && e.a_ip == b.ip && e.a_port == b.port)
                        || (e.flags & CT_REVERSE != 0 && k.src == b.ip && k.sport == b.port)
                })
        };
        let mut ended = 0;
        for (map, name) in &mut self.tables {
            let doomed: Vec<(CtKey, CtEntry)> = map
                .iter()
                .filter_map(Result::ok)
                .filter(|(k, e)| to_gone(k, e))
                .collect();
            for (k, e) in doomed {
                ended += usize::from(e.flags & CT_FORWARD != 0);
                match map.remove(&k) {
                    Err(x) if !is_not_found(&x) => return Err(err(name)(x)),
                    _ => {}
                }
            }
        }
        Ok(ended)
    }

    /// The entry under `key` and whether it is in the table of established flows
    /// (`true`) or of new ones (`false`).
    pub fn find(&self, key: &CtKey) -> Option<(bool, CtEntry)> {
        let [(established, _), (new, _)] = &self.tables;
        match established.get(key, 0) {
            Ok(e) => Some((true, e)),
            Err(_) => new.get(key, 0).ok().map(|e| (false, e)),
        }
    }
}
