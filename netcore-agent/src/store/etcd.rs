//! etcd v3, as flannel uses it. The client talks to one member at a time and moves
//! to the next one after any error (a balanced channel keeps sending part of the
//! requests to a dead member); requests need a leader, so a member cut off from the
//! others fails fast instead of serving a watch that never fires. A key with a TTL
//! is bound to an etcd lease of its own.

use std::{
    collections::HashMap,
    time::{Duration, SystemTime},
};

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, PutOptions,
    TlsOptions, Txn, TxnOp, WatchOptions, WatchStream,
};

use super::{Entry, EtcdSecurity, StoreError};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// A unary request with a deadline (streams such as the watch have none).
async fn bounded<T>(
    request: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, etcd_client::Error> {
    tokio::time::timeout(REQUEST_TIMEOUT, request)
        .await
        .unwrap_or_else(|_| {
            Err(etcd_client::Error::IoError(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {REQUEST_TIMEOUT:?}"),
            )))
        })
}

/// The TLS settings of `security`, its files read (a missing or unreadable one is an
/// error at start, not at the first connection).
fn tls_options(security: &EtcdSecurity) -> Result<Option<TlsOptions>, StoreError> {
    let Some(ca) = &security.ca_file else {
        return Ok(None);
    };
    let read = |path: &std::path::PathBuf| {
        std::fs::read(path).map_err(|source| StoreError::TlsFile {
            path: path.clone(),
            source,
        })
    };
    let mut tls = TlsOptions::new().ca_certificate(Certificate::from_pem(read(ca)?));
    if let (Some(cert), Some(key)) = (&security.cert_file, &security.key_file) {
        tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
    }
    Ok(Some(tls))
}

pub struct EtcdStore {
    endpoints: Vec<String>,
    /// TLS (read once, at start) and credentials for every connection.
    tls: Option<TlsOptions>,
    user: Option<(String, String)>,
    /// The member in use (an index into `endpoints`, modulo its length).
    current: usize,
    client: Option<Client>,
    watch: Option<WatchStream>,
    /// The etcd lease each of our TTL'd keys is bound to.
    leases: HashMap<String, i64>,
    /// When the leases of listed keys expire, by lease id.
    expiries: HashMap<i64, SystemTime>,
}

impl EtcdStore {
    /// A store on `endpoints` (`http://host:port`; https with a CA in `security`).
    pub fn new(endpoints: Vec<String>, security: EtcdSecurity) -> Result<Self, StoreError> {
        let tls = tls_options(&security)?;
        let endpoints = match tls {
            Some(_) => endpoints
                .iter()
                .map(|e| e.replacen("http://", "https://", 1))
                .collect(),
            None => endpoints,
        };
        Ok(EtcdStore {
            endpoints,
            tls,
            user: security.user,
            current: 0,
            client: None,
            watch: None,
            leases: HashMap::new(),
            expiries: HashMap::new(),
        })
    }

