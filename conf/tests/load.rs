//! Loading real files: defaults, the shipped example, and error messages
//! that name the file, the key and the problem.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::Path;

fn write(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

const MINIMAL: &str = "[node]\nname = \"n1\"\naddress = \"10.0.0.1/24\"\n";

fn error_of(text: &str) -> (conf::ConfigError, String) {
    let f = write(text);
    let e = conf::load(f.path()).expect_err("config must be rejected");
    let shown = e.to_string();
    assert!(shown.starts_with(&f.path().display().to_string()), "error must name the file: {shown}");
    (e, shown)
}

#[test]
fn example_config_loads() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/merled.toml");
    let c = conf::load(&p).unwrap();
    assert_eq!(c.node.as_number, 64512);
    assert_eq!(c.bgp.peers.len(), 1);
    assert_eq!(c.advertise.len(), 2);
    assert_eq!(c.nodes.len(), 2);
    assert_eq!(c.service_ranges.cluster_ips.len(), 1);
    assert_eq!(c.services.len(), 1);
    assert_eq!(c.services[0].backends.len(), 2);
}

#[test]
fn the_older_services_table_is_read_as_the_service_ranges() {
    let f = write(&format!("{MINIMAL}[services]\ncluster_ips = [\"10.96.0.0/12\"]\n"));
    let c = conf::load(f.path()).unwrap();
    assert_eq!(c.service_ranges.cluster_ips[0].to_string(), "10.96.0.0/12");
    assert!(c.services.is_empty());
    let f = write(&format!(
        "{MINIMAL}[service_ranges]\ncluster_ips = [\"10.96.0.0/12\"]\n[services]\ncluster_ips = [\"10.97.0.0/16\"]\n"
    ));
    let e = conf::load(f.path()).unwrap_err();
    assert_eq!(e.key, "services");
    assert!(e.message.contains("give one of them"), "{e}");
}

const SERVICES: &str = "[service_ranges]\ncluster_ips = [\"10.96.0.0/12\"]\nload_balancer_ips = [\"192.0.2.0/24\"]\n\
    [[pools]]\ncidr = \"10.244.0.0/16\"\n";

fn service(extra: &str) -> String {
    format!(
        "{MINIMAL}{SERVICES}[[services]]\nname = \"web\"\nprotocol = \"tcp\"\ncluster_ip = \"10.96.0.80\"\nport = 80\n{extra}"
    )
}

#[test]
fn services_load_and_each_mistake_is_named_by_its_key() {
    let f = write(&service("backends = [{ address = \"10.244.0.10\", port = 8080, node = \"n1\" }]\n"));
    let c = conf::load(f.path()).unwrap();
    assert_eq!(c.services[0].backends[0].port, 8080);
    for (extra, key, words) in [
        ("node_port = 80\n", "services[0].node_port", "outside the NodePort range"),
        ("load_balancer_ips = [\"198.51.100.1\"]\n", "services[0].load_balancer_ips[0]", "outside every"),
        (
            "backends = [{ address = \"10.9.0.1\", port = 80, node = \"n1\" }]\n",
            "services[0].backends[0].address",
            "not a pod address",
        ),
        (
            "backends = [{ address = \"10.244.0.1\", port = 70000, node = \"n1\" }]\n",
            "services[0].backends[0].port",
            "16 bit",
        ),
        ("mode = \"fast\"\n", "services[0].mode", "use snat, dsr or hybrid"),
        ("external_traffic_policy = \"local\"\n", "services[0].external_traffic_policy", "use Cluster or Local"),
        ("protocol2 = \"udp\"\n", "services[0]", "unknown field"),
    ] {
        let f = write(&service(extra));
        let e = conf::load(f.path()).unwrap_err();
        assert!(e.key.starts_with(key), "{extra:?}: key {} (want {key}): {e}", e.key);
        assert!(e.message.contains(words), "{extra:?}: {e}");
    }
    let twice = format!(
        "{}[[services]]\nname = \"web\"\nprotocol = \"udp\"\ncluster_ip = \"10.96.0.81\"\nport = 53\n",
        service("")
    );
    let e = conf::load(write(&twice).path()).unwrap_err();
    assert_eq!(e.key, "services[1].name");
    assert!(e.message.contains("duplicate service"), "{e}");
}

