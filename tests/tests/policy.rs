//! Network policy, in the style of Kubernetes' own network-policy e2e suite: three
//! namespaces (x, y, z) of three pods (a, b, c) over two nodes sharing a file store;
//! after each policy change every pod probes every pod on TCP 80 and 81 and UDP 80 and
//! 53, and the outcome must match the case's truth table (polled: the other node gets
//! the change through the store).

use std::net::SocketAddr;

use anyhow::{bail, Context, Result};
use netcore_agent::{agent::PolicyInfo, api::PodInfo};
use netcore_tests::{
    cluster::{Cluster, Node, Spec, StoreSpec},
    echo,
    probe::{self, Outcome, Proto, Target},
    watcher::Watcher,
};

const NAMESPACES: [&str; 3] = ["x", "y", "z"];
const PODS: [&str; 3] = ["a", "b", "c"];
const PORTS: [(Proto, u16); 4] = [
    (Proto::Tcp, 80),
    (Proto::Tcp, 81),
    (Proto::Udp, 80),
    (Proto::Udp, 53),
];

struct Bed {
    c: Cluster,
    pods: Vec<Target>,
    infos: Vec<PodInfo>,
}

impl Bed {
    fn new() -> Result<Bed> {
        let c = Cluster::new(Spec {
            nodes: 2,
            store: StoreSpec::File,
            ..Spec::default()
        })?;
        let mut pods = Vec::new();
        let mut infos = Vec::new();
        for (i, (ns, pod)) in NAMESPACES
            .iter()
            .flat_map(|n| PODS.iter().map(move |p| (*n, *p)))
            .enumerate()
        {
            let node = c.node(1 + i % 2);
            let name = c.pod_name(&format!("{ns}{pod}"));
            let label = format!("pod={pod}");
            let mut args = vec!["pod", "add", &name, "--namespace", ns, "--label", &label];
            // Named as Kubernetes' e2e suite names its pods' ports; "web" is a different
            // port on a and b, and c has none.
            args.extend([
                "--port=serve-80-tcp=80",
                "--port=serve-81-tcp=81",
                "--port=serve-80-udp=80/UDP",
                "--port=serve-53-udp=53/UDP",
            ]);
            match pod {
                "a" => args.push("--port=web=80"),
                "b" => args.push("--port=web=81"),
                _ => {}
            }
            let info: PodInfo = node.cli_json(&args)?;
            let who = format!("{ns}/{pod}");
            for (proto, port) in PORTS {
                match proto {
                    Proto::Tcp => echo::tcp_server(&info.netns, port, &who)?,
                    Proto::Udp => echo::udp_server(&info.netns, port, &who)?,
                }
            }
            pods.push(Target {
                name: who,
                ip: info.ip,
                netns: info.netns.clone(),
            });
            infos.push(info);
        }
        for ns in NAMESPACES {
            c.node(1)
                .cli(&["namespace", "label", ns, &format!("ns={ns}")])?;
        }
        Ok(Bed { c, pods, infos })
    }

    fn n1(&self) -> &Node {
        self.c.node(1)
    }

    fn apply(&self, yaml: &str) -> Result<()> {
        let file = self.c.dir().join("policy.yaml");
        std::fs::write(&file, yaml)?;
        self.n1()
            .cli(&["policy", "apply", "-f", &file.display().to_string()])?;
        Ok(())
    }

    fn delete_all(&self) -> Result<()> {
        let list: Vec<PolicyInfo> = self.n1().cli_json(&["policy", "list"])?;
        for p in list {
            self.n1()
                .cli(&["policy", "del", &format!("{}/{}", p.namespace, p.name)])?;
        }
        Ok(())
    }

    /// Probes until the outcome matches `want` (the change has to reach both nodes).
    fn expect(&self, case: &str, want: impl Fn(&str, &str, Proto, u16) -> bool) -> Result<()> {
        self.expect_via(case, |t, port| Some(SocketAddr::from((t.ip, port))), want)
    }

    fn expect_via(
        &self,
        case: &str,
        dst: impl Fn(&Target, u16) -> Option<SocketAddr> + Sync,
        want: impl Fn(&str, &str, Proto, u16) -> bool,
    ) -> Result<()> {
        let deadline = std::time::Instant::now() + probe::settle_time();
        loop {
            let got: Outcome = probe::matrix(&self.pods, &PORTS, &dst);
            let diff = probe::differences(&got, &want);
            if diff.is_empty() {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                bail!(
                    "{case}: the reachability differs from the truth table:\n{}",
                    diff.join("\n")
                );
            }
        }
    }
}

