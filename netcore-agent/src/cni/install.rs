//! `netcore install-cni`: copies `netcore-cni` into the runtimes' plugin directories
//! and writes a conflist for the network; `--uninstall` removes those files again
//! (a conflist only when it is netcore's). Directories it had to make stay.

use std::{
    io,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use serde_json::{json, Value};

use super::{config, version::Version};

/// The plugin's file name: the `type` in network configs.
pub const PLUGIN: &str = "netcore-cni";
/// Where runtimes look for plugins (`/usr/lib/cni` is Debian's).
pub const DEFAULT_BIN_DIRS: [&str; 2] = ["/opt/cni/bin", "/usr/lib/cni"];
pub const DEFAULT_CONF_DIR: &str = "/etc/cni/net.d";

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("the plugin binary {0} does not exist: build it (`cargo build`) or pass --plugin")]
    PluginMissing(PathBuf),
    #[error(
        "invalid network name {0:?}: a letter or digit, then letters, digits, '_', '.' or '-'"
    )]
    BadNetwork(String),
    #[error("{0} exists and is not netcore's conflist for this network: move it away first")]
    Foreign(PathBuf),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// What to install where.
#[derive(Debug, Clone)]
pub struct Install {
    /// The `netcore-cni` binary to copy.
    pub plugin: PathBuf,
    pub bin_dirs: Vec<PathBuf>,
    pub conf_dir: PathBuf,
    pub network: String,
    /// The agent's API socket, written into the config.
    pub socket: PathBuf,
    pub cni_version: Version,
    /// Plugins run after netcore-cni in the chain, e.g. `portmap`, `bandwidth`.
    pub chain: Vec<String>,
}

impl Install {
    pub fn conflist_path(&self) -> PathBuf {
        self.conf_dir.join(format!("10-{}.conflist", self.network))
    }

    /// The network config runtimes read.
    pub fn conflist(&self) -> Value {
        let mut plugins = vec![json!({"type": PLUGIN, "socket": self.socket})];
        plugins.extend(self.chain.iter().map(|t| chained(t)));
        json!({
            "cniVersion": self.cni_version.as_str(),
            "name": self.network,
            "plugins": plugins,
        })
    }

    /// Installs; returns the files written.
    pub fn install(&self) -> Result<Vec<PathBuf>, InstallError> {
        self.check_network()?;
        if !self.plugin.is_file() {
            return Err(InstallError::PluginMissing(self.plugin.clone()));
        }
        let conflist = self.conflist_path();
        if conflist.exists() && !self.is_ours(&conflist) {
            return Err(InstallError::Foreign(conflist));
        }
        let mut written = Vec::new();
        for dir in &self.bin_dirs {
            let target = dir.join(PLUGIN);
            let bytes = std::fs::read(&self.plugin).map_err(io_at(&self.plugin))?;
            write_atomically(&target, &bytes, 0o755)?;
            written.push(target);
        }
        let text = serde_json::to_string_pretty(&self.conflist()).expect("JSON serializes");
        write_atomically(&conflist, format!("{text}\n").as_bytes(), 0o644)?;
        written.push(conflist);
        Ok(written)
    }

    /// Removes what `install` wrote; returns the files removed.
    pub fn uninstall(&self) -> Result<Vec<PathBuf>, InstallError> {
        self.check_network()?;
        let mut removed = Vec::new();
        let conflist = self.conflist_path();
        if conflist.exists() {
            if !self.is_ours(&conflist) {
                return Err(InstallError::Foreign(conflist));
            }
            std::fs::remove_file(&conflist).map_err(io_at(&conflist))?;
            removed.push(conflist);
        }
        for dir in &self.bin_dirs {
            let target = dir.join(PLUGIN);
            match std::fs::remove_file(&target) {
                Ok(()) => removed.push(target),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_at(&target)(e)),
            }
        }
        Ok(removed)
    }

    fn check_network(&self) -> Result<(), InstallError> {
        if config::valid_name(&self.network) {
            Ok(())
        } else {
            Err(InstallError::BadNetwork(self.network.clone()))
        }
    }

    /// Whether `path` is a conflist for this network whose first plugin is ours.
    fn is_ours(&self, path: &Path) -> bool {
        let Ok(bytes) = std::fs::read(path) else {
            return false;
        };
        let Ok(v) = serde_json::from_slice::<Value>(&bytes) else {
            return false;
        };
        v["name"] == self.network.as_str() && v["plugins"][0]["type"] == PLUGIN
    }
}