#[test]
fn defaults_apply() {
    let f = write(MINIMAL);
    let c = conf::load(f.path()).unwrap();
    assert_eq!(c.node.as_number, 64512);
    assert_eq!(c.node.router_id().to_string(), "10.0.0.1");
    assert_eq!((c.bgp.listen_port, c.bgp.hold_time, c.bgp.listen_address), (179, 90, None));
    assert_eq!((c.bgp.error_wait_time_min, c.bgp.error_wait_time_max, c.bgp.error_forget_time), (1, 120, 60));
    assert_eq!(c.control.socket, Path::new("/run/merle/merled.sock"));
    assert_eq!(c.log.level, "info");
}

#[test]
fn unknown_key_is_named() {
    let (e, shown) = error_of(&format!("{MINIMAL}[bgp]\nhold_tme = 30\n"));
    assert_eq!(e.key, "bgp.hold_tme");
    assert!(shown.contains("unknown field `hold_tme`"), "{shown}");
    let (e, _) = error_of(&format!("{MINIMAL}[[bgp.peers]]\naddress = \"10.0.0.2\"\nas_number = 1\npasswd = \"x\"\n"));
    assert_eq!(e.key, "bgp.peers[0].passwd");
}

#[test]
fn bad_values_are_named_by_key() {
    let cases: &[(&str, &str, &str)] = &[
        ("[[advertise]]\nprefix = \"10.244.1.0/33\"\n", "advertise[0].prefix", "invalid IP address"),
        ("[[advertise]]\nprefix = \"10.244.1.5/26\"\n", "advertise[0].prefix", "did you mean 10.244.1.0/26"),
        ("[[bgp.peers]]\naddress = \"10.0.0.2\"\nas_number = 4294967296\n", "bgp.peers[0].as_number", "unsigned 32 bit"),
        ("[[bgp.peers]]\naddress = \"10.0.0.2\"\nas_number = 0\n", "bgp.peers[0].as_number", "AS 0"),
        ("[[bgp.peers]]\naddress = \"10.0.0.2\"\nas_number = -5\n", "bgp.peers[0].as_number", "invalid type"),
        (
            "[[bgp.peers]]\naddress = \"10.0.0.2\"\nas_number = 1\n[[bgp.peers]]\naddress = \"10.0.0.2\"\nas_number = 2\n",
            "bgp.peers[1].address",
            "duplicate peer 10.0.0.2",
        ),
        ("[[bgp.peers]]\naddress = \"10.0.0.1\"\nas_number = 1\n", "bgp.peers[0].address", "own address"),
        ("[[bgp.peers]]\naddress = \"not-an-ip\"\nas_number = 1\n", "bgp.peers[0].address", "invalid IP address"),
        ("[bgp]\nhold_time = 2\n", "bgp.hold_time", "hold time 2"),
        ("[bgp]\nerror_wait_time_min = 30\nerror_wait_time_max = 10\n", "bgp.error_wait_time_max", "less than error_wait_time_min (30)"),
        ("[bgp]\nerror_wait_time_max = 7200\n", "bgp.error_wait_time_max", "over the limit of 3600 s"),
        ("[bgp]\nerror_forget_time = 0\n", "bgp.error_forget_time", "at least 1 second"),
        (
            "[[bgp.peers]]\naddress = \"10.0.0.2\"\nas_number = 1\nerror_wait_time_min = 200\n",
            "bgp.peers[0].error_wait_time_max",
            "120 is less than error_wait_time_min (200)",
        ),
        ("[bgp]\nlisten_port = 70000\n", "bgp.listen_port", "unsigned 16 bit"),
        ("[control]\nsocket = \"relative.sock\"\n", "control.socket", "absolute"),
        ("[log]\nlevel = \"loud\"\n", "log.level", "unknown level"),
        ("[log]\nformat = \"xml\"\n", "log.format", "unknown format \"xml\": text or json"),
        ("[metrics]\nlisten = \"9091\"\n", "metrics.listen", "invalid socket address"),
        (
            "[datastore]\ntype = \"etcd\"\nendpoints = [\"https://10.0.0.9:2379\"]\n",
            "datastore.ca_file",
            "https:// endpoints need the CA",
        ),
        (
            "[datastore]\ntype = \"etcd\"\nendpoints = [\"http://10.0.0.9:2379\"]\nca_file = \"/etc/merle/ca.crt\"\n",
            "datastore.ca_file",
            "use https://",
        ),
        (
            "[datastore]\ntype = \"etcd\"\nendpoints = [\"https://10.0.0.9:2379\", \"http://10.0.0.8:2379\"]\nca_file = \"/ca\"\n",
            "datastore.endpoints[1]",
            "first one's scheme",
        ),
        (
            "[datastore]\ntype = \"etcd\"\nendpoints = [\"https://10.0.0.9:2379\"]\nca_file = \"/ca\"\ncert_file = \"/c\"\n",
            "datastore.key_file",
            "needs its key_file",
        ),
        (
            "[datastore]\ntype = \"etcd\"\nendpoints = [\"https://10.0.0.9:2379\"]\nca_file = \"ca.crt\"\n",
            "datastore.ca_file",
            "absolute",
        ),
        (
            "[datastore]\ntype = \"etcd\"\nendpoints = [\"http://10.0.0.9:2379\"]\nusername = \"merle\"\n",
            "datastore.password_file",
            "needs its password_file",
        ),
        ("[[advertise]]\nprefix = \"10.244.1.0/26\"\ncommunities = [\"70000:1\"]\n", "advertise[0].communities[0]", "invalid community"),
        ("[services]\ncluster_ips = [\"10.96.0.1/12\"]\n", "services.cluster_ips[0]", "host bits"),
        ("[service_ranges]\ncluster_ips = [\"10.96.0.1/12\"]\n", "service_ranges.cluster_ips[0]", "host bits"),
        ("[[bgp.peers]]\naddress = \"10.0.0.2\"\nas_number = 1\npassword = \"\"\n", "bgp.peers[0].password", "1 to 80"),
        ("[[bgp.peers]]\naddress = \"10.0.0.2\"\nas_number = 1\nttl_security = 0\n", "bgp.peers[0].ttl_security", "out of range"),
        ("[[bgp.peers]]\naddress = \"10.0.0.2\"\nas_number = 1\nnext_hop_mode = \"maybe\"\n", "bgp.peers[0].next_hop_mode", "use auto, self or keep"),
        ("[bgp]\nmax_paths = 0\n", "bgp.max_paths", "at least 1"),
        ("[[bgp.peers]]\naddress = \"10.0.0.2\"\nas_number = 64512\nroute_reflector_client = true\n", "bgp.peers[0].route_reflector_client", "needs bgp.route_reflector_cluster_id"),
        ("[bgp]\nroute_reflector_cluster_id = \"1.0.0.1\"\n[[bgp.peers]]\naddress = \"10.0.0.2\"\nas_number = 65001\nroute_reflector_client = true\n", "bgp.peers[0].route_reflector_client", "iBGP"),
        ("[[bgp.peers]]\naddress = \"10.0.0.2\"\nas_number = 1\nfilters = [\"nope\"]\n", "bgp.peers[0].filters[0]", "no [[filters]] named"),
        ("[[filters]]\nname = \"f\"\n[[filters.export_v4]]\ncidr = \"10.0.0.0/8\"\naction = \"Accept\"\n", "filters[0].export_v4[0].match_operator", "required with cidr"),
        ("[[filters]]\nname = \"f\"\n[[filters.import_v6]]\ncidr = \"10.0.0.0/8\"\nmatch_operator = \"In\"\naction = \"Accept\"\n", "filters[0].import_v6[0].cidr", "not an IPv6 prefix"),
        ("[[filters]]\nname = \"f\"\n[[filters.import_v4]]\naction = \"Maybe\"\n", "filters[0].import_v4[0].action", "use Accept or Reject"),
        ("[[filters]]\nname = \"f\"\n[[filters.import_v4]]\naction = \"Reject\"\nprepend_as_path = [1]\n", "filters[0].import_v4[0].action", "need action Accept"),
        ("[[nodes]]\nname = \"a\"\naddress = \"10.0.0.2/24\"\n[[nodes]]\nname = \"a\"\naddress = \"10.0.0.3/24\"\n", "nodes[1].name", "duplicate node"),
        ("[[nodes]]\nname = \"n1\"\naddress = \"10.0.0.9/24\"\n", "nodes[0].address", "this node's entry"),
        ("[[nodes]]\nname = \"b\"\naddress = \"10.0.0.2/24\"\n[[bgp.peers]]\naddress = \"10.0.0.2\"\nas_number = 64512\n", "bgp.peers[0].address", "already covers"),
        ("[[pools]]\ncidr = \"10.244.0.1/16\"\n", "pools[0].cidr", "host bits"),
        ("[[pools]]\ncidr = \"10.244.0.0/16\"\nblock_size = 12\n", "pools[0].block_size", "use 20 to 32"),
        ("[[pools]]\ncidr = \"10.244.0.0/28\"\nblock_size = 26\n", "pools[0].block_size", "do not fit"),
        ("[[pools]]\ncidr = \"fd00:244::/56\"\nblock_size = 26\n", "pools[0].block_size", "use 116 to 128"),
        ("[[pools]]\ncidr = \"fd00:244::/56\"\nipip_mode = \"Always\"\n", "pools[0].ipip_mode", "IPv4 only"),
        ("[[pools]]\ncidr = \"10.244.0.0/16\"\nipip_mode = \"Always\"\nvxlan_mode = \"CrossSubnet\"\n", "pools[0].vxlan_mode", "cannot both"),
        ("[[pools]]\ncidr = \"10.244.0.0/16\"\nvxlan_mode = \"Sometimes\"\n", "pools[0].vxlan_mode", "use Never, Always or CrossSubnet"),
        ("[[pools]]\ncidr = \"10.244.0.0/16\"\n[[pools]]\ncidr = \"10.244.64.0/18\"\n", "pools[1].cidr", "overlaps pools[0]"),
        ("[fib]\nprotocol = 4\n", "fib.protocol", "reserved by the kernel"),
        ("[dataplane]\nmaglev_table_size = 16384\n", "dataplane.maglev_table_size", "is not a prime"),
        ("[dataplane]\nmaglev_table_size = 199\n", "dataplane.maglev_table_size", "from 251"),
        ("[dataplane]\nconntrack_gc_interval = 86400\n", "dataplane.conntrack_gc_interval", "over an hour"),
        ("[dataplane]\nconntrack_gc_interval = -1\n", "dataplane.conntrack_gc_interval", ""),
        ("[fib]\nprotocol = 256\n", "fib.protocol", "unsigned 8 bit"),
        ("[fib]\ntable = 255\n", "fib.table", "reserved"),
        ("[fib]\nvxlan_vni = 16777216\n", "fib.vxlan_vni", "24-bit"),
        ("[fib]\nunderlay_mtu = 576\n", "fib.underlay_mtu", "at least 1280"),
    ];
    for (extra, key, what) in cases {
        let (e, shown) = error_of(&format!("{MINIMAL}{extra}"));
        assert_eq!(&e.key, key, "{shown}");
        assert!(shown.contains(what), "expected {what:?} in: {shown}");
        assert!(shown.contains(&format!("key `{key}`")), "{shown}");
    }
}