fn ns(p: &str) -> &str {
    p.split('/').next().unwrap_or_default()
}

fn pod(p: &str) -> &str {
    p.split('/').nth(1).unwrap_or_default()
}

const HEAD: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n";

#[test]
fn kubernetes_network_policy_cases_hold_on_both_nodes() -> Result<()> {
    let bed = Bed::new()?;
    bed.expect("no policy", |_, _, _, _| true)?;

    // Deny all ingress in x.
    bed.apply(&format!("{HEAD}  name: deny-ingress\n  namespace: x\nspec:\n  podSelector: {{}}\n  policyTypes: [Ingress]\n"))?;
    bed.expect("deny-all ingress", |f, t, _, _| ns(t) != "x" || f == t)?;
    let denied = bed.n1().counter("dropped-policy")? + bed.c.node(2).counter("dropped-policy")?;
    assert!(denied > 0, "denials are counted as dropped-policy");

    // ... and allow from the same namespace.
    bed.apply(&format!(
        "{HEAD}  name: same-ns\n  namespace: x\nspec:\n  podSelector: {{}}\n  ingress:\n  - from:\n    - podSelector: {{}}\n"
    ))?;
    bed.expect("allow from the same namespace", |f, t, _, _| {
        ns(t) != "x" || ns(f) == "x"
    })?;
    bed.delete_all()?;

    // x/a from namespaces labelled ns in (y).
    bed.apply(&format!(
        "{HEAD}  name: from-y\n  namespace: x\nspec:\n  podSelector:\n    matchLabels: {{pod: a}}\n  ingress:\n  - from:\n    - namespaceSelector:\n        matchExpressions:\n        - {{key: ns, operator: In, values: [y]}}\n"
    ))?;
    bed.expect("allow by namespaceSelector", |f, t, _, _| {
        t != "x/a" || ns(f) == "y" || f == t
    })?;
    bed.delete_all()?;

    // Both selectors in one peer: y/b only; as two peers: all of y, and x/b.
    bed.apply(&format!(
        "{HEAD}  name: and\n  namespace: x\nspec:\n  podSelector:\n    matchLabels: {{pod: a}}\n  ingress:\n  - from:\n    - namespaceSelector: {{matchLabels: {{ns: y}}}}\n      podSelector: {{matchLabels: {{pod: b}}}}\n"
    ))?;
    bed.expect("podSelector AND namespaceSelector", |f, t, _, _| {
        t != "x/a" || f == "y/b" || f == t
    })?;
    bed.apply(&format!(
        "{HEAD}  name: and\n  namespace: x\nspec:\n  podSelector:\n    matchLabels: {{pod: a}}\n  ingress:\n  - from:\n    - namespaceSelector: {{matchLabels: {{ns: y}}}}\n    - podSelector: {{matchLabels: {{pod: b}}}}\n"
    ))?;
    bed.expect("podSelector OR namespaceSelector", |f, t, _, _| {
        t != "x/a" || ns(f) == "y" || f == "x/b" || f == t
    })?;
    bed.delete_all()?;
    Ok(())
}

#[test]
fn named_ports_mean_the_destination_pods_own_port() -> Result<()> {
    let bed = Bed::new()?;
    // Kubernetes' "should allow ingress access on one named port".
    bed.apply(&format!(
        "{HEAD}  name: named-ingress\n  namespace: x\nspec:\n  podSelector: {{}}\n  ingress:\n  - ports:\n    - port: serve-81-tcp\n"
    ))?;
    bed.expect("ingress on one named port", |f, t, p, port| {
        ns(t) != "x" || f == t || (p == Proto::Tcp && port == 81)
    })?;
    bed.delete_all()?;
    // Egress to a name each destination numbers its own way (some on the other node,
    // known through the store): a's web is 80, b's 81, c has none.
    bed.apply(&format!(
        "{HEAD}  name: named-egress\n  namespace: y\nspec:\n  podSelector: {{}}\n  policyTypes: [Egress]\n  egress:\n  - ports:\n    - port: web\n"
    ))?;
    bed.expect(
        "egress on a named port numbered per pod",
        |f, t, p, port| {
            let web = match pod(t) {
                "a" => Some(80),
                "b" => Some(81),
                _ => None,
            };
            ns(f) != "y" || f == t || (p == Proto::Tcp && web == Some(port))
        },
    )?;
    bed.delete_all()?;
    // A UDP name does not open the TCP port of the same number.
    bed.apply(&format!(
        "{HEAD}  name: named-udp\n  namespace: z\nspec:\n  podSelector:\n    matchLabels: {{pod: c}}\n  ingress:\n  - ports:\n    - {{port: serve-80-udp, protocol: UDP}}\n"
    ))?;
    bed.expect("ingress on a named UDP port", |f, t, p, port| {
        t != "z/c" || f == t || (p == Proto::Udp && port == 80)
    })?;
    bed.delete_all()?;
    Ok(())
}

