//! Packet tests: each program run on crafted frames (BPF_PROG_TEST_RUN); the verdict,
//! the bytes that come out and the counters are checked.

use std::net::Ipv4Addr;

use anyhow::Result;
use netcore_agent::mac::Mac;
use netcore_agent::maps::service::key;
use netcore_common::{
    config::{FLAG_DEVICE_DECAP, FLAG_READY, FLAG_SERVICES, FLAG_TC_DECAP},
    pin::{PROG_FROM_HOST, PROG_FROM_OVERLAY, PROG_FROM_POD, PROG_FROM_UPLINK},
    service::ServiceInfo,
};
use netcore_tests::{
    packets::{self, checksum, ethernet, ipv4_tcp, ipv4_udp, Tcp, ETH_P_IPV4},
    progtest::{identity, Identity, Loaded},
};

const TC_ACT_OK: i32 = 0;
const TC_ACT_SHOT: i32 = 2;
const TC_ACT_REDIRECT: i32 = 7;

const POD_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
const POD_MAC: Mac = Mac([0x02, 0, 0, 0, 0xaa, 0x02]);
/// Test runs see the loopback device as the receiving interface: pods that send in
/// these tests "live" behind it.
const POD_HOST_IFINDEX: u32 = 1;
const SENDER_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 9);
const REMOTE_POD: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 5);
const REMOTE_NODE: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 12);
const REMOTE_VTEP: Mac = Mac([0x02, 0, 0, 0, 0x0e, 0x02]);

fn node() -> Result<(Loaded, Identity)> {
    let id = identity();
    let mut l = Loaded::new(&id)?;
    l.maps.endpoints.insert(POD_IP, POD_HOST_IFINDEX, POD_MAC)?;
    l.maps.endpoints.insert(
        SENDER_IP,
        POD_HOST_IFINDEX,
        Mac([0x02, 0, 0, 0, 0xaa, 0x09]),
    )?;
    l.maps
        .nodes
        .insert("10.244.2.0/24".parse()?, REMOTE_NODE, REMOTE_VTEP)?;
    l.maps
        .nodes
        .insert("192.168.50.12/32".parse()?, REMOTE_NODE, REMOTE_VTEP)?;
    Ok((l, id))
}

/// A frame a pod sends: to `dst`, from the pod, addressed to the gateway's MAC.
fn from_pod_frame(id: &Identity, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    ethernet(
        id.gateway_mac.0,
        [0x02, 0, 0, 0, 0xaa, 0x09],
        ETH_P_IPV4,
        &ipv4_udp(src, dst, 1234, 80, b"hello, pod"),
    )
}

/// VXLAN as a remote node sends it to us.
fn vxlan_frame(id: &Identity, outer_src: Ipv4Addr, vni: u32, inner: &[u8]) -> Vec<u8> {
    let mut payload = packets::vxlan_header(0x08, vni).to_vec();
    payload.extend_from_slice(&ethernet(id.vtep_mac.0, REMOTE_VTEP.0, ETH_P_IPV4, inner));
    let outer = ipv4_udp(outer_src, id.node_ip, 50000, 8472, &payload);
    ethernet(
        [0x02, 0, 0, 0, 0x0b, 0x01],
        [0x02, 0, 0, 0, 0x0b, 0x02],
        ETH_P_IPV4,
        &outer,
    )
}

#[test]
fn a_pod_to_pod_frame_is_redirected_with_gateway_and_pod_macs() -> Result<()> {
    let (l, id) = node()?;
    let frame = from_pod_frame(&id, SENDER_IP, POD_IP);
    let run = l.run(PROG_FROM_POD, &frame)?;
    assert_eq!(
        run.verdict, TC_ACT_REDIRECT,
        "a local pod is reached by redirect"
    );
    assert_eq!(&run.out[0..6], &POD_MAC.0, "destination MAC is the pod's");
    assert_eq!(
        &run.out[6..12],
        &id.gateway_mac.0,
        "source MAC is the gateway's"
    );
    assert_eq!(&run.out[12..], &frame[12..], "nothing else changes");
    assert_eq!(l.counter("redirected-local"), 1);
    Ok(())
}

#[test]
fn a_frame_for_a_remote_pod_is_wrapped_in_flannel_vxlan() -> Result<()> {
    let (l, id) = node()?;
    let frame = from_pod_frame(&id, SENDER_IP, REMOTE_POD);
    let run = l.run(PROG_FROM_POD, &frame)?;
    assert_eq!(
        run.verdict, TC_ACT_REDIRECT,
        "encapsulated frames are redirected to the uplink"
    );
    let out = &run.out;
    assert_eq!(out.len(), frame.len() + 50, "VXLAN adds 50 bytes");
    assert_eq!(&out[12..14], &ETH_P_IPV4.to_be_bytes());
    let ip = &out[14..34];
    assert_eq!(ip[0], 0x45);
    assert_eq!(checksum(ip), 0, "the outer IPv4 checksum is valid");
    assert_eq!((ip[6], ip[7]), (0x40, 0), "DF set, never a fragment");
    assert_eq!(
        u16::from_be_bytes([ip[2], ip[3]]) as usize,
        out.len() - 14,
        "outer total length"
    );
    assert_eq!((ip[8], ip[9]), (64, 17), "TTL 64, UDP");
    assert_eq!(
        &ip[12..16],
        &id.node_ip.octets(),
        "outer source is this node"
    );
    assert_eq!(
        &ip[16..20],
        &REMOTE_NODE.octets(),
        "outer destination is the remote node"
    );
    let udp = &out[34..42];
    let sport = u16::from_be_bytes([udp[0], udp[1]]);
    assert!(
        (32768..61000).contains(&sport),
        "source port {sport} from the flow hash"
    );
    assert_eq!(u16::from_be_bytes([udp[2], udp[3]]), 8472);
    assert_eq!(
        u16::from_be_bytes([udp[4], udp[5]]) as usize,
        out.len() - 34,
        "UDP length"
    );
    assert_eq!(
        &out[42..50],
        &[0x08, 0, 0, 0, 0, 0, 1, 0],
        "VXLAN I flag and VNI 1"
    );
    assert_eq!(
        &out[50..56],
        &REMOTE_VTEP.0,
        "inner destination MAC is the remote VTEP"
    );
    assert_eq!(&out[56..62], &id.vtep_mac.0, "inner source MAC is our VTEP");
    assert_eq!(&out[62..64], &ETH_P_IPV4.to_be_bytes());
    assert_eq!(
        &out[64..],
        &frame[14..],
        "the inner packet is the pod's, untouched"
    );
    assert_eq!(l.counter("encapsulated"), 1);

    let again = l.run(PROG_FROM_POD, &frame)?;
    assert_eq!(
        &again.out[34..36],
        &out[34..36],
        "one flow keeps one source port"
    );
    Ok(())
}

#[test]
fn other_traffic_from_a_pod_passes_untouched() -> Result<()> {
    let (l, id) = node()?;
    for (what, frame) in [
        (
            "the outside world",
            from_pod_frame(&id, SENDER_IP, Ipv4Addr::new(192, 0, 2, 1)),
        ),
        ("the gateway", from_pod_frame(&id, SENDER_IP, id.gateway)),
        (
            "ARP for the gateway",
            arp(SENDER_MAC, SENDER_MAC, SENDER_IP, id.gateway),
        ),
        (
            "an ARP probe",
            arp(SENDER_MAC, SENDER_MAC, Ipv4Addr::UNSPECIFIED, SENDER_IP),
        ),
    ] {
        let run = l.run(PROG_FROM_POD, &frame)?;
        assert_eq!(
            run.verdict, TC_ACT_OK,
            "traffic to {what} takes the normal path"
        );
        assert_eq!(run.out, frame, "traffic to {what} is not modified");
    }
    assert_eq!(l.counter("passed"), 4);
    Ok(())
}

