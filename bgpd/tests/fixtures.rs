//! Byte-exact fixtures captured from real BIRD 2 and FRR sessions (see
//! `fixtures/README.md`). Each `.hex` file is decoded with the context its
//! header describes, compared with its golden `.decoded` struct dump, and
//! encoded back to the same bytes. `MERLE_BLESS=1` rewrites the golden files.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use bgpd::packet::{AttrErrorKind, DecodeCtx, EncodeCtx, Family, FamilySet, Message};

fn families(list: &str) -> FamilySet {
    let mut s = FamilySet::EMPTY;
    if list.contains("ipv4-unicast") {
        s.insert(Family::Ipv4Unicast);
    }
    if list.contains("ipv6-unicast") {
        s.insert(Family::Ipv6Unicast);
    }
    s
}

struct Fixture {
    name: String,
    path: PathBuf,
    bytes: Vec<u8>,
    dctx: DecodeCtx,
    ectx: EncodeCtx,
}

fn load(path: &Path) -> Fixture {
    let text = std::fs::read_to_string(path).unwrap();
    let mut dctx = DecodeCtx::default();
    let mut hex = String::new();
    for line in text.lines() {
        if let Some(h) = line.strip_prefix('#') {
            if h.contains("4-octet AS: yes") {
                dctx.four_octet_as = true;
            }
            if h.contains("(this direction") {
                dctx.add_path_rx = families(h.rsplit(':').next().unwrap());
            }
            if let Some(rest) = h.split("extended next hop (RFC 8950):").nth(1) {
                if rest.contains("ipv4-unicast via ipv6") {
                    dctx.extended_next_hop.insert(Family::Ipv4Unicast);
                }
            }
            if h.trim_start().starts_with("session:") && h.contains("eBGP") {
                dctx.ebgp = true;
            }
        } else {
            hex.push_str(line.trim());
        }
    }
    let bytes = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
    let ectx = EncodeCtx { four_octet_as: dctx.four_octet_as, add_path_tx: dctx.add_path_rx };
    Fixture { name: path.file_stem().unwrap().to_string_lossy().into_owned(), path: path.to_owned(), bytes, dctx, ectx }
}

fn all() -> Vec<Fixture> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "hex"))
        .map(|p| load(&p))
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(v.len() >= 40, "fixtures missing");
    v
}

fn decode(f: &Fixture) -> Message {
    Message::decode(&f.bytes, &f.dctx).unwrap_or_else(|e| panic!("{}: {e}", f.name))
}

#[test]
fn every_fixture_decodes_to_its_golden_struct_and_encodes_back() {
    let bless = std::env::var_os("MERLE_BLESS").is_some();
    let mut withdrawn = Vec::new();
    for f in all() {
        let msg = decode(&f);
        let dump = format!("{msg:#?}\n");
        let golden = f.path.with_extension("decoded");
        if bless {
            std::fs::write(&golden, &dump).unwrap();
        } else {
            let want = std::fs::read_to_string(&golden)
                .unwrap_or_else(|_| panic!("{}: no golden file; run with MERLE_BLESS=1", f.name));
            assert_eq!(dump, want, "{}: decoded struct differs from golden", f.name);
        }
        if let Message::Update(u) = &msg {
            if let Some(e) = &u.treat_as_withdraw {
                // FRR sends NEXT_HOP 0.0.0.0 for IPv4 routes over an IPv6
                // session without extended next hop: treat-as-withdraw, as
                // FRR itself does on receipt. The malformed attribute is
                // dropped, so these cannot round-trip.
                assert_eq!(e.kind, AttrErrorKind::InvalidNextHop, "{}", f.name);
                withdrawn.push(f.name.clone());
                continue;
            }
            assert!(u.discarded.is_empty(), "{}: {:?}", f.name, u.discarded);
        }
        assert_eq!(msg.encode(&f.ectx)[..], f.bytes[..], "{}: re-encoding differs", f.name);
    }
    assert_eq!(withdrawn, vec!["frr-ibgp3-05-update", "frr-ibgp3-09-update"]);
}

fn fixture(name: &str) -> Message {
    let f = all().into_iter().find(|f| f.name == name).unwrap();
    decode(&f)
}