#[test]
fn ip_blocks_egress_dns_port_ranges_and_services() -> Result<()> {
    let bed = Bed::new()?;
    let yb = bed.pods.iter().find(|p| p.name == "y/b").expect("y/b").ip;
    // x/a may reach the pod network except y/b.
    bed.apply(&format!(
        "{HEAD}  name: cidr\n  namespace: x\nspec:\n  podSelector:\n    matchLabels: {{pod: a}}\n  policyTypes: [Egress]\n  egress:\n  - to:\n    - ipBlock:\n        cidr: 10.244.0.0/16\n        except: [{yb}/32]\n"
    ))?;
    bed.expect("ipBlock with except", |f, t, _, _| f != "x/a" || t != "y/b")?;
    bed.delete_all()?;

    // Egress denied in x but for DNS; what others open to x is answered (replies pass).
    bed.apply(&format!(
        "{HEAD}  name: dns-only\n  namespace: x\nspec:\n  podSelector: {{}}\n  policyTypes: [Egress]\n  egress:\n  - ports:\n    - {{protocol: UDP, port: 53}}\n"
    ))?;
    bed.expect("egress deny-all with DNS allowed", |f, t, p, port| {
        ns(f) != "x" || f == t || (p == Proto::Udp && port == 53)
    })?;
    bed.delete_all()?;

    // x/a takes TCP 81 to 82 only.
    bed.apply(&format!(
        "{HEAD}  name: range\n  namespace: x\nspec:\n  podSelector:\n    matchLabels: {{pod: a}}\n  ingress:\n  - ports:\n    - {{protocol: TCP, port: 81, endPort: 82}}\n"
    ))?;
    bed.expect("a port range", |f, t, p, port| {
        t != "x/a" || f == t || (p == Proto::Tcp && port == 81)
    })?;
    bed.delete_all()?;

    // A service in front of x/a: policy applies to the backend after translation.
    let xa = bed.pods.iter().find(|p| p.name == "x/a").expect("x/a").ip;
    for (vip, proto) in [("10.96.0.80:80/tcp", "tcp"), ("10.96.0.80:80/udp", "udp")] {
        let backend = format!("{xa}:80");
        bed.n1().cli(&[
            "service",
            "add",
            &format!("to-xa-{proto}"),
            "--vip",
            vip,
            "--backend",
            &backend,
        ])?;
    }
    bed.apply(&format!(
        "{HEAD}  name: from-y\n  namespace: x\nspec:\n  podSelector:\n    matchLabels: {{pod: a}}\n  ingress:\n  - from:\n    - namespaceSelector: {{matchLabels: {{ns: y}}}}\n"
    ))?;
    let vip = |t: &Target, port: u16| {
        (t.name == "x/a" && port == 80).then(|| SocketAddr::from(([10, 96, 0, 80], 80)))
    };
    bed.expect_via("a service's backend", vip, |f, _, _, _| {
        ns(f) == "y" || f == "x/a"
    })?;

    // Removing the policy restores everything.
    bed.delete_all()?;
    bed.expect("policies removed", |_, _, _, _| true)?;
    let list: Vec<PolicyInfo> = bed.n1().cli_json(&["policy", "list"])?;
    assert!(list.is_empty());
    Ok(())
}