/// An ARP request from `eth_src`, sender `sha`/`spa`, asking for `tpa`.
fn arp(eth_src: [u8; 6], sha: [u8; 6], spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
    let mut body = vec![0, 1, 8, 0, 6, 4, 0, 1];
    body.extend_from_slice(&sha);
    body.extend_from_slice(&spa.octets());
    body.extend_from_slice(&[0; 6]);
    body.extend_from_slice(&tpa.octets());
    ethernet([0xff; 6], eth_src, 0x0806, &body)
}

#[test]
fn a_pod_speaks_at_l2_only_as_itself() -> Result<()> {
    let (l, id) = node()?;
    let other_mac = POD_MAC.0;
    let mut ipv6_ra = vec![0x60, 0, 0, 0, 0, 16, 58, 255];
    ipv6_ra.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    ipv6_ra.extend_from_slice(&[0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    ipv6_ra.extend_from_slice(&[134, 0, 0, 0, 64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0]);
    let mut spoofed_mac = from_pod_frame(&id, SENDER_IP, POD_IP);
    spoofed_mac[6..12].copy_from_slice(&other_mac);
    let cases = [
        (
            "dropped-spoofed-arp",
            "a gratuitous ARP claiming the gateway",
            arp(SENDER_MAC, SENDER_MAC, id.gateway, id.gateway),
        ),
        (
            "dropped-spoofed-arp",
            "ARP with another pod's MAC as sender",
            arp(SENDER_MAC, other_mac, SENDER_IP, id.gateway),
        ),
        (
            "dropped-spoofed-mac",
            "an ARP frame from another pod's MAC",
            arp(other_mac, other_mac, POD_IP, id.gateway),
        ),
        (
            "dropped-spoofed-mac",
            "an IPv4 frame from another pod's MAC",
            spoofed_mac,
        ),
        (
            "dropped-ether-type",
            "an IPv6 router advertisement",
            ethernet([0x33, 0x33, 0, 0, 0, 1], SENDER_MAC, 0x86dd, &ipv6_ra),
        ),
        (
            "dropped-ether-type",
            "a VLAN-tagged frame",
            ethernet([0xff; 6], SENDER_MAC, 0x8100, &[0u8; 46]),
        ),
    ];
    for (reason, what, frame) in cases {
        let before = l.counter(reason);
        let run = l.run(PROG_FROM_POD, &frame)?;
        assert_eq!(run.verdict, TC_ACT_SHOT, "{what}: dropped");
        assert_eq!(l.counter(reason), before + 1, "{what}: counted as {reason}");
    }
    Ok(())
}

/// The node in the forced "tc" decap mode: `from_uplink` unwraps everything.
fn tc_decap_node() -> Result<(Loaded, Identity)> {
    node_in(FLAG_TC_DECAP)
}

fn node_in(decap_flag: u16) -> Result<(Loaded, Identity)> {
    let (mut l, id) = node()?;
    l.set_flags(&id, FLAG_READY | decap_flag)?;
    Ok((l, id))
}

/// Decap modes by their flags: "auto" (none), "tc", "device".
const AUTO: u16 = 0;

#[test]
fn vxlan_for_a_local_pod_is_unwrapped_into_it() -> Result<()> {
    for mode in [AUTO, FLAG_TC_DECAP] {
        let (l, id) = node_in(mode)?;
        let inner = ipv4_udp(REMOTE_POD, POD_IP, 999, 80, b"from afar");
        let run = l.run(PROG_FROM_UPLINK, &vxlan_frame(&id, REMOTE_NODE, 1, &inner))?;
        assert_eq!(
            run.verdict, TC_ACT_REDIRECT,
            "delivered by redirect into the pod (decap flags {mode})"
        );
        assert_eq!(&run.out[0..6], &POD_MAC.0);
        assert_eq!(&run.out[6..12], &id.gateway_mac.0);
        assert_eq!(&run.out[12..14], &ETH_P_IPV4.to_be_bytes());
        assert_eq!(&run.out[14..], &inner[..], "the inner packet arrives whole");
        assert_eq!(l.counter("decapsulated"), 1);
    }
    Ok(())
}

#[test]
fn vxlan_the_vxlan_device_unwraps_passes_checked_and_untouched() -> Result<()> {
    let to_pod = ipv4_udp(REMOTE_POD, POD_IP, 999, 80, b"from afar");
    let (_, id) = node()?;
    let to_node = ipv4_udp(REMOTE_POD, id.node_ip, 999, 80, b"to the node");
    // "auto" leaves what goes to the node itself to the device; "device" everything.
    let cases = [
        (AUTO, &to_node),
        (FLAG_DEVICE_DECAP, &to_node),
        (FLAG_DEVICE_DECAP, &to_pod),
    ];
    for (mode, inner) in cases {
        let (l, id) = node_in(mode)?;
        let frame = vxlan_frame(&id, REMOTE_NODE, 1, inner);
        let run = l.run(PROG_FROM_UPLINK, &frame)?;
        assert_eq!(
            (run.verdict, &run.out),
            (TC_ACT_OK, &frame),
            "checked, then passed untouched up to the VXLAN device (decap flags {mode})"
        );
        assert_eq!(l.counter("passed-to-vxlan-device"), 1);
    }
    Ok(())
}

#[test]
fn a_frame_on_the_vxlan_device_without_tunnel_metadata_is_dropped() -> Result<()> {
    let (l, id) = node()?;
    let inner = ethernet(
        id.vtep_mac.0,
        REMOTE_VTEP.0,
        ETH_P_IPV4,
        &ipv4_udp(REMOTE_POD, POD_IP, 999, 80, b"no tunnel"),
    );
    let run = l.run(PROG_FROM_OVERLAY, &inner)?;
    assert_eq!(run.verdict, TC_ACT_SHOT, "no outer sender: not delivered");
    assert_eq!(l.counter("dropped-unknown-source"), 1);
    Ok(())
}

#[test]
fn vxlan_for_the_node_itself_is_unwrapped_to_its_stack_in_tc_mode() -> Result<()> {
    let (l, id) = tc_decap_node()?;
    let inner = ipv4_udp(REMOTE_POD, id.node_ip, 999, 80, b"to the node");
    let run = l.run(PROG_FROM_UPLINK, &vxlan_frame(&id, REMOTE_NODE, 1, &inner))?;
    assert_eq!(run.verdict, TC_ACT_OK);
    assert_eq!(&run.out[14..], &inner[..]);
    assert_eq!(l.counter("decapsulated-to-host"), 1);
    Ok(())
}

/// `inner` with its ECN field set to `ecn` and its header checksum made right.
fn with_ecn(inner: &[u8], ecn: u8) -> Vec<u8> {
    let mut p = inner.to_vec();
    p[1] = (p[1] & !3) | ecn;
    p[10..12].copy_from_slice(&[0, 0]);
    let c = checksum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p
}

#[test]
fn congestion_marked_on_the_underlay_reaches_the_inner_header() -> Result<()> {
    const ECT0: u8 = 2;
    const CE: u8 = 3;
    let (l, id) = tc_decap_node()?;
    let inner = with_ecn(&ipv4_udp(REMOTE_POD, POD_IP, 999, 80, b"ecn"), ECT0);
    let mut frame = vxlan_frame(&id, REMOTE_NODE, 1, &inner);
    // Outer CE (a router on the underlay marked it), outer checksum fixed up.
    let outer = with_ecn(&frame[14..], CE);
    frame.splice(14.., outer);
    let run = l.run(PROG_FROM_UPLINK, &frame)?;
    assert_eq!(run.verdict, TC_ACT_REDIRECT, "delivered into the pod");
    let got = &run.out[14..];
    assert_eq!(
        got[1] & 3,
        CE,
        "RFC 6040: outer CE is copied into the inner ECT header"
    );
    assert_eq!(
        checksum(&got[..20]),
        0,
        "the inner IPv4 checksum stays valid"
    );
    assert_eq!(&got[20..], &inner[20..], "the payload is untouched");

    let not_ect = with_ecn(&ipv4_udp(REMOTE_POD, POD_IP, 999, 80, b"ecn"), 0);
    let mut frame = vxlan_frame(&id, REMOTE_NODE, 1, &not_ect);
    let outer = with_ecn(&frame[14..], CE);
    frame.splice(14.., outer);
    let run = l.run(PROG_FROM_UPLINK, &frame)?;
    assert_eq!(
        run.verdict, TC_ACT_SHOT,
        "CE on a Not-ECT packet is dropped (RFC 6040)"
    );
    assert_eq!(l.counter("dropped-ce-on-not-ect"), 1);
    Ok(())
}

#[test]
fn bad_vxlan_is_dropped_with_its_reason() -> Result<()> {
    let inner = ipv4_udp(REMOTE_POD, POD_IP, 999, 80, b"x");
    let spoofed_inner = ipv4_udp(Ipv4Addr::new(10, 244, 3, 3), POD_IP, 999, 80, b"x");
    let unknown_dst = ipv4_udp(REMOTE_POD, Ipv4Addr::new(10, 244, 1, 200), 999, 80, b"x");
    // The uplink screens the same way in both decap modes; the destination is known
    // only once someone unwraps.
    for tc_decap in [false, true] {
        let (l, id) = node_in(if tc_decap {
            FLAG_TC_DECAP
        } else {
            FLAG_DEVICE_DECAP
        })?;
        let mut truncated = vxlan_frame(&id, REMOTE_NODE, 1, &inner);
        truncated.truncate(14 + 20 + 8 + 8 + 10);
        let mut corrupted = vxlan_frame(&id, REMOTE_NODE, 1, &inner);
        corrupted[14 + 15] ^= 0x01; // the outer source becomes 192.168.50.13
        let mut cases = vec![
            (
                "dropped-unknown-source",
                vxlan_frame(&id, Ipv4Addr::new(192, 168, 50, 99), 1, &inner),
            ),
            (
                "dropped-unknown-source",
                vxlan_frame(&id, REMOTE_NODE, 1, &spoofed_inner),
            ),
            ("dropped-bad-vni", vxlan_frame(&id, REMOTE_NODE, 7, &inner)),
            ("dropped-malformed", truncated),
            ("dropped-bad-checksum", corrupted),
        ];
        if tc_decap {
            cases.push((
                "dropped-no-route",
                vxlan_frame(&id, REMOTE_NODE, 1, &unknown_dst),
            ));
        }
        for (reason, frame) in cases {
            let before = l.counter(reason);
            let run = l.run(PROG_FROM_UPLINK, &frame)?;
            assert_eq!(
                run.verdict, TC_ACT_SHOT,
                "expected a drop counted as {reason} (tc decap: {tc_decap})"
            );
            assert_eq!(
                l.counter(reason),
                before + 1,
                "{reason} must count the drop (tc decap: {tc_decap})"
            );
        }
    }
    Ok(())
}

#[test]
fn the_nodes_own_traffic_on_the_uplink_passes() -> Result<()> {
    let (l, id) = node()?;
    let udp = ethernet(
        [2, 0, 0, 0, 0xb, 1],
        [2, 0, 0, 0, 0xb, 2],
        ETH_P_IPV4,
        &ipv4_udp(REMOTE_NODE, id.node_ip, 53, 53, b"dns"),
    );
    let run = l.run(PROG_FROM_UPLINK, &udp)?;
    assert_eq!(
        (run.verdict, run.out),
        (TC_ACT_OK, udp),
        "UDP on another port passes untouched"
    );
    Ok(())
}

#[test]
fn the_host_reaches_remote_pods_and_never_floods_unroutable_frames() -> Result<()> {
    let (l, id) = node()?;
    let to_remote = ethernet(
        id.vtep_mac.0,
        id.gateway_mac.0,
        ETH_P_IPV4,
        &ipv4_udp(id.gateway, REMOTE_POD, 1, 2, b"h"),
    );
    assert_eq!(l.run(PROG_FROM_HOST, &to_remote)?.verdict, TC_ACT_REDIRECT);
    let nowhere = ethernet(
        id.vtep_mac.0,
        id.gateway_mac.0,
        ETH_P_IPV4,
        &ipv4_udp(id.gateway, Ipv4Addr::new(10, 244, 9, 9), 1, 2, b"h"),
    );
    assert_eq!(l.run(PROG_FROM_HOST, &nowhere)?.verdict, TC_ACT_SHOT);
    assert_eq!(l.counter("dropped-no-route"), 1);
    let to_local = ethernet(
        POD_MAC.0,
        id.gateway_mac.0,
        ETH_P_IPV4,
        &ipv4_udp(id.gateway, POD_IP, 1, 2, b"h"),
    );
    assert_eq!(
        l.run(PROG_FROM_HOST, &to_local)?.verdict,
        TC_ACT_OK,
        "local pods are reached through the bridge"
    );
    Ok(())
}

#[test]
fn before_the_agent_configures_the_node_everything_passes() -> Result<()> {
    let (mut l, id) = node()?;
    l.maps.config.set(&Default::default())?;
    let frame = from_pod_frame(&id, POD_IP, REMOTE_POD);
    let run = l.run(PROG_FROM_POD, &frame)?;
    assert_eq!((run.verdict, run.out), (TC_ACT_OK, frame));
    Ok(())
}

#[test]
fn a_pod_cannot_send_from_an_address_that_is_not_its_own() -> Result<()> {
    let (mut l, id) = node()?;
    for (what, src) in [
        ("a remote pod", REMOTE_POD),
        ("an unknown local address", Ipv4Addr::new(10, 244, 1, 77)),
        ("the gateway", id.gateway),
    ] {
        let before = l.counter("dropped-spoofed-source");
        let run = l.run(PROG_FROM_POD, &from_pod_frame(&id, src, POD_IP))?;
        assert_eq!(
            run.verdict, TC_ACT_SHOT,
            "a pod claiming {what}'s address must be dropped"
        );
        assert_eq!(l.counter("dropped-spoofed-source"), before + 1);
    }
    // A local pod's address, but sent through another pod's veth.
    l.maps
        .endpoints
        .insert(SENDER_IP, 999, Mac([0x02, 0, 0, 0, 0xaa, 0x09]))?;
    let run = l.run(PROG_FROM_POD, &from_pod_frame(&id, SENDER_IP, POD_IP))?;
    assert_eq!(
        run.verdict, TC_ACT_SHOT,
        "another pod's address through this veth must be dropped"
    );
    Ok(())
}

const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const SENDER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xaa, 0x09];

/// A node with one service on `VIP:port/proto` that has no backends.
fn with_empty_service(proto: u8, port: u16) -> Result<(Loaded, Identity)> {
    let (mut l, id) = node()?;
    l.enable_services(&id)?;
    let empty = ServiceInfo {
        id: 1,
        count: 0,
        flags: 0,
    };
    l.maps.services.set_frontend(key(VIP, port, proto), empty)?;
    Ok((l, id))
}

/// Checks that `out` is a frame from the gateway back to the sending pod, carrying an
/// IPv4 packet of `proto` and `len` bytes from the service address; returns the payload.
fn answer_from_the_service<'a>(out: &'a [u8], id: &Identity, proto: u8, len: usize) -> &'a [u8] {
    assert_eq!(
        &out[0..6],
        &SENDER_MAC,
        "the answer goes back to the sender"
    );
    assert_eq!(&out[6..12], &id.gateway_mac.0, "from the gateway");
    assert_eq!(out.len(), 14 + len, "a {len}-byte IPv4 packet");
    let ip = &out[14..34];
    assert_eq!(checksum(ip), 0, "a valid IPv4 header checksum");
    assert_eq!(
        u16::from_be_bytes([ip[2], ip[3]]) as usize,
        len,
        "total length"
    );
    assert_eq!(ip[9], proto, "protocol");
    assert_eq!(&ip[12..16], &VIP.octets(), "from the service address");
    assert_eq!(&ip[16..20], &SENDER_IP.octets(), "to the pod");
    &out[34..]
}