/// A chained plugin's entry, with the capabilities runtimes fill in for it.
fn chained(plugin_type: &str) -> Value {
    match plugin_type {
        "portmap" => json!({"type": "portmap", "capabilities": {"portMappings": true}}),
        "bandwidth" => json!({"type": "bandwidth", "capabilities": {"bandwidth": true}}),
        other => json!({ "type": other }),
    }
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> InstallError + '_ {
    move |source| InstallError::Io {
        path: path.into(),
        source,
    }
}

/// Writes through a temporary file and a rename, so runtimes never see half a file.
fn write_atomically(target: &Path, bytes: &[u8], mode: u32) -> Result<(), InstallError> {
    let dir = target.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_at(dir))?;
    let name = target.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.netcore-tmp"));
    let write = || -> io::Result<()> {
        std::fs::write(&tmp, bytes)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
        std::fs::rename(&tmp, target)
    };
    write().map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        InstallError::Io {
            path: target.into(),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("netcore-install-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn spec(dir: &Path) -> Install {
        let plugin = dir.join("built-plugin");
        std::fs::write(&plugin, b"\x7fELF pretend").unwrap();
        Install {
            plugin,
            bin_dirs: vec![dir.join("opt"), dir.join("lib")],
            conf_dir: dir.join("net.d"),
            network: "nc-test".into(),
            socket: "/run/nc-test.sock".into(),
            cni_version: Version::V1_0_0,
            chain: vec!["portmap".into(), "tuning".into()],
        }
    }

    #[test]
    fn installs_and_uninstalls_exactly_its_files() {
        let dir = temp("roundtrip");
        let s = spec(&dir);
        std::fs::create_dir_all(dir.join("net.d")).unwrap();
        std::fs::write(dir.join("net.d/99-other.conflist"), b"{}").unwrap();
        let written = s.install().unwrap();
        assert_eq!(written.len(), 3);
        let bin = dir.join("opt").join(PLUGIN);
        let mode = std::fs::metadata(&bin).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        let conf: Value =
            serde_json::from_slice(&std::fs::read(s.conflist_path()).unwrap()).unwrap();
        assert_eq!(conf["name"], "nc-test");
        assert_eq!(conf["plugins"][0]["socket"], "/run/nc-test.sock");
        assert_eq!(conf["plugins"][1]["capabilities"]["portMappings"], true);
        assert_eq!(
            s.install().unwrap(),
            written,
            "installing again replaces the files"
        );
        let mut removed = s.uninstall().unwrap();
        removed.sort();
        let mut expected = written.clone();
        expected.sort();
        assert_eq!(removed, expected);
        assert!(
            dir.join("net.d/99-other.conflist").exists(),
            "other files stay"
        );
        assert!(
            s.uninstall().unwrap().is_empty(),
            "uninstalling twice is fine"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn leaves_foreign_conflists_alone() {
        let dir = temp("foreign");
        let s = spec(&dir);
        std::fs::create_dir_all(&s.conf_dir).unwrap();
        std::fs::write(
            s.conflist_path(),
            br#"{"name":"nc-test","plugins":[{"type":"bridge"}]}"#,
        )
        .unwrap();
        assert!(matches!(s.install(), Err(InstallError::Foreign(_))));
        assert!(matches!(s.uninstall(), Err(InstallError::Foreign(_))));
        assert!(!dir.join("opt").join(PLUGIN).exists());
        let bad = Install {
            network: "../x".into(),
            ..s.clone()
        };
        assert!(matches!(bad.install(), Err(InstallError::BadNetwork(_))));
        let missing = Install {
            plugin: dir.join("nope"),
            ..s
        };
        assert!(matches!(
            missing.install(),
            Err(InstallError::PluginMissing(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