#[test]
fn pools_and_fib_defaults() {
    let f = write(&format!(
        "{MINIMAL}[[pools]]\ncidr = \"10.244.0.0/16\"\nvxlan_mode = \"CrossSubnet\"\n[[pools]]\ncidr = \"fd00:244::/56\"\n"
    ));
    let c = conf::load(f.path()).unwrap();
    assert_eq!(c.pools[0].block_size(), 26);
    assert_eq!(c.pools[0].vxlan_mode, conf::EncapMode::CrossSubnet);
    assert_eq!(c.pools[0].ipip_mode, conf::EncapMode::Never);
    assert_eq!(c.pools[1].block_size(), 122);
    assert_eq!(c.fib, conf::Fib::default());
    assert_eq!((c.fib.table, c.fib.protocol, c.fib.vxlan_vni, c.fib.vxlan_port), (254, 198, 4096, 4789));
}

#[test]
fn missing_and_broken_files() {
    let (e, _) = error_of("[node]\nname = \"n1\"\n");
    assert!(e.message.contains("address"), "{e}");
    let (_, shown) = error_of("[node\nname=");
    assert!(shown.contains("cannot parse TOML"), "{shown}");
    let e = conf::load(Path::new("/nonexistent/merled.toml")).unwrap_err();
    assert!(e.to_string().contains("not found"));
    let (e, _) = error_of("[node]\nname = \"n1\"\naddress = \"fd00::1/64\"\n");
    assert_eq!(e.key, "node.router_id");
}
