//! The cluster store: one small interface, two backends. `file://DIR` is a directory
//! of lease files shared by the agents of one host (the default, for the demo and
//! static labs); `etcd://HOST:PORT,…` is etcd v3, as flannel uses it. Keys and values
//! follow flannel's layout (`flannel.rs`).

pub mod etcd;
pub mod file;
pub mod flannel;

use std::{path::PathBuf, time::Duration, time::SystemTime};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store URL {0:?}: expected file:///DIR, etcd://HOST:PORT[,HOST:PORT…] or none")]
    BadUrl(String),
    #[error("file store {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("file store: key {0:?} is not a plain path")]
    BadKey(String),
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("etcd: no endpoint answered within {0:?}")]
    Timeout(Duration),
    #[error("etcd TLS: reading {path}: {source}")]
    TlsFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// How the agent talks to etcd beyond the endpoints: TLS (flanneld's `-etcd-cafile`,
/// `-etcd-certfile`, `-etcd-keyfile`) and authentication (`-etcd-username`,
/// `-etcd-password`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcdSecurity {
    /// The CA that signs the members' certificates: with it, the endpoints are https.
    pub ca_file: Option<PathBuf>,
    /// A client certificate and its key, for members that require one.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub user: Option<(String, String)>,
}

/// One key as listed, with its expiry when it has a TTL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: String,
    pub expires: Option<SystemTime>,
}

pub enum Store {
    File(file::FileStore),
    Etcd(Box<etcd::EtcdStore>),
}

/// What `store = "…"` in the agent config names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    None,
    File(PathBuf),
    Etcd(Vec<String>),
}

impl StoreUrl {
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        let bad = || StoreError::BadUrl(url.into());
        if url == "none" {
            return Ok(StoreUrl::None);
        }
        if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') || path.len() < 2 {
                return Err(bad());
            }
            return Ok(StoreUrl::File(path.into()));
        }
        let hosts = url.strip_prefix("etcd://").ok_or_else(bad)?;
        let endpoints: Vec<String> = hosts
            .split(',')
            .map(|h| match h.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                    Ok(format!("http://{h}"))
                }
                _ => Err(bad()),
            })
            .collect::<Result<_, _>>()?;
        Ok(StoreUrl::Etcd(endpoints))
    }
}

impl Store {
    /// Opens the store (etcd connects lazily: an unreachable etcd is not an error here).
    pub fn open(url: &StoreUrl, security: &EtcdSecurity) -> Result<Option<Self>, StoreError> {
        Ok(match url {
            StoreUrl::None => None,
            StoreUrl::File(dir) => Some(Store::File(file::FileStore::open(dir)?)),
            StoreUrl::Etcd(endpoints) => Some(Store::Etcd(Box::new(etcd::EtcdStore::new(
                endpoints.clone(),
                security.clone(),
            )?))),
        })
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Store::File(_) => "file",
            Store::Etcd(_) => "etcd",
        }
    }

    pub async fn get(&mut self, key: &str) -> Result<Option<String>, StoreError> {
        match self {
            Store::File(s) => s.get(key),
            Store::Etcd(s) => s.get(key).await,
        }
    }

    /// Creates `key` if it does not exist (or has expired); false if it exists.
    pub async fn create(
        &mut self,
        key: &str,
        value: &str,
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError> {
        match self {
            Store::File(s) => s.create(key, value, ttl),
            Store::Etcd(s) => s.create(key, value, ttl).await,
        }
    }

    /// Writes `key` and restarts its TTL.
    pub async fn put(
        &mut self,
        key: &str,
        value: &str,
        ttl: Option<Duration>,
    ) -> Result<(), StoreError> {
        match self {
            Store::File(s) => s.put(key, value, ttl),
            Store::Etcd(s) => s.put(key, value, ttl).await,
        }
    }

    /// Renews `key` (a fresh TTL) only while it holds `value` or is absent: a lease
    /// another node took meanwhile is never overwritten. False if it is someone else's.
    pub async fn renew(
        &mut self,
        key: &str,
        value: &str,
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError> {
        match self {
            Store::File(s) => s.renew(key, value, ttl),
            Store::Etcd(s) => s.renew(key, value, ttl).await,
        }
    }

    pub async fn delete(&mut self, key: &str) -> Result<(), StoreError> {
        match self {
            Store::File(s) => s.delete(key),
            Store::Etcd(s) => s.delete(key).await,
        }
    }

    /// Every live key under `prefix`.
    pub async fn list(&mut self, prefix: &str) -> Result<Vec<Entry>, StoreError> {
        match self {
            Store::File(s) => s.list(prefix),
            Store::Etcd(s) => s.list(prefix).await,
        }
    }

    /// Returns when something under `prefix` may have changed (or leases may have
    /// expired): the caller lists again.
    pub async fn changed(&mut self, prefix: &str) -> Result<(), StoreError> {
        match self {
            Store::File(s) => s.changed(prefix).await,
            Store::Etcd(s) => s.changed(prefix).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(StoreUrl::parse("none").unwrap(), StoreUrl::None);
        assert_eq!(
            StoreUrl::parse("file:///var/lib/x").unwrap(),
            StoreUrl::File("/var/lib/x".into())
        );
        assert_eq!(
            StoreUrl::parse("etcd://127.0.0.1:2379,127.0.0.1:2381").unwrap(),
            StoreUrl::Etcd(vec![
                "http://127.0.0.1:2379".into(),
                "http://127.0.0.1:2381".into()
            ])
        );
        for bad in [
            "",
            "file://",
            "file://rel",
            "etcd://",
            "etcd://host",
            "etcd://h:99999",
            "http://x:1",
        ] {
            assert!(StoreUrl::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