#[test]
fn udp_to_a_service_without_backends_is_answered_port_unreachable() -> Result<()> {
    let (l, id) = with_empty_service(17, 53)?;
    let sent = ipv4_udp(SENDER_IP, VIP, 40000, 53, b"who is there?");
    let frame = ethernet(id.gateway_mac.0, SENDER_MAC, ETH_P_IPV4, &sent);
    let run = l.run(PROG_FROM_POD, &frame)?;
    assert_eq!(run.verdict, TC_ACT_REDIRECT, "sent back into the pod");
    let icmp = answer_from_the_service(&run.out, &id, 1, 56);
    assert_eq!((icmp[0], icmp[1]), (3, 3), "destination unreachable: port");
    assert_eq!(checksum(icmp), 0, "a valid ICMP checksum");
    assert_eq!(
        &icmp[8..],
        &sent[..28],
        "quotes the datagram's IP header and first 8 bytes"
    );
    assert_eq!(l.counter("rejected-no-backend"), 1);
    Ok(())
}

#[test]
fn a_syn_to_a_service_without_backends_is_answered_with_a_reset() -> Result<()> {
    let (l, id) = with_empty_service(6, 80)?;
    let mut tcp = vec![0u8; 20];
    tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
    tcp[2..4].copy_from_slice(&80u16.to_be_bytes());
    tcp[4..8].copy_from_slice(&1000u32.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x02; // SYN
    let mut sent = packets::ipv4_header(SENDER_IP, VIP, 6, tcp.len());
    sent.extend_from_slice(&tcp);
    let frame = ethernet(id.gateway_mac.0, SENDER_MAC, ETH_P_IPV4, &sent);
    let run = l.run(PROG_FROM_POD, &frame)?;
    assert_eq!(run.verdict, TC_ACT_REDIRECT, "sent back into the pod");
    let rst = answer_from_the_service(&run.out, &id, 6, 40);
    assert_eq!(
        (
            u16::from_be_bytes([rst[0], rst[1]]),
            u16::from_be_bytes([rst[2], rst[3]])
        ),
        (80, 40000),
        "ports swapped"
    );
    assert_eq!(rst[13], 0x14, "RST and ACK");
    assert_eq!(
        u32::from_be_bytes([rst[8], rst[9], rst[10], rst[11]]),
        1001,
        "acknowledges the SYN"
    );
    let mut pseudo = VIP.octets().to_vec();
    pseudo.extend_from_slice(&SENDER_IP.octets());
    pseudo.extend_from_slice(&[0, 6, 0, 20]);
    pseudo.extend_from_slice(rst);
    assert_eq!(checksum(&pseudo), 0, "a valid TCP checksum");
    Ok(())
}

#[test]
fn monitor_events_cost_nothing_unwatched_and_are_counted_when_lost() -> Result<()> {
    let (mut l, id) = node()?;
    let frame = from_pod_frame(&id, SENDER_IP, Ipv4Addr::new(192, 0, 2, 1));
    l.run(PROG_FROM_POD, &frame)?;
    assert_eq!(l.counter("monitor-events-lost"), 0);
    // Traced, every packet, and nobody reads the ring buffer: it fills (about 5,000
    // events), and what does not fit is counted.
    l.set_flags(&id, FLAG_READY | netcore_common::config::FLAG_MONITOR_TRACE)?;
    for _ in 0..7000 {
        let run = l.run(PROG_FROM_POD, &frame)?;
        assert_eq!(run.verdict, TC_ACT_OK, "tracing never changes the verdict");
    }
    let lost = l.counter("monitor-events-lost");
    assert!(
        (1000..7000).contains(&lost),
        "the overflow is counted: {lost}"
    );
    Ok(())
}

#[test]
fn a_segment_of_no_tracked_flow_is_reset_not_balanced() -> Result<()> {
    let (l, id) = with_empty_service(6, 80)?;
    let mut tcp = vec![0u8; 20];
    tcp[0..2].copy_from_slice(&40001u16.to_be_bytes());
    tcp[2..4].copy_from_slice(&80u16.to_be_bytes());
    tcp[4..8].copy_from_slice(&7000u32.to_be_bytes());
    tcp[8..12].copy_from_slice(&9000u32.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x10; // ACK: mid-connection, and no entry for it
    let mut sent = packets::ipv4_header(SENDER_IP, VIP, 6, tcp.len());
    sent.extend_from_slice(&tcp);
    let frame = ethernet(id.gateway_mac.0, SENDER_MAC, ETH_P_IPV4, &sent);
    let run = l.run(PROG_FROM_POD, &frame)?;
    assert_eq!(
        run.verdict, TC_ACT_REDIRECT,
        "a reset sent back into the pod"
    );
    let rst = answer_from_the_service(&run.out, &id, 6, 40);
    assert_eq!(rst[13] & 0x04, 0x04, "RST");
    assert_eq!(
        u32::from_be_bytes([rst[4], rst[5], rst[6], rst[7]]),
        9000,
        "the reset's sequence number is the segment's acknowledgment"
    );
    assert_eq!(l.counter("rejected-no-flow"), 1);
    assert_eq!(l.counter("rejected-no-backend"), 0);
    Ok(())
}

/// A node with a third peer, 10.244.3.0/24 at 192.168.50.13, reached directly and
/// whose uplink MAC is `DIRECT_MAC`.
const DIRECT_NODE: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 13);
const DIRECT_POD: Ipv4Addr = Ipv4Addr::new(10, 244, 3, 7);
const DIRECT_MAC: Mac = Mac([0x02, 0, 0, 0, 0x0d, 0x03]);

fn node_with_direct_peer() -> Result<(Loaded, Identity)> {
    let (mut l, id) = node()?;
    let route = netcore_agent::maps::node::direct_route(DIRECT_NODE, Mac::default(), DIRECT_MAC);
    l.maps.nodes.set("10.244.3.0/24".parse()?, route)?;
    l.maps.nodes.set("192.168.50.13/32".parse()?, route)?;
    Ok((l, id))
}

#[test]
fn a_frame_for_a_direct_peer_leaves_unchanged() -> Result<()> {
    let (l, id) = node_with_direct_peer()?;
    let frame = from_pod_frame(&id, SENDER_IP, DIRECT_POD);
    let run = l.run(PROG_FROM_POD, &frame)?;
    assert_eq!(
        run.verdict, TC_ACT_REDIRECT,
        "out of the uplink, the peer as next hop"
    );
    assert_eq!(
        &run.out[14..],
        &frame[14..],
        "the IPv4 packet is not touched"
    );
    assert_eq!(l.counter("forwarded-direct"), 1);
    assert_eq!(l.counter("encapsulated"), 0);
    Ok(())
}

#[test]
fn unencapsulated_traffic_to_pods_is_taken_only_from_the_owning_node() -> Result<()> {
    let (l, id) = node_with_direct_peer()?;
    let plain = |src_mac: Mac, src: Ipv4Addr, dst: Ipv4Addr| {
        ethernet(
            [2, 0, 0, 0, 0xb, 1],
            src_mac.0,
            ETH_P_IPV4,
            &ipv4_udp(src, dst, 5, 80, b"plain"),
        )
    };
    let good = plain(DIRECT_MAC, DIRECT_POD, POD_IP);
    let run = l.run(PROG_FROM_UPLINK, &good)?;
    assert_eq!(
        run.verdict, TC_ACT_REDIRECT,
        "from the owning node: into the pod"
    );
    assert_eq!(&run.out[0..6], &POD_MAC.0);
    assert_eq!(&run.out[14..], &good[14..]);
    assert_eq!(l.counter("received-direct"), 1);
    let to_gateway = l.run(PROG_FROM_UPLINK, &plain(DIRECT_MAC, DIRECT_POD, id.gateway))?;
    assert_eq!(
        to_gateway.verdict, TC_ACT_OK,
        "to the node's gateway address: its stack"
    );
    let cases = [
        (
            "another MAC than the owner's",
            plain(Mac([2, 0, 0, 0, 0x0d, 0x66]), DIRECT_POD, POD_IP),
        ),
        (
            "a VXLAN-only node's pod source",
            plain(DIRECT_MAC, REMOTE_POD, POD_IP),
        ),
        (
            "no node's source",
            plain(DIRECT_MAC, Ipv4Addr::new(192, 168, 50, 200), POD_IP),
        ),
        (
            "to a service address",
            plain(
                Mac([2, 0, 0, 0, 0x0d, 0x66]),
                DIRECT_POD,
                Ipv4Addr::new(10, 96, 0, 10),
            ),
        ),
    ];
    for (what, frame) in cases {
        let before = l.counter("dropped-underlay-to-pods");
        let run = l.run(PROG_FROM_UPLINK, &frame)?;
        assert_eq!(run.verdict, TC_ACT_SHOT, "{what}: dropped");
        assert_eq!(
            l.counter("dropped-underlay-to-pods"),
            before + 1,
            "{what}: counted"
        );
    }
    let elsewhere = plain(DIRECT_MAC, DIRECT_POD, Ipv4Addr::new(172, 16, 0, 1));
    assert_eq!(
        l.run(PROG_FROM_UPLINK, &elsewhere)?.verdict,
        TC_ACT_OK,
        "outside the pod network: the stack's"
    );
    Ok(())
}

fn ct_key(
    src: Ipv4Addr,
    sport: u16,
    dst: Ipv4Addr,
    dport: u16,
) -> netcore_common::conntrack::CtKey {
    netcore_common::conntrack::CtKey {
        src: u32::from_ne_bytes(src.octets()),
        dst: u32::from_ne_bytes(dst.octets()),
        sport: sport.to_be(),
        dport: dport.to_be(),
        proto: 6,
        _pad: [0; 3],
    }
}

/// A TCP service `id` on `vip:port` with these backends.
fn tcp_service(
    l: &mut Loaded,
    id: u32,
    vip: Ipv4Addr,
    port: u16,
    backends: &[(Ipv4Addr, u16)],
) -> Result<()> {
    service_on(l, id, (vip, port, 6), backends)
}

/// Service `id` on `(vip, port, proto)` with these backends.
fn service_on(
    l: &mut Loaded,
    id: u32,
    (vip, port, proto): (Ipv4Addr, u16, u8),
    backends: &[(Ipv4Addr, u16)],
) -> Result<()> {
    let bs: Vec<_> = backends
        .iter()
        .map(|&(ip, p)| netcore_agent::maps::service::backend(ip, p))
        .collect();
    l.maps.services.write_backends(id, &bs)?;
    let info = ServiceInfo {
        id,
        count: bs.len() as u32,
        flags: 0,
    };
    l.maps.services.set_frontend(key(vip, port, proto), info)?;
    Ok(())
}

fn segment(sport: u16, dport: u16, seq: u32, ack: u32, flags: u8) -> Tcp {
    Tcp {
        sport,
        dport,
        seq,
        ack,
        flags,
    }
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const SYN_ACK: u8 = 0x12;
const RST: u8 = 0x04;
/// Where the inner TCP header starts in a VXLAN frame (outer Ethernet, IPv4, UDP,
/// VXLAN, inner Ethernet, IPv4).
const INNER_TCP: usize = 14 + 20 + 8 + 8 + 14 + 20;

#[test]
fn only_a_client_that_saw_the_syn_ack_establishes_its_flow() -> Result<()> {
    let (mut l, id) = node()?;
    l.enable_services(&id)?;
    tcp_service(&mut l, 3, VIP, 80, &[(REMOTE_POD, 8080)])?;
    let client = |t: Tcp| {
        ethernet(
            id.gateway_mac.0,
            SENDER_MAC,
            ETH_P_IPV4,
            &ipv4_tcp(SENDER_IP, VIP, t),
        )
    };
    let fwd = ct_key(SENDER_IP, 40010, VIP, 80);
    let rev = ct_key(REMOTE_POD, 8080, SENDER_IP, 40010);
    let table = |k| {
        l.maps
            .conntrack
            .find(&k)
            .map(|(established, _)| established)
    };
    assert_eq!(
        l.run(PROG_FROM_POD, &client(segment(40010, 80, 1000, 0, SYN)))?
            .verdict,
        TC_ACT_REDIRECT
    );
    assert_eq!(
        table(fwd),
        Some(false),
        "a SYN opens a flow in the table of new ones"
    );
    // A spoofed source never sees the SYN-ACK: its ACK acknowledges a guess.
    let blind = l.run(PROG_FROM_POD, &client(segment(40010, 80, 1001, 777, ACK)))?;
    assert_eq!(blind.verdict, TC_ACT_REDIRECT, "still translated");
    assert_eq!(table(fwd), Some(false), "a blind ACK establishes nothing");
    let syn_ack = ipv4_tcp(
        REMOTE_POD,
        SENDER_IP,
        segment(8080, 40010, 5000, 1001, SYN_ACK),
    );
    let back = l.run(
        PROG_FROM_UPLINK,
        &vxlan_frame(&id, REMOTE_NODE, 1, &syn_ack),
    )?;
    assert_eq!(
        back.verdict, TC_ACT_REDIRECT,
        "the SYN-ACK goes into the client pod"
    );
    assert_eq!(&back.out[26..30], &VIP.octets(), "from the service address");
    assert_eq!(
        table(fwd),
        Some(false),
        "the backend's answer alone establishes nothing"
    );
    l.run(PROG_FROM_POD, &client(segment(40010, 80, 1001, 5001, ACK)))?;
    assert_eq!(
        table(fwd),
        Some(true),
        "the handshake's ACK establishes the flow"
    );
    assert_eq!(table(rev), Some(true), "both directions");
    Ok(())
}

#[test]
fn a_reset_flow_reopened_on_the_same_ports_keeps_its_new_backend() -> Result<()> {
    let (mut l, id) = node()?;
    l.enable_services(&id)?;
    tcp_service(&mut l, 3, VIP, 80, &[(REMOTE_POD, 8080)])?;
    let client = |t: Tcp| {
        ethernet(
            id.gateway_mac.0,
            SENDER_MAC,
            ETH_P_IPV4,
            &ipv4_tcp(SENDER_IP, VIP, t),
        )
    };
    let backend_port = |out: &[u8]| u16::from_be_bytes([out[INNER_TCP + 2], out[INNER_TCP + 3]]);
    l.run(PROG_FROM_POD, &client(segment(40011, 80, 1000, 0, SYN)))?;
    let syn_ack = ipv4_tcp(
        REMOTE_POD,
        SENDER_IP,
        segment(8080, 40011, 5000, 1001, SYN_ACK),
    );
    l.run(
        PROG_FROM_UPLINK,
        &vxlan_frame(&id, REMOTE_NODE, 1, &syn_ack),
    )?;
    let ack = l.run(PROG_FROM_POD, &client(segment(40011, 80, 1001, 5001, ACK)))?;
    assert_eq!(backend_port(&ack.out), 8080);
    l.run(PROG_FROM_POD, &client(segment(40011, 80, 1001, 5001, RST)))?;
    // The service now has another backend; the client reconnects from the same port.
    tcp_service(&mut l, 3, VIP, 80, &[(REMOTE_POD, 9090)])?;
    let syn = l.run(PROG_FROM_POD, &client(segment(40011, 80, 9000, 0, SYN)))?;
    assert_eq!(
        backend_port(&syn.out),
        9090,
        "the new flow's SYN goes to the new backend"
    );
    let next = l.run(PROG_FROM_POD, &client(segment(40011, 80, 9001, 6001, ACK)))?;
    assert_eq!(
        backend_port(&next.out),
        9090,
        "and so does the rest of it (the closed flow's entries are gone)"
    );
    Ok(())
}

#[test]
fn replies_of_directly_routed_backends_get_the_service_address_back() -> Result<()> {
    let (mut l, id) = node_with_direct_peer()?;
    l.enable_services(&id)?;
    tcp_service(&mut l, 5, VIP, 80, &[(DIRECT_POD, 8080)])?;
    let from_peer = |ip: Vec<u8>| ethernet([2, 0, 0, 0, 0xb, 1], DIRECT_MAC.0, ETH_P_IPV4, &ip);
    // A pod's connection to the ClusterIP.
    let syn = ipv4_tcp(SENDER_IP, VIP, segment(40020, 80, 1000, 0, SYN));
    let out = l.run(
        PROG_FROM_POD,
        &ethernet(id.gateway_mac.0, SENDER_MAC, ETH_P_IPV4, &syn),
    )?;
    assert_eq!(out.verdict, TC_ACT_REDIRECT);
    assert_eq!(
        &out.out[30..34],
        &DIRECT_POD.octets(),
        "to the backend, unencapsulated"
    );
    let reply = l.run(
        PROG_FROM_UPLINK,
        &from_peer(ipv4_tcp(
            DIRECT_POD,
            SENDER_IP,
            segment(8080, 40020, 5000, 1001, SYN_ACK),
        )),
    )?;
    assert_eq!(reply.verdict, TC_ACT_REDIRECT, "into the client pod");
    assert_eq!(
        &reply.out[26..30],
        &VIP.octets(),
        "from the service address"
    );
    assert_eq!(&reply.out[34..36], &80u16.to_be_bytes(), "and its port");
    // A NodePort client outside, masqueraded.
    let outside = Ipv4Addr::new(192, 168, 50, 200);
    l.maps.services.set_frontend(
        key(Ipv4Addr::UNSPECIFIED, 30080, 6),
        ServiceInfo {
            id: 5,
            count: 1,
            flags: 0,
        },
    )?;
    let syn = ipv4_tcp(outside, id.node_ip, segment(5555, 30080, 1000, 0, SYN));
    let out = l.run(
        PROG_FROM_UPLINK,
        &ethernet(id.vtep_mac.0, [2, 0, 0, 0, 0xc, 1], ETH_P_IPV4, &syn),
    )?;
    assert_eq!(out.verdict, TC_ACT_REDIRECT);
    assert_eq!(
        &out.out[26..30],
        &id.node_ip.octets(),
        "masqueraded as the node"
    );
    assert_eq!(&out.out[30..34], &DIRECT_POD.octets(), "to the backend");
    let masq_port = u16::from_be_bytes([out.out[34], out.out[35]]);
    let answer = ipv4_tcp(
        DIRECT_POD,
        id.node_ip,
        segment(8080, masq_port, 5000, 1001, SYN_ACK),
    );
    let back = l.run(PROG_FROM_UPLINK, &from_peer(answer))?;
    assert_eq!(
        back.verdict, TC_ACT_REDIRECT,
        "straight back out of the uplink"
    );
    assert_eq!(&back.out[26..30], &id.node_ip.octets(), "from the node");
    assert_eq!(&back.out[30..34], &outside.octets(), "to the client");
    assert_eq!(
        &back.out[34..38],
        &[&30080u16.to_be_bytes()[..], &5555u16.to_be_bytes()[..]].concat()[..]
    );
    Ok(())
}

#[test]
fn vxlan_from_a_direct_peer_must_come_from_its_pinned_mac() -> Result<()> {
    let (l, id) = node_with_direct_peer()?;
    let inner = ipv4_udp(DIRECT_POD, POD_IP, 999, 80, b"wrapped");
    let mut frame = vxlan_frame(&id, DIRECT_NODE, 1, &inner);
    let run = l.run(PROG_FROM_UPLINK, &frame)?;
    assert_eq!(
        run.verdict, TC_ACT_SHOT,
        "another MAC than the peer's pinned one"
    );
    assert_eq!(l.counter("dropped-unknown-source"), 1);
    frame[6..12].copy_from_slice(&DIRECT_MAC.0);
    let run = l.run(PROG_FROM_UPLINK, &frame)?;
    assert_eq!(
        run.verdict, TC_ACT_REDIRECT,
        "from the pinned MAC: into the pod"
    );
    Ok(())
}

/// An ICMP error (`kind`, `code`, the 4 bytes after the checksum) from `src` to `dst`
/// quoting `quoted`.
fn icmp_error(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    kind: u8,
    code: u8,
    rest: [u8; 4],
    quoted: &[u8],
) -> Vec<u8> {
    let mut icmp = vec![kind, code, 0, 0];
    icmp.extend_from_slice(&rest);
    icmp.extend_from_slice(quoted);
    let c = checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut ip = packets::ipv4_header(src, dst, 1, icmp.len());
    ip.extend_from_slice(&icmp);
    ip
}

/// Checks an ICMP error at `ip` (the outer IPv4 header) in `frame`: valid checksums
/// (outer header, ICMP, quoted header), from `src` to `dst`, quoting a UDP packet of
/// `quoted_from` to `quoted_to`.
fn assert_icmp_error(
    frame: &[u8],
    ip: usize,
    (src, dst): (Ipv4Addr, Ipv4Addr),
    quoted_from: (Ipv4Addr, u16),
    quoted_to: (Ipv4Addr, u16),
) {
    let outer = &frame[ip..ip + 20];
    assert_eq!(checksum(outer), 0, "a valid outer header checksum");
    assert_eq!(
        (&outer[12..16], &outer[16..20]),
        (&src.octets()[..], &dst.octets()[..]),
        "from {src} to {dst}"
    );
    let icmp = &frame[ip + 20..];
    assert_eq!(checksum(icmp), 0, "a valid ICMP checksum");
    let quoted = &icmp[8..28];
    assert_eq!(checksum(quoted), 0, "a valid checksum in the quoted header");
    let port = |at: usize| u16::from_be_bytes([icmp[at], icmp[at + 1]]);
    let addr =
        |at: usize| Ipv4Addr::new(quoted[at], quoted[at + 1], quoted[at + 2], quoted[at + 3]);
    assert_eq!(
        ((addr(12), port(28)), (addr(16), port(30))),
        (quoted_from, quoted_to),
        "the packet the client sent"
    );
}

#[test]
fn icmp_errors_of_a_remote_backend_reach_the_client_as_the_services() -> Result<()> {
    let (mut l, id) = node()?;
    l.enable_services(&id)?;
    service_on(&mut l, 7, (VIP, 53, 17), &[(REMOTE_POD, 5353)])?;
    let query = ipv4_udp(SENDER_IP, VIP, 40000, 53, b"a query that does not fit");
    let out = l.run(
        PROG_FROM_POD,
        &ethernet(id.gateway_mac.0, SENDER_MAC, ETH_P_IPV4, &query),
    )?;
    assert_eq!(
        out.verdict, TC_ACT_REDIRECT,
        "balanced to the remote backend"
    );
    // What the backend got (the client to the backend), quoted in its errors.
    let sent = ipv4_udp(
        SENDER_IP,
        REMOTE_POD,
        40000,
        5353,
        b"a query that does not fit",
    );
    let mtu_1400 = [0, 0, 0x05, 0x78];
    for (what, outer_src, code) in [
        ("fragmentation needed, from the backend", REMOTE_POD, 4),
        ("port unreachable, from the backend", REMOTE_POD, 3),
        (
            "host unreachable, from a router",
            Ipv4Addr::new(10, 244, 2, 1),
            1,
        ),
    ] {
        let err = icmp_error(outer_src, SENDER_IP, 3, code, mtu_1400, &sent);
        let back = l.run(PROG_FROM_UPLINK, &vxlan_frame(&id, REMOTE_NODE, 1, &err))?;
        assert_eq!(back.verdict, TC_ACT_REDIRECT, "{what}: into the client pod");
        let reporter = if outer_src == REMOTE_POD {
            VIP
        } else {
            outer_src
        };
        assert_icmp_error(
            &back.out,
            14,
            (reporter, SENDER_IP),
            (SENDER_IP, 40000),
            (VIP, 53),
        );
        assert_eq!(
            &back.out[38..42],
            &mtu_1400,
            "{what}: the rest of the ICMP header as it was"
        );
    }
    // The client's own error about an answer (its socket is gone): to the backend,
    // about the answer the backend sent.
    let answer = ipv4_udp(VIP, SENDER_IP, 53, 40000, b"a late answer");
    let err = icmp_error(SENDER_IP, VIP, 3, 3, [0; 4], &answer);
    let out = l.run(
        PROG_FROM_POD,
        &ethernet(id.gateway_mac.0, SENDER_MAC, ETH_P_IPV4, &err),
    )?;
    assert_eq!(
        out.verdict, TC_ACT_REDIRECT,
        "wrapped for the backend's node"
    );
    let inner = 14 + 20 + 8 + 8 + 14;
    assert_icmp_error(
        &out.out,
        inner,
        (SENDER_IP, REMOTE_POD),
        (REMOTE_POD, 5353),
        (SENDER_IP, 40000),
    );
    // An error about a flow no service translated passes as it is.
    let other = ipv4_udp(SENDER_IP, REMOTE_POD, 40001, 5353, b"direct");
    let err = icmp_error(REMOTE_POD, SENDER_IP, 3, 3, [0; 4], &other);
    let back = l.run(PROG_FROM_UPLINK, &vxlan_frame(&id, REMOTE_NODE, 1, &err))?;
    assert_eq!(&back.out[14..], &err[..], "untranslated");
    Ok(())
}

#[test]
fn icmp_errors_of_a_masqueraded_nodeport_flow_go_back_out_to_the_client() -> Result<()> {
    let (mut l, id) = node()?;
    l.set_flags(&id, FLAG_READY | FLAG_SERVICES | FLAG_TC_DECAP)?;
    service_on(
        &mut l,
        8,
        (Ipv4Addr::UNSPECIFIED, 30053, 17),
        &[(REMOTE_POD, 5353)],
    )?;
    let client = Ipv4Addr::new(192, 168, 50, 200);
    let query = ipv4_udp(client, id.node_ip, 5555, 30053, b"query");
    let out = l.run(
        PROG_FROM_UPLINK,
        &ethernet(id.vtep_mac.0, [2, 0, 0, 0, 0xc, 1], ETH_P_IPV4, &query),
    )?;
    assert_eq!(out.verdict, TC_ACT_REDIRECT, "to the remote backend");
    // Outer Ethernet, IPv4, UDP, VXLAN, inner Ethernet: the inner IPv4 header.
    let inner = 14 + 20 + 8 + 8 + 14;
    assert_eq!(
        &out.out[inner + 12..inner + 16],
        &id.node_ip.octets(),
        "masqueraded as the node"
    );
    let masq_port = u16::from_be_bytes([out.out[inner + 20], out.out[inner + 21]]);
    let sent = ipv4_udp(id.node_ip, REMOTE_POD, masq_port, 5353, b"query");
    let err = icmp_error(REMOTE_POD, id.node_ip, 3, 3, [0; 4], &sent);
    let back = l.run(PROG_FROM_UPLINK, &vxlan_frame(&id, REMOTE_NODE, 1, &err))?;
    assert_eq!(
        back.verdict, TC_ACT_REDIRECT,
        "straight back out of the uplink"
    );
    assert_icmp_error(
        &back.out,
        14,
        (id.node_ip, client),
        (client, 5555),
        (id.node_ip, 30053),
    );
    // A router on the way to the client needs a smaller MTU for the answers: the
    // backend hears it, about the answer it sent (to the node's masquerade port).
    let router = Ipv4Addr::new(192, 168, 50, 254);
    let answer = ipv4_udp(id.node_ip, client, 30053, 5555, b"a large answer");
    let err = icmp_error(router, id.node_ip, 3, 4, [0, 0, 0x05, 0x00], &answer);
    let out = l.run(
        PROG_FROM_UPLINK,
        &ethernet(id.vtep_mac.0, [2, 0, 0, 0, 0xc, 1], ETH_P_IPV4, &err),
    )?;
    assert_eq!(out.verdict, TC_ACT_REDIRECT, "on to the backend's node");
    assert_icmp_error(
        &out.out,
        inner,
        (router, REMOTE_POD),
        (REMOTE_POD, 5353),
        (id.node_ip, masq_port),
    );
    Ok(())
}

/// `ip` (an IPv4 packet) as a fragment: identification `id`, `offset` in 8-byte units,
/// more to come if `more`; the header checksum made valid again.
fn as_fragment(mut ip: Vec<u8>, id: u16, offset: u16, more: bool) -> Vec<u8> {
    ip[4..6].copy_from_slice(&id.to_be_bytes());
    let frags = offset | if more { 0x2000 } else { 0 };
    ip[6..8].copy_from_slice(&frags.to_be_bytes());
    ip[10..12].fill(0);
    let c = checksum(&ip[..20]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip
}

/// A later fragment (no transport header) of a UDP datagram from `src` to `dst`.
fn later_fragment(src: Ipv4Addr, dst: Ipv4Addr, id: u16, payload: &[u8]) -> Vec<u8> {
    let mut ip = packets::ipv4_header(src, dst, 17, payload.len());
    ip.extend_from_slice(payload);
    as_fragment(ip, id, 2, false)
}

#[test]
fn later_fragments_of_a_translated_datagram_get_its_addresses() -> Result<()> {
    let (mut l, id) = node()?;
    l.enable_services(&id)?;
    service_on(&mut l, 9, (VIP, 53, 17), &[(REMOTE_POD, 5353)])?;
    let pod_frame = |ip: &[u8]| ethernet(id.gateway_mac.0, SENDER_MAC, ETH_P_IPV4, ip);
    // Outer Ethernet, IPv4, UDP, VXLAN, inner Ethernet: the inner IPv4 header.
    let inner = 14 + 20 + 8 + 8 + 14;
    let first = as_fragment(
        ipv4_udp(SENDER_IP, VIP, 40000, 53, &[1; 8]),
        0x1234,
        0,
        true,
    );
    let out = l.run(PROG_FROM_POD, &pod_frame(&first))?;
    assert_eq!(out.verdict, TC_ACT_REDIRECT);
    assert_eq!(
        &out.out[inner + 16..inner + 20],
        &REMOTE_POD.octets(),
        "the first fragment to the backend"
    );
    let rest = later_fragment(SENDER_IP, VIP, 0x1234, &[2; 16]);
    let out = l.run(PROG_FROM_POD, &pod_frame(&rest))?;
    assert_eq!(
        out.verdict, TC_ACT_REDIRECT,
        "wrapped for the backend's node"
    );
    let ip = &out.out[inner..inner + 20];
    assert_eq!(
        &ip[16..20],
        &REMOTE_POD.octets(),
        "a later fragment follows its first"
    );
    assert_eq!(checksum(ip), 0, "with a valid header checksum");
    assert_eq!(
        &out.out[inner + 20..],
        &[2; 16],
        "and its payload as it was"
    );
    let stranger = later_fragment(SENDER_IP, VIP, 0x9999, &[3; 16]);
    let out = l.run(PROG_FROM_POD, &pod_frame(&stranger))?;
    assert_eq!(
        (out.verdict, &out.out[30..34]),
        (TC_ACT_OK, &VIP.octets()[..]),
        "a fragment of a datagram whose first was not seen is not translated"
    );
    // The answer, fragmented by the backend, unwrapped for the client.
    let first = as_fragment(
        ipv4_udp(REMOTE_POD, SENDER_IP, 5353, 40000, &[4; 8]),
        0x4321,
        0,
        true,
    );
    let back = l.run(PROG_FROM_UPLINK, &vxlan_frame(&id, REMOTE_NODE, 1, &first))?;
    assert_eq!(back.verdict, TC_ACT_REDIRECT);
    assert_eq!(
        &back.out[26..30],
        &VIP.octets(),
        "the answer's first fragment from the service"
    );
    let rest = later_fragment(REMOTE_POD, SENDER_IP, 0x4321, &[5; 16]);
    let back = l.run(PROG_FROM_UPLINK, &vxlan_frame(&id, REMOTE_NODE, 1, &rest))?;
    assert_eq!(back.verdict, TC_ACT_REDIRECT, "into the client");
    assert_eq!(
        &back.out[26..30],
        &VIP.octets(),
        "and its later fragments too"
    );
    assert_eq!(
        checksum(&back.out[14..34]),
        0,
        "with a valid header checksum"
    );
    Ok(())
}

#[test]
fn policy_admits_only_what_a_rule_allows_and_remembers_allowed_flows() -> Result<()> {
    use netcore_common::policy::{PolicyKey, POLICY_PREFIX_FULL};
    let (mut l, id) = node()?;
    l.set_flags(&id, FLAG_READY | netcore_common::config::FLAG_POLICY)?;
    // A pod isolated for ingress (set 1) that admits TCP port 80 from the sender's
    // class (5) only, under the policy in hit slot 3.
    let guarded = Ipv4Addr::new(10, 244, 1, 20);
    l.maps
        .endpoints
        .insert(guarded, 42, Mac([0x02, 0, 0, 0, 0xaa, 0x20]))?;
    assert!(l.maps.endpoints.set_policy(guarded, 1, 0)?);
    l.maps
        .policy
        .set_peer(format!("{SENDER_IP}/32").parse()?, 5)?;
    let rule = PolicyKey {
        set: 1,
        peer: 5,
        proto: 6,
        port: 80u16.to_be_bytes(),
        _pad: 0,
    };
    l.maps.policy.set_rule(rule, POLICY_PREFIX_FULL, 3)?;
    let from_sender = |ip: Vec<u8>| ethernet(id.gateway_mac.0, SENDER_MAC, ETH_P_IPV4, &ip);
    let tcp = |dport, flags| ipv4_tcp(SENDER_IP, guarded, segment(40000, dport, 1, 0, flags));

    let out = l.run(PROG_FROM_POD, &from_sender(tcp(80, SYN)))?;
    assert_eq!(
        out.verdict, TC_ACT_REDIRECT,
        "port 80 from the allowed class passes"
    );
    assert_eq!(l.maps.policy.hits(3), 1, "and counts a hit for its policy");
    let out = l.run(PROG_FROM_POD, &from_sender(tcp(80, ACK)))?;
    assert_eq!(
        out.verdict, TC_ACT_REDIRECT,
        "the flow's next segment passes"
    );
    assert_eq!(
        l.maps.policy.hits(3),
        1,
        "on the remembered flow, without a lookup"
    );

    let denied = [
        ("another port", from_sender(tcp(81, SYN))),
        (
            "another protocol",
            from_sender(ipv4_udp(SENDER_IP, guarded, 40000, 80, b"udp")),
        ),
    ];
    for (i, (what, frame)) in denied.iter().enumerate() {
        let out = l.run(PROG_FROM_POD, frame)?;
        assert_eq!(out.verdict, TC_ACT_SHOT, "{what} is dropped");
        assert_eq!(
            l.counter("dropped-policy"),
            i as u64 + 1,
            "{what} counts as a policy drop"
        );
    }
    // A remote pod (no class: the world) to port 80, decapsulated for the pod: dropped.
    let remote = ipv4_tcp(REMOTE_POD, guarded, segment(40001, 80, 1, 0, SYN));
    let out = l.run(PROG_FROM_UPLINK, &vxlan_frame(&id, REMOTE_NODE, 1, &remote))?;
    assert_eq!(
        out.verdict, TC_ACT_SHOT,
        "ingress is checked after decapsulation too"
    );
    assert_eq!(l.counter("dropped-policy"), 3);
    // A pod no policy isolates takes the same packet.
    let open = ipv4_tcp(REMOTE_POD, POD_IP, segment(40001, 80, 1, 0, SYN));
    let out = l.run(PROG_FROM_UPLINK, &vxlan_frame(&id, REMOTE_NODE, 1, &open))?;
    assert_eq!(
        out.verdict, TC_ACT_REDIRECT,
        "a pod without policy admits anyone"
    );
    Ok(())
}

#[test]
fn malformed_icmp_errors_and_fragments_are_left_untranslated() -> Result<()> {
    let (mut l, id) = node()?;
    l.enable_services(&id)?;
    service_on(&mut l, 7, (VIP, 53, 17), &[(REMOTE_POD, 5353)])?;
    let query = ipv4_udp(SENDER_IP, VIP, 40000, 53, b"query");
    let out = l.run(
        PROG_FROM_POD,
        &ethernet(id.gateway_mac.0, SENDER_MAC, ETH_P_IPV4, &query),
    )?;
    assert_eq!(out.verdict, TC_ACT_REDIRECT);
    let sent = ipv4_udp(SENDER_IP, REMOTE_POD, 40000, 5353, b"query");
    let mut with_options = sent.clone();
    with_options[0] = 0x46;
    let cases = [
        ("a quoted header cut short", sent[..12].to_vec()),
        ("a quoted header with options", with_options),
        (
            "a quoted fragment after the first",
            as_fragment(sent.clone(), 9, 2, false),
        ),
    ];
    for (what, quoted) in cases {
        let err = icmp_error(REMOTE_POD, SENDER_IP, 3, 3, [0; 4], &quoted);
        let back = l.run(PROG_FROM_UPLINK, &vxlan_frame(&id, REMOTE_NODE, 1, &err))?;
        assert_eq!(
            back.verdict, TC_ACT_REDIRECT,
            "{what}: delivered, not dropped"
        );
        assert_eq!(&back.out[14..], &err[..], "{what}: not translated");
    }
    // A later fragment too short to hold an IPv4 header is not followed.
    let stub = as_fragment(ipv4_udp(SENDER_IP, VIP, 40000, 53, b""), 0x1234, 2, false);
    let out = l.run(
        PROG_FROM_POD,
        &ethernet(id.gateway_mac.0, SENDER_MAC, ETH_P_IPV4, &stub[..20]),
    )?;
    assert_ne!(
        out.verdict, TC_ACT_REDIRECT,
        "a bare header of an unknown datagram goes nowhere"
    );
    Ok(())
}