    async fn client(&mut self) -> Result<&mut Client, StoreError> {
        if self.client.is_none() {
            let endpoint = &self.endpoints[self.current % self.endpoints.len()];
            let mut opts = ConnectOptions::new()
                .with_connect_timeout(CONNECT_TIMEOUT)
                .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
                .with_require_leader(true);
            if let Some(tls) = &self.tls {
                opts = opts.with_tls(tls.clone());
            }
            if let Some((name, password)) = &self.user {
                opts = opts.with_user(name.clone(), password.clone());
            }
            let connect = Client::connect([endpoint], Some(opts));
            let client = match tokio::time::timeout(CONNECT_TIMEOUT * 2, connect).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => return Err(self.failed(e)),
                Err(_) => {
                    self.forget();
                    return Err(StoreError::Timeout(CONNECT_TIMEOUT * 2));
                }
            };
            self.client = Some(client);
        }
        Ok(self.client.as_mut().expect("just connected"))
    }

    /// Drops the connection and its watch; the next call connects to the next member.
    fn forget(&mut self) {
        self.client = None;
        self.watch = None;
        self.current = self.current.wrapping_add(1);
    }

    fn failed(&mut self, e: etcd_client::Error) -> StoreError {
        self.forget();
        e.into()
    }

    /// Passes a result on; after an error the next call uses another member.
    fn check<T>(&mut self, r: Result<T, etcd_client::Error>) -> Result<T, StoreError> {
        r.map_err(|e| self.failed(e))
    }

    pub async fn get(&mut self, key: &str) -> Result<Option<String>, StoreError> {
        let r = bounded(self.client().await?.get(key, None)).await;
        let resp = self.check(r)?;
        Ok(resp
            .kvs()
            .first()
            .map(|kv| String::from_utf8_lossy(kv.value()).into_owned()))
    }

    async fn grant(&mut self, ttl: Option<Duration>) -> Result<Option<i64>, StoreError> {
        let Some(ttl) = ttl else { return Ok(None) };
        let r = bounded(
            self.client()
                .await?
                .lease_grant(ttl.as_secs().max(1) as i64, None),
        )
        .await;
        Ok(Some(self.check(r)?.id()))
    }

    async fn revoke(&mut self, lease: Option<i64>) {
        if let (Some(id), Ok(c)) = (lease, self.client().await) {
            let _ = bounded(c.lease_revoke(id)).await;
        }
    }

    fn put_options(lease: Option<i64>) -> Option<PutOptions> {
        lease.map(|id| PutOptions::new().with_lease(id))
    }

    /// Puts `key` under a fresh lease when `cmp` holds (always, without one); the
    /// lease the key had is revoked, the fresh one too when nothing was written.
    async fn put_when(
        &mut self,
        cmp: Option<Compare>,
        key: &str,
        value: &str,
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError> {
        let lease = self.grant(ttl).await?;
        let put = TxnOp::put(key, value, Self::put_options(lease));
        let txn = match cmp {
            Some(c) => Txn::new().when([c]).and_then([put]),
            None => Txn::new().and_then([put]),
        };
        let r = bounded(self.client().await?.txn(txn)).await;
        let written = self.check(r)?.succeeded();
        let stale = if written {
            self.remember(key, lease)
        } else {
            lease
        };
        self.revoke(stale).await;
        Ok(written)
    }

    pub async fn create(
        &mut self,
        key: &str,
        value: &str,
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError> {
        let absent = Compare::create_revision(key, CompareOp::Equal, 0);
        self.put_when(Some(absent), key, value, ttl).await
    }

    pub async fn put(
        &mut self,
        key: &str,
        value: &str,
        ttl: Option<Duration>,
    ) -> Result<(), StoreError> {
        self.put_when(None, key, value, ttl).await.map(drop)
    }

    /// Puts `key` under a fresh lease if it still holds `value` (or is absent); false
    /// if another value is there.
    pub async fn renew(
        &mut self,
        key: &str,
        value: &str,
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError> {
        let ours = Compare::value(key, CompareOp::Equal, value);
        Ok(self.put_when(Some(ours), key, value, ttl).await?
            || self.create(key, value, ttl).await?)
    }

    /// Records the lease `key` is bound to now; returns the one it had.
    fn remember(&mut self, key: &str, lease: Option<i64>) -> Option<i64> {
        match lease {
            Some(id) => self.leases.insert(key.into(), id),
            None => self.leases.remove(key),
        }
    }

    pub async fn delete(&mut self, key: &str) -> Result<(), StoreError> {
        let r = bounded(self.client().await?.delete(key, None)).await;
        self.check(r)?;
        let old = self.leases.remove(key);
        self.revoke(old).await;
        Ok(())
    }

    pub async fn list(&mut self, prefix: &str) -> Result<Vec<Entry>, StoreError> {
        let r = bounded(
            self.client()
                .await?
                .get(prefix, Some(GetOptions::new().with_prefix())),
        )
        .await;
        let resp = self.check(r)?;
        let mut out = Vec::new();
        let mut live = HashMap::new();
        for kv in resp.kvs() {
            let expires = self.expiry(kv.lease()).await?;
            if let Some(t) = expires {
                live.insert(kv.lease(), t);
            }
            out.push(Entry {
                key: String::from_utf8_lossy(kv.key()).into_owned(),
                value: String::from_utf8_lossy(kv.value()).into_owned(),
                expires,
            });
        }
        self.expiries = live;
        Ok(out)
    }

    /// When the etcd lease `id` runs out (asked once per lease; renewals take new ones).
    /// A failed question fails the listing, like any other request.
    async fn expiry(&mut self, id: i64) -> Result<Option<SystemTime>, StoreError> {
        if id == 0 {
            return Ok(None);
        }
        if let Some(t) = self.expiries.get(&id) {
            return Ok(Some(*t));
        }
        let r = bounded(self.client().await?.lease_time_to_live(id, None)).await;
        let ttl = self.check(r)?.ttl();
        Ok((ttl >= 0).then(|| SystemTime::now() + Duration::from_secs(ttl as u64)))
    }

    pub async fn changed(&mut self, prefix: &str) -> Result<(), StoreError> {
        if self.watch.is_none() {
            let r = bounded(
                self.client()
                    .await?
                    .watch(prefix, Some(WatchOptions::new().with_prefix())),
            )
            .await;
            self.watch = Some(self.check(r)?);
            // A new watch starts after the caller's last listing may have missed a
            // change: report one so it lists again.
            return Ok(());
        }
        let r = self.watch.as_mut().expect("watching").message().await;
        match self.check(r)? {
            Some(resp) => {
                if resp.canceled() {
                    // Cancelled by the server (e.g. compaction): watch afresh.
                    self.watch = None;
                }
                Ok(())
            }
            None => {
                self.forget();
                Err(StoreError::Timeout(Duration::ZERO))
            }
        }
    }
}
