//! A real etcd (Debian's etcd-server) for the tests, run inside a namespace the test
//! owns: one member or several, each on its own ports, data in a temporary directory.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{bail, Context, Result};

use crate::{netns::Netns, wait_until};

pub struct Member {
    pub name: String,
    pub client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

pub struct Etcd {
    pub ns_name: String,
    pub ip: String,
    pub members: Vec<Member>,
    dir: PathBuf,
    /// Client TLS (certificates required) and a password, when started secured.
    pub secure: Option<Secure>,
}

/// A secured etcd's PKI (made with openssl) and root password.
pub struct Secure {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    pub user: String,
    pub password: String,
}

impl Secure {
    /// A CA, a server certificate for `ip` and a client certificate, in `dir`.
    fn make(dir: &std::path::Path, ip: &str) -> Result<Secure> {
        std::fs::create_dir_all(dir)?;
        let p = |f: &str| dir.join(f);
        let script = format!(
            "set -e
             cd {dir}
             openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=netcore-test-ca 2>/dev/null
             for who in server client; do
               openssl req -newkey rsa:2048 -nodes -keyout $who.key -out $who.csr -subj /CN=netcore-$who 2>/dev/null
             done
             printf 'subjectAltName=IP:{ip}\nextendedKeyUsage=serverAuth,clientAuth\n' > server.ext
             printf 'extendedKeyUsage=clientAuth\n' > client.ext
             for who in server client; do
               openssl x509 -req -in $who.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out $who.crt -days 2 -extfile $who.ext 2>/dev/null
             done",
            dir = dir.display()
        );
        let out = Command::new("sh").args(["-c", &script]).output()?;
        if !out.status.success() {
            bail!(
                "making the test PKI: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(Secure {
            ca: p("ca.crt"),
            cert: p("client.crt"),
            key: p("client.key"),
            server_cert: p("server.crt"),
            server_key: p("server.key"),
            user: "root".into(),
            password: crate::unique("pw"),
        })
    }

