//! The kernel side of a node: the attach mode the agent chose or was told to use, its
//! programs on the interfaces as the kernel reports them, and in-place replacement
//! when the agent restarts, in both attach modes.

use anyhow::Result;
use netcore_tests::{
    attached::{ingress_programs, kernel_has_tcx},
    cluster::{Cluster, Spec},
};

fn node_with(config: &str) -> Result<Cluster> {
    Cluster::new(Spec {
        extra_config: config.into(),
        ..Spec::default()
    })
}

/// The kernel names the program `want`, or names none (Linux 6.1 here: the loader
/// finds it cannot name programs).
fn named(name: &str, want: &str) -> bool {
    name.is_empty() || name == want
}

/// The attach modes this kernel can run.
fn modes() -> Vec<&'static str> {
    if kernel_has_tcx() {
        vec!["tcx", "tc"]
    } else {
        vec!["tc"]
    }
}

#[test]
fn the_agent_reports_its_modes_and_the_kernel_shows_its_programs() -> Result<()> {
    for (attach, decap) in [("tc", "device"), ("auto", "auto"), ("auto", "tc")] {
        let c = node_with(&format!("attach = \"{attach}\"\ndecap = \"{decap}\""))?;
        let st = c.node(1).status()?;
        let want = match attach {
            "auto" if kernel_has_tcx() => "tcx",
            "auto" => "tc",
            forced => forced,
        };
        assert_eq!(st.datapath.attach, want, "attach = {attach} on this kernel");
        assert_eq!(st.datapath.decap, decap);
        assert!(
            !st.datapath.kernel.is_empty(),
            "the kernel release is reported"
        );
        let ns = &c.node(1).ns;
        for (ifname, program) in [("ul0", "from_uplink"), ("nc-vxlan", "from_overlay")] {
            let progs = ingress_programs(ns, ifname)?;
            assert!(
                progs.len() == 1 && named(&progs[0].0, program),
                "{ifname} carries exactly {program} (attach = {attach}), the kernel says: {progs:?}"
            );
        }
    }
    Ok(())
}

#[test]
fn a_restarted_agent_replaces_its_programs_in_place() -> Result<()> {
    for mode in modes() {
        let mut c = node_with(&format!("attach = \"{mode}\""))?;
        let ns = c.node(1).ns.name.clone();
        let before = ingress_programs(&c.node(1).ns, "ul0")?;
        c.node_mut(1).kill_agent();
        let while_down = ingress_programs(&c.node(1).ns, "ul0")?;
        assert_eq!(
            while_down, before,
            "{mode}: the program stays while the agent is down ({ns})"
        );
        c.node_mut(1).start_agent()?;
        let after = ingress_programs(&c.node(1).ns, "ul0")?;
        assert_eq!(
            after.len(),
            1,
            "{mode}: one program after the restart, not two: {after:?}"
        );
        assert!(named(&after[0].0, "from_uplink"), "{after:?}");
        assert_ne!(
            after[0].1, before[0].1,
            "{mode}: the restarted agent's newly loaded program replaced the old one"
        );
    }
    Ok(())
}

#[test]
fn changing_the_attach_mode_leaves_no_old_attachment() -> Result<()> {
    if !kernel_has_tcx() {
        return Ok(()); // one mode only: nothing to change between
    }
    let mut c = node_with("attach = \"tc\"")?;
    c.node_mut(1).kill_agent();
    let config =
        std::fs::read_to_string(&c.node(1).config)?.replace("attach = \"tc\"", "attach = \"tcx\"");
    std::fs::write(&c.node(1).config, config)?;
    c.node_mut(1).start_agent()?;
    assert_eq!(c.node(1).status()?.datapath.attach, "tcx");
    let progs = ingress_programs(&c.node(1).ns, "ul0")?;
    assert_eq!(
        progs.len(),
        1,
        "the clsact filter went when TCX took over: {progs:?}"
    );
    Ok(())
}

#[test]
fn forcing_tcx_where_the_kernel_has_none_is_refused_by_name() -> Result<()> {
    let result = node_with("attach = \"tcx\"");
    if kernel_has_tcx() {
        assert_eq!(result?.node(1).status()?.datapath.attach, "tcx");
    } else {
        let err = format!(
            "{:#}",
            result.err().expect("the agent must refuse to start")
        );
        assert!(
            err.contains("TCX") && err.contains("6.6"),
            "the refusal names TCX and the Linux version that has it: {err}"
        );
    }
    Ok(())
}
