//! The one-entry config map: this node's identity as the programs see it.

use aya::maps::{Array, Map, MapData};
use netcore_common::config::DatapathConfig;

use super::err;
use super::MapError;

pub struct ConfigMap {
    map: Array<MapData, DatapathConfig>,
    name: &'static str,
}

impl ConfigMap {
    pub fn new((map, name): (Map, &'static str)) -> Result<Self, MapError> {
        Ok(Self {
            map: Array::try_from(map).map_err(err(name))?,
            name,
        })
    }

    pub fn set(&mut self, cfg: &DatapathConfig) -> Result<(), MapError> {
        self.map.set(0, cfg, 0).map_err(err(self.name))
    }

    pub fn get(&self) -> Option<DatapathConfig> {
        self.map.get(&0, 0).ok()
    }
}
