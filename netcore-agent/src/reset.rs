//! `netcore reset`: removes everything an agent made for its node (pods, bridge,
//! masquerade table, pinned programs and maps, state), with the agent stopped.

use anyhow::Context;

use crate::{config::AgentConfig, datapath, masq, netlink, netns, state::NodeState};

pub async fn reset(cfg: &AgentConfig) -> anyhow::Result<()> {
    if std::os::unix::net::UnixStream::connect(&cfg.api_socket).is_ok() {
        anyhow::bail!(
            "the agent is running (it answers on {}): stop it first",
            cfg.api_socket.display()
        );
    }
    let nl = netlink::connect()?;
    if let Ok(state) = NodeState::load(&cfg.state_dir) {
        for pod in state.pods.values() {
            netlink::del_link(&nl, &pod.host_if).await?;
            if pod.owns_netns {
                netns::delete(&pod.netns)?;
            }
        }
    }
    netlink::del_link(&nl, &cfg.bridge).await?;
    netlink::del_link(&nl, &cfg.vxlan_device).await?;
    datapath::remove_all_filters(&cfg.state_dir);
    masq::remove()?;
    datapath::remove_pins(&datapath::layout_dir(&cfg.pin_dir))
        .with_context(|| format!("removing pins under {}", cfg.pin_dir.display()))?;
    let _ = std::fs::remove_dir(&cfg.pin_dir);
    for path in [cfg.state_dir.join("node.json"), cfg.api_socket.clone()] {
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing {}", path.display()))
            }
            _ => {}
        }
    }
    let _ = std::fs::remove_dir(&cfg.state_dir);
    Ok(())
}