    /// The agent's config lines for it.
    pub fn agent_config(&self) -> String {
        format!(
            "etcd_cafile = \"{}\"\netcd_certfile = \"{}\"\netcd_keyfile = \"{}\"\n\
             etcd_username = \"{}\"\netcd_password = \"{}\"\n",
            self.ca.display(),
            self.cert.display(),
            self.key.display(),
            self.user,
            self.password
        )
    }
}

impl Etcd {
    /// Starts `n` members listening on `ip` inside `ns`.
    pub fn start(ns: &Netns, ip: &str, n: usize, dir: PathBuf) -> Result<Etcd> {
        let members = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: 2379 + 2 * i as u16,
                peer_port: 2380 + 2 * i as u16,
                child: None,
            })
            .collect();
        let mut etcd = Etcd {
            ns_name: ns.name.clone(),
            ip: ip.into(),
            members,
            dir,
            secure: None,
        };
        for i in 0..n {
            etcd.start_member(i, "new")?;
        }
        etcd.wait_healthy()?;
        Ok(etcd)
    }

    /// One member that speaks only TLS, requires a client certificate signed by its
    /// CA, and (once started) a user and password.
    pub fn start_secure(ns: &Netns, ip: &str, dir: PathBuf) -> Result<Etcd> {
        let secure = Secure::make(&dir.join("pki"), ip)?;
        let mut etcd = Etcd {
            ns_name: ns.name.clone(),
            ip: ip.into(),
            members: vec![Member {
                name: "m0".into(),
                client_port: 2379,
                peer_port: 2380,
                child: None,
            }],
            dir,
            secure: Some(secure),
        };
        etcd.start_member(0, "new")?;
        etcd.wait_healthy()?;
        let s = etcd.secure.as_ref().expect("secure");
        let (user, password) = (s.user.clone(), s.password.clone());
        etcd.ctl_as(None, &["user", "add", &format!("{user}:{password}")])?;
        etcd.ctl_as(None, &["user", "grant-role", &user, "root"])?;
        etcd.ctl_as(None, &["auth", "enable"])?;
        Ok(etcd)
    }

    fn scheme(&self) -> &'static str {
        if self.secure.is_some() {
            "https"
        } else {
            "http"
        }
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}=http://{}:{}", m.name, self.ip, m.peer_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Starts (or restarts, with its data) member `i`.
    pub fn start_member(&mut self, i: usize, state: &str) -> Result<()> {
        let cluster = self.initial_cluster();
        let m = &self.members[i];
        let data = self.dir.join(&m.name);
        std::fs::create_dir_all(&data)?;
        let log = std::fs::File::create(self.dir.join(format!("{}.log", m.name)))?;
        let client = format!("{}://{}:{}", self.scheme(), self.ip, m.client_port);
        let peer = format!("http://{}:{}", self.ip, m.peer_port);
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns_name, "etcd", "--name", &m.name])
            .arg("--data-dir")
            .arg(&data)
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args([
                "--initial-cluster",
                &cluster,
                "--initial-cluster-state",
                state,
            ])
            .args(["--initial-cluster-token", "netcore-test"])
            .args(self.secure.iter().flat_map(|s| {
                [
                    "--client-cert-auth".into(),
                    format!("--trusted-ca-file={}", s.ca.display()),
                    format!("--cert-file={}", s.server_cert.display()),
                    format!("--key-file={}", s.server_key.display()),
                ]
            }))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting etcd (Debian package etcd-server)")?;
        self.members[i].child = Some(child);
        Ok(())
    }

    pub fn stop_member(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `etcd://ip:port,…` for the agents' config.
    pub fn url(&self) -> String {
        let eps: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}:{}", self.ip, m.client_port))
            .collect();
        format!("etcd://{}", eps.join(","))
    }

    fn endpoints(&self) -> String {
        self.members
            .iter()
            .filter(|m| m.child.is_some())
            .map(|m| format!("{}://{}:{}", self.scheme(), self.ip, m.client_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Runs etcdctl (v3) against the running members (with the client certificate and
    /// the root user when secured).
    pub fn ctl(&self, args: &[&str]) -> Result<String> {
        let user = self
            .secure
            .as_ref()
            .map(|s| format!("{}:{}", s.user, s.password));
        self.ctl_as(user.as_deref(), args)
    }

    fn ctl_as(&self, user: Option<&str>, args: &[&str]) -> Result<String> {
        let mut tls = Vec::new();
        if let Some(s) = &self.secure {
            tls.push(format!("--cacert={}", s.ca.display()));
            tls.push(format!("--cert={}", s.cert.display()));
            tls.push(format!("--key={}", s.key.display()));
        }
        if let Some(u) = user {
            tls.push(format!("--user={u}"));
        }
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns_name,
                "etcdctl",
                "--endpoints",
                &self.endpoints(),
            ])
            .args(&tls)
            .args(args)
            .env("ETCDCTL_API", "3")
            .output()?;
        if !out.status.success() {
            bail!("etcdctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `etcdctl put`, retried while the cluster elects a leader.
    pub fn put(&self, key: &str, value: &str) -> Result<()> {
        let mut last = None;
        let done = wait_until(
            Duration::from_secs(20),
            &format!("etcd to accept a write of {key}"),
            || match self.ctl(&["put", key, value]) {
                Ok(_) => true,
                Err(e) => {
                    last = Some(e);
                    false
                }
            },
        );
        done.with_context(|| format!("last error: {last:?}"))
    }

    /// The revision at which `key` was created: it changes when the key is deleted
    /// (or expires) and written again.
    pub fn create_revision(&self, key: &str) -> Result<Option<i64>> {
        let out = self.ctl(&["get", key, "-w", "json"])?;
        let v: serde_json::Value = serde_json::from_str(&out).context("etcdctl's JSON")?;
        Ok(v["kvs"][0]["create_revision"].as_i64())
    }

    pub fn wait_healthy(&self) -> Result<()> {
        wait_until(Duration::from_secs(30), "etcd to become healthy", || {
            self.ctl(&["endpoint", "health"]).is_ok()
        })
        .with_context(|| std::fs::read_to_string(self.dir.join("m0.log")).unwrap_or_default())
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.stop_member(i);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
