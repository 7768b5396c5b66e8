//! MAC addresses as the agent stores and prints them ("aa:bb:cc:dd:ee:ff").

use std::{fmt, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Mac(pub [u8; 6]);

#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a MAC address (expected six hex bytes like 02:00:5e:10:00:01)")]
pub struct BadMac(String);

impl Mac {
    /// A random, locally administered unicast address.
    pub fn random() -> Self {
        let mut b: [u8; 6] = rand::random();
        b[0] = (b[0] & 0xfe) | 0x02;
        Mac(b)
    }

    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        Some(Mac(bytes.try_into().ok()?))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Mac {
    type Err = BadMac;
    fn from_str(s: &str) -> Result<Self, BadMac> {
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 6 {
            return Err(BadMac(s.into()));
        }
        let mut b = [0u8; 6];
        for (i, p) in parts.iter().enumerate() {
            if p.len() != 2 {
                return Err(BadMac(s.into()));
            }
            b[i] = u8::from_str_radix(p, 16).map_err(|_| BadMac(s.into()))?;
        }
        Ok(Mac(b))
    }
}

impl Serialize for Mac {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let m: Mac = "02:ab:00:10:ff:01".parse().unwrap();
        assert_eq!(m.to_string(), "02:ab:00:10:ff:01");
        for bad in [
            "",
            "02:ab:00:10:ff",
            "02:ab:00:10:ff:01:02",
            "zz:ab:00:10:ff:01",
            "2:ab:00:10:ff:011",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad:?} must be rejected");
        }
        let r = Mac::random();
        assert_eq!(r.0[0] & 0x03, 0x02, "random MACs are local unicast: {r}");
    }
}