#[test]
fn bird_ebgp_update_carries_all_community_kinds_and_add_path_ids() {
    let Message::Update(u) = fixture("bird-ebgp-04-update") else { panic!() };
    let nlri: Vec<_> = u.nlri.iter().map(|n| (n.path_id, n.prefix.to_string())).collect();
    assert_eq!(nlri, vec![(Some(2), "10.244.1.0/26".into()), (Some(4), "10.244.9.0/26".into())]);
    assert_eq!(u.as_path().unwrap().flat(), vec![65002]);
    assert_eq!(u.med(), Some(50));
    assert_eq!(u.communities()[0].to_string(), "65002:100");
    assert_eq!(u.ext_communities()[0].to_string(), "rt:65002:7");
    assert_eq!(u.large_communities()[0].to_string(), "65002:1:2");
}

#[test]
fn frr_open_capabilities() {
    use bgpd::packet::Capability;
    let Message::Open(o) = fixture("frr-ebgp-02-open") else { panic!() };
    assert_eq!((o.asn(), o.hold_time, o.bgp_id.to_string()), (65001, 180, "10.255.0.1".into()));
    let gr = o.capabilities().find_map(|c| match c {
        Capability::GracefulRestart(g) => Some(g.clone()),
        _ => None,
    });
    let gr = gr.unwrap();
    assert!(gr.restart_state && gr.notification);
    assert_eq!(gr.restart_time, 120);
    // FQDN (73) and long-lived GR (71) are kept as unknown capabilities.
    assert!(o.capabilities().any(|c| matches!(c, Capability::Unknown { code: 73, .. })));
}

#[test]
fn frr_ipv6_next_hop_with_link_local_and_reflected_routes() {
    use bgpd::packet::NextHop;
    let Message::Update(u) = fixture("frr-ebgp-10-update") else { panic!() };
    let r = u.mp_reach().unwrap();
    assert!(matches!(r.next_hop, NextHop::V6 { link_local: Some(_), .. }));
    assert_eq!(u.as_path().unwrap().flat(), vec![65001, 65002]);
    let Message::Update(u) = fixture("frr-ibgp-05-update") else { panic!() };
    assert_eq!(u.originator_id().unwrap().to_string(), "10.255.0.2");
    assert_eq!(u.cluster_list().len(), 1);
    // IPv4 NLRI with an IPv6 next hop (RFC 8950).
    let r = u.mp_reach().unwrap();
    assert_eq!(r.family, Family::Ipv4Unicast);
    assert!(matches!(r.next_hop, NextHop::V6 { .. }));
}

#[test]
fn end_of_rib_markers_and_shutdown_communication() {
    use bgpd::packet::AfiSafi;
    let Message::Update(u) = fixture("bird-ebgp-06-update-eor-ipv4") else { panic!() };
    assert_eq!(u.end_of_rib(), Some(AfiSafi::IPV4_UNICAST));
    let Message::Update(u) = fixture("bird-ebgp-08-update-eor-ipv6") else { panic!() };
    assert_eq!(u.end_of_rib(), Some(AfiSafi::IPV6_UNICAST));
    let Message::Notification(n) = fixture("frr-ebgp-30-notification-shutdown-msg") else { panic!() };
    assert_eq!(n.shutdown_communication(), Some("merle-fixture"));
    let Message::Notification(n) = fixture("bird-ibgp-13-notification-shutdown-msg") else { panic!() };
    assert_eq!(n.shutdown_communication(), Some("merle-fixture-ibgp"));
}

#[test]
fn aggregate_and_route_refresh_subtypes() {
    use bgpd::packet::{AttrValue, RefreshSubtype};
    let Message::Update(u) = fixture("frr-ebgp-09-update") else { panic!() };
    assert!(u.attrs.iter().any(|a| a.value == AttrValue::AtomicAggregate));
    assert!(u.attrs.iter().any(|a| matches!(a.value, AttrValue::Aggregator(g) if g.asn == 65001)));
    let Message::RouteRefresh(r) = fixture("bird-ebgp-22-route-refresh-borr-ipv4") else { panic!() };
    assert_eq!(r.subtype, RefreshSubtype::BoRR);
    let Message::RouteRefresh(r) = fixture("frr-ebgp-29-route-refresh-eorr-ipv6") else { panic!() };
    assert_eq!(r.subtype, RefreshSubtype::EoRR);
}