/// Hits per policy, the monitor's policy drops, and invalid policies refused whole.
#[test]
fn policies_show_hits_and_denials_and_bad_ones_change_nothing() -> Result<()> {
    let bed = Bed::new()?;
    let (xa, yb) = (&bed.infos[0], &bed.infos[4]);
    assert_eq!((xa.namespace.as_str(), yb.namespace.as_str()), ("x", "y"));
    bed.apply(&format!(
        "{HEAD}  name: from-y\n  namespace: x\nspec:\n  podSelector:\n    matchLabels: {{pod: a}}\n  ingress:\n  - from:\n    - namespaceSelector: {{matchLabels: {{ns: y}}}}\n    ports:\n    - port: 80\n"
    ))?;
    bed.expect("allowed from y on TCP 80", |f, t, p, port| {
        t != "x/a" || f == t || (ns(f) == "y" && p == Proto::Tcp && port == 80)
    })?;
    // x/a lives on node 1 (the first pod): its node counts the hits and sees the drops.
    let n1 = bed.n1();
    let list: Vec<PolicyInfo> = n1.cli_json(&["policy", "list"])?;
    let p = list
        .iter()
        .find(|p| p.name == "from-y")
        .context("from-y listed")?;
    assert!(
        p.hits >= 3,
        "every allowed flow from y is a hit: {}",
        p.hits
    );
    assert_eq!(p.pods, vec![xa.name.clone()], "it selects x/a here");
    let watcher = Watcher::start(n1, &["--drops"])?;
    let denied_from = &bed.infos[2]; // x/c, on node 1 too
    assert!(!probe::tcp(
        &denied_from.netns,
        SocketAddr::from((xa.ip, 80))
    ));
    let line = watcher.wait_for("a policy drop", |v| {
        v["reason"] == "dropped-policy"
            && v["dst"] == xa.ip.to_string()
            && v["src"] == denied_from.ip.to_string()
    })?;
    assert_eq!(line["dport"], 80);
    assert_eq!(line["proto"], "tcp");
    assert_eq!(
        line["policy"], "ingress: x/from-y",
        "the policies that isolate x/a: {line}"
    );

    let before = serde_json::to_value(n1.cli_json::<Vec<PolicyInfo>>(&["policy", "list"])?)?;
    let bad = [
        ("unknown field", format!("{HEAD}  name: bad\n  namespace: x\nspec:\n  podSelector: {{}}\n  egres: []\n"), "unknown field"),
        ("bad CIDR", format!("{HEAD}  name: bad\n  namespace: x\nspec:\n  podSelector: {{}}\n  ingress:\n  - from:\n    - ipBlock: {{cidr: 10.0.0.0/33}}\n"), "is not a CIDR"),
        ("bad operator", format!("{HEAD}  name: bad\n  namespace: x\nspec:\n  podSelector:\n    matchExpressions:\n    - {{key: pod, operator: Equals, values: [a]}}\n"), "not a valid selector operator"),
        ("endPort with a named port", format!("{HEAD}  name: bad\n  namespace: x\nspec:\n  podSelector: {{}}\n  ingress:\n  - ports:\n    - {{port: web, endPort: 90}}\n"), "endPort may not be given with a named port"),
        ("bad port name", format!("{HEAD}  name: bad\n  namespace: x\nspec:\n  podSelector: {{}}\n  ingress:\n  - ports:\n    - {{port: Web_1}}\n"), "not an IANA service name"),
        ("one good, one bad", format!("{HEAD}  name: good\n  namespace: x\nspec:\n  podSelector: {{}}\n---\n{HEAD}  name: bad\n  namespace: x\nspec:\n  podSelector: {{}}\n  policyTypes: [Sideways]\n"), "Sideways"),
    ];
    for (what, yaml, says) in bad {
        let file = bed.c.dir().join("bad.yaml");
        std::fs::write(&file, yaml)?;
        let out = n1.cli_output(&["policy", "apply", "-f", &file.display().to_string()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(says),
            "{what}: refused saying {says:?}, got {err:?}"
        );
    }
    let after = serde_json::to_value(n1.cli_json::<Vec<PolicyInfo>>(&["policy", "list"])?)?;
    let without_hits = |mut v: serde_json::Value| {
        v.as_array_mut()
            .into_iter()
            .flatten()
            .for_each(|p| p["hits"] = 0.into());
        v
    };
    assert_eq!(
        without_hits(before),
        without_hits(after),
        "refused policies change nothing"
    );
    Ok(())
}
