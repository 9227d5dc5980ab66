//! Checks beyond what the types enforce. Each failure names its key.

use std::collections::HashSet;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::model::Config;

/// AS_TRANS (RFC 6793) is reserved and cannot be a real AS.
const AS_TRANS: u32 = 23456;

type Failure = (String, String);

fn check_as(key: String, asn: u32) -> Result<(), Failure> {
    match asn {
        0 => Err((key, "AS 0 is reserved (RFC 7607); use 1..=4294967295".into())),
        AS_TRANS => Err((key, "AS 23456 is AS_TRANS (RFC 6793) and cannot be used".into())),
        _ => Ok(()),
    }
}

fn check_hold(key: String, hold: u16) -> Result<(), Failure> {
    if hold == 1 || hold == 2 {
        return Err((key, format!("hold time {hold} is not allowed: use 0 (no keepalives) or 3 to 65535 seconds")));
    }
    Ok(())
}

fn check_community(key: String, c: &str) -> Result<(), Failure> {
    let parts: Vec<&str> = c.split(':').collect();
    let ok = match parts.as_slice() {
        [a, b] => a.parse::<u16>().is_ok() && b.parse::<u16>().is_ok(),
        [a, b, d] => a.parse::<u32>().is_ok() && b.parse::<u32>().is_ok() && d.parse::<u32>().is_ok(),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err((key, format!("invalid community {c:?}: use aa:nn (16-bit parts) or aa:nn:mm (32-bit parts)")))
    }
}

fn check_rule(key: &str, r: &crate::model::FilterRule, v6: bool) -> Result<(), Failure> {
    let k = |f: &str| format!("{key}.{f}");
    match (&r.cidr, &r.match_operator) {
        (Some(c), Some(op)) => {
            check_prefix(k("cidr"), c)?;
            if c.addr().is_ipv6() != v6 {
                return Err((k("cidr"), format!("{c} is not an IPv{} prefix", if v6 { 6 } else { 4 })));
            }
            if !["Equal", "NotEqual", "In", "NotIn"].contains(&op.as_str()) {
                return Err((
                    k("match_operator"),
                    format!("unknown operator {op:?}: use Equal, NotEqual, In or NotIn"),
                ));
            }
        }
        (Some(_), None) => return Err((k("match_operator"), "required with cidr".into())),
        (None, Some(_)) => return Err((k("cidr"), "required with match_operator".into())),
        (None, None) => {}
    }
    if let Some(pl) = r.prefix_length {
        let top = if v6 { 128 } else { 32 };
        let (min, max) = (pl.min.unwrap_or(0), pl.max.unwrap_or(top));
        if min > max || max > top {
            return Err((k("prefix_length"), format!("range {min}..{max} is not within 0..{top}")));
        }
    }
    if let Some(src) = &r.source {
        if src != "RemotePeers" {
            return Err((k("source"), format!("unknown source {src:?}: the only source is RemotePeers")));
        }
    }
    if let Some(t) = &r.peer_type {
        if t != "iBGP" && t != "eBGP" {
            return Err((k("peer_type"), format!("unknown peer type {t:?}: use iBGP or eBGP")));
        }
    }
    if let Some(c) = &r.community {
        check_community(k("community"), c)?;
    }
    for (n, asn) in r.as_path_prefix.iter().enumerate() {
        check_as(format!("{key}.as_path_prefix[{n}]"), *asn)?;
    }
    match r.action.as_str() {
        "Accept" => {}
        "Reject" => {
            if r.add_community.is_some() || !r.prepend_as_path.is_empty() {
                return Err((k("action"), "add_community and prepend_as_path need action Accept".into()));
            }
        }
        other => return Err((k("action"), format!("unknown action {other:?}: use Accept or Reject"))),
    }
    if let Some(c) = &r.add_community {
        check_community(k("add_community"), c)?;
    }
    for (n, asn) in r.prepend_as_path.iter().enumerate() {
        check_as(format!("{key}.prepend_as_path[{n}]"), *asn)?;
    }
    Ok(())
}

fn check_prefix(key: String, p: &IpNet) -> Result<(), Failure> {
    if p.trunc() != *p {
        return Err((key, format!("prefix {p} has host bits set; did you mean {}?", p.trunc())));
    }
    Ok(())
}

/// The Maglev table sizes the datapath takes.
const MAGLEV_MIN: u32 = 251;
const MAGLEV_MAX: u32 = 131_071;

/// Where `[[services]]` may put addresses: the service ranges, the pools
/// (every backend is a pod) and Kubernetes' NodePort range.
pub fn service_ranges(c: &Config) -> merle_lb::service::Ranges {
    merle_lb::service::Ranges {
        cluster_ips: c.service_ranges.cluster_ips.clone(),
        external_ips: c.service_ranges.external_ips.clone(),
        load_balancer_ips: c.service_ranges.load_balancer_ips.clone(),
        pools: c.pools.iter().map(|p| p.cidr).collect(),
        node_ports: merle_lb::service::NODE_PORTS,
        maglev_size: c.dataplane.maglev_table_size,
    }
}

pub fn validate(c: &Config) -> Result<(), Failure> {
    let n = &c.node;
    if n.name.trim().is_empty() {
        return Err(("node.name".into(), "must not be empty".into()));
    }
    check_as("node.as_number".into(), n.as_number)?;
    let node_ip = n.address.addr();
    if node_ip.is_unspecified() || node_ip.is_multicast() {
        return Err(("node.address".into(), format!("{node_ip} is not a usable node address")));
    }
    if let Some(v6) = n.address_v6 {
        if !v6.addr().is_ipv6() {
            return Err(("node.address_v6".into(), format!("{v6} is not an IPv6 address")));
        }
    }
    for (key, m) in
        [("node.address_autodetect", &n.address_autodetect), ("node.address_v6_autodetect", &n.address_v6_autodetect)]
    {
        if let Some(m) = m {
            m.parse::<crate::identity::Method>().map_err(|e| (key.to_string(), e))?;
        }
    }
    match (n.router_id, node_ip) {
        (Some(id), _) if id.is_unspecified() => {
            return Err(("node.router_id".into(), "0.0.0.0 is not a valid BGP identifier".into()))
        }
        (None, IpAddr::V6(_)) => {
            return Err((
                "node.router_id".into(),
                "required when node.address is IPv6 (it must be an IPv4 address)".into(),
            ))
        }
        _ => {}
    }

    let b = &c.bgp;
    if b.listen_port == 0 {
        return Err(("bgp.listen_port".into(), "port 0 is not allowed".into()));
    }
    check_hold("bgp.hold_time".into(), b.hold_time)?;
    if b.connect_retry_time == 0 {
        return Err(("bgp.connect_retry_time".into(), "must be at least 1 second".into()));
    }
    if b.connect_retry_max < b.connect_retry_time {
        return Err(("bgp.connect_retry_max".into(), "must not be less than bgp.connect_retry_time".into()));
    }
    check_damping("bgp.", b.error_wait_time_min, b.error_wait_time_max, b.error_forget_time)?;
    for (i, p) in b.peers.iter().enumerate() {
        check_damping(
            &format!("bgp.peers[{i}]."),
            p.error_wait_time_min.unwrap_or(b.error_wait_time_min),
            p.error_wait_time_max.unwrap_or(b.error_wait_time_max),
            p.error_forget_time.unwrap_or(b.error_forget_time),
        )?;
    }
    let mut seen = HashSet::new();
    for (i, p) in b.peers.iter().enumerate() {
        let key = |k: &str| format!("bgp.peers[{i}].{k}");
        if !seen.insert(p.address) {
            return Err((key("address"), format!("duplicate peer {}", p.address)));
        }
        if p.address == node_ip {
            return Err((key("address"), format!("{} is this node's own address", p.address)));
        }
        if p.address.is_unspecified() || p.address.is_multicast() {
            return Err((key("address"), format!("{} is not a unicast address", p.address)));
        }
        check_as(key("as_number"), p.as_number)?;
        if p.port == 0 {
            return Err((key("port"), "port 0 is not allowed".into()));
        }
        if let Some(h) = p.hold_time {
            check_hold(key("hold_time"), h)?;
        }
        if let Some(pw) = &p.password {
            if pw.is_empty() || pw.len() > 80 {
                return Err((key("password"), "a TCP MD5 password has 1 to 80 characters".into()));
            }
        }
        if let Some(t) = p.ttl_security {
            if t == 0 || t == 255 {
                return Err((key("ttl_security"), format!("hop count {t} is out of range 1..=254")));
            }
        }
        if p.route_reflector_client {
            if b.route_reflector_cluster_id.is_none() {
                return Err((
                    key("route_reflector_client"),
                    "needs bgp.route_reflector_cluster_id: only a route reflector has clients".into(),
                ));
            }
            if p.as_number != n.as_number {
                return Err((
                    key("route_reflector_client"),
                    "route-reflector clients are iBGP peers: as_number must be node.as_number".into(),
                ));
            }
        }
        if p.max_prefixes == Some(0) {
            return Err((key("max_prefixes"), "must be at least 1 (leave it out for no limit)".into()));
        }
    }

    if b.graceful_restart_time > 4095 {
        return Err(("bgp.graceful_restart_time".into(), "at most 4095 seconds (12 bits, RFC 4724)".into()));
    }
    for (i, p) in b.peers.iter().enumerate() {
        if p.graceful_restart_time.is_some_and(|t| t > 4095) {
            return Err((
                format!("bgp.peers[{i}].graceful_restart_time"),
                "at most 4095 seconds (12 bits, RFC 4724)".into(),
            ));
        }
    }
    if b.max_paths == 0 {
        return Err(("bgp.max_paths".into(), "must be at least 1 (1 turns multipath off)".into()));
    }
    if b.route_reflector_cluster_id.is_some_and(|id| id.is_unspecified()) {
        return Err(("bgp.route_reflector_cluster_id".into(), "0.0.0.0 is not a valid cluster ID".into()));
    }

    let mut seen = HashSet::new();
    for (i, a) in c.advertise.iter().enumerate() {
        let key = format!("advertise[{i}].prefix");
        check_prefix(key.clone(), &a.prefix)?;
        if !seen.insert(a.prefix) {
            return Err((key, format!("duplicate prefix {}", a.prefix)));
        }
        for (j, com) in a.communities.iter().enumerate() {
            check_community(format!("advertise[{i}].communities[{j}]"), com)?;
        }
    }
    for (name, list) in [
        ("cluster_ips", &c.service_ranges.cluster_ips),
        ("external_ips", &c.service_ranges.external_ips),
        ("load_balancer_ips", &c.service_ranges.load_balancer_ips),
    ] {
        for (i, p) in list.iter().enumerate() {
            check_prefix(format!("service_ranges.{name}[{i}]"), p)?;
        }
    }
    let m = c.dataplane.maglev_table_size;
    if !(MAGLEV_MIN..=MAGLEV_MAX).contains(&m) || !merle_lb::maglev::is_prime(m) {
        return Err((
            "dataplane.maglev_table_size".into(),
            format!("{m} is not a prime from {MAGLEV_MIN} to {MAGLEV_MAX} (Cilium's sizes: 251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071)"),
        ));
    }
    if c.dataplane.conntrack_gc_interval > 3600 {
        return Err((
            "dataplane.conntrack_gc_interval".into(),
            format!("{} s is over an hour (0: adaptive, 1 to 60 s)", c.dataplane.conntrack_gc_interval),
        ));
    }
    merle_lb::service::validate(&c.services, &service_ranges(c)).map_err(|e| (e.key, e.message))?;

    let mut names = HashSet::new();
    let mut addrs = HashSet::new();
    for (i, e) in c.nodes.iter().enumerate() {
        let key = |k: &str| format!("nodes[{i}].{k}");
        if e.name.trim().is_empty() {
            return Err((key("name"), "must not be empty".into()));
        }
        if !names.insert(e.name.as_str()) {
            return Err((key("name"), format!("duplicate node {:?}", e.name)));
        }
        if !addrs.insert(e.address.addr()) {
            return Err((key("address"), format!("duplicate node address {}", e.address.addr())));
        }
        if e.name == n.name && e.address.addr() != node_ip {
            return Err((
                key("address"),
                format!("this node's entry says {} but node.address is {node_ip}", e.address.addr()),
            ));
        }
        if e.name != n.name && e.address.addr() == node_ip {
            return Err((
                key("address"),
                format!("{} is this node's address but the entry is named {:?}", node_ip, e.name),
            ));
        }
        if let Some(asn) = e.as_number {
            check_as(key("as_number"), asn)?;
        }
        if e.route_reflector_cluster_id.is_some_and(|id| id.is_unspecified()) {
            return Err((key("route_reflector_cluster_id"), "0.0.0.0 is not a valid cluster ID".into()));
        }
    }
    for (i, p) in b.peers.iter().enumerate() {
        if addrs.contains(&p.address) && p.node.as_deref().is_none_or(|nn| nn == n.name) && b.node_mesh {
            return Err((
                format!("bgp.peers[{i}].address"),
                format!("{} is in [[nodes]]: the mesh or route-reflector session already covers it", p.address),
            ));
        }
    }

    let mut filter_names = HashSet::new();
    for (i, f) in c.filters.iter().enumerate() {
        if !filter_names.insert(f.name.as_str()) {
            return Err((format!("filters[{i}].name"), format!("duplicate filter {:?}", f.name)));
        }
        for (list, rules, v6) in [
            ("import_v4", &f.import_v4, false),
            ("import_v6", &f.import_v6, true),
            ("export_v4", &f.export_v4, false),
            ("export_v6", &f.export_v6, true),
        ] {
            for (j, r) in rules.iter().enumerate() {
                check_rule(&format!("filters[{i}].{list}[{j}]"), r, v6)?;
            }
        }
    }
    for (i, p) in b.peers.iter().enumerate() {
        for (j, name) in p.filters.iter().enumerate() {
            if !filter_names.contains(name.as_str()) {
                return Err((format!("bgp.peers[{i}].filters[{j}]"), format!("no [[filters]] named {name:?}")));
            }
        }
    }

    check_pools(c)?;
    check_fib(&c.fib)?;
    check_ipam(c)?;

    if !c.control.socket.is_absolute() {
        return Err(("control.socket".into(), "must be an absolute path".into()));
    }
    if !["trace", "debug", "info", "warn", "error"].contains(&c.log.level.as_str()) {
        return Err((
            "log.level".into(),
            format!("unknown level {:?}: use trace, debug, info, warn or error", c.log.level),
        ));
    }
    let d = &c.dataplane;
    if !d.pin_dir.is_absolute() {
        return Err(("dataplane.pin_dir".into(), "must be an absolute path".into()));
    }
    let mut seen = HashSet::new();
    for (i, name) in d.interfaces.iter().enumerate() {
        if name.is_empty() || name.len() > 15 || name.contains(['/', ' ']) {
            return Err((format!("dataplane.interfaces[{i}]"), format!("{name:?} is not an interface name")));
        }
        if !seen.insert(name) {
            return Err((format!("dataplane.interfaces[{i}]"), format!("{name} is listed twice")));
        }
    }
    Ok(())
}

fn check_pools(c: &Config) -> Result<(), Failure> {
    use crate::model::EncapMode;
    for (i, p) in c.pools.iter().enumerate() {
        let k = |f: &str| format!("pools[{i}].{f}");
        check_prefix(k("cidr"), &p.cidr)?;
        let bs = p.block_size();
        // Calico's limits: blocks of 2^0..2^12 addresses.
        let (lo, hi) = if p.cidr.addr().is_ipv4() { (20, 32) } else { (116, 128) };
        if !(lo..=hi).contains(&bs) {
            return Err((k("block_size"), format!("{bs} is out of range: use {lo} to {hi}")));
        }
        if bs < p.cidr.prefix_len() {
            return Err((k("block_size"), format!("/{bs} blocks do not fit in the /{} pool", p.cidr.prefix_len())));
        }
        if p.ipip_mode != EncapMode::Never && p.cidr.addr().is_ipv6() {
            return Err((k("ipip_mode"), "IPIP carries IPv4 only: use Never for an IPv6 pool".into()));
        }
        if p.ipip_mode != EncapMode::Never && p.vxlan_mode != EncapMode::Never {
            return Err((k("vxlan_mode"), "IPIP and VXLAN cannot both be on: set one of them to Never".into()));
        }
        for (j, q) in c.pools.iter().enumerate().take(i) {
            if q.cidr.contains(&p.cidr) || p.cidr.contains(&q.cidr) {
                return Err((k("cidr"), format!("{} overlaps pools[{j}] ({})", p.cidr, q.cidr)));
            }
        }
    }
    Ok(())
}

fn check_ipam(c: &Config) -> Result<(), Failure> {
    use crate::model::DatastoreKind;
    if let Some(mtu) = c.ipam.pod_mtu {
        if mtu < 1280 {
            return Err(("ipam.pod_mtu".into(), format!("{mtu} is too small: at least 1280")));
        }
    }
    let d = &c.datastore;
    if !d.path.is_absolute() {
        return Err(("datastore.path".into(), "must be an absolute path".into()));
    }
    if d.kind == DatastoreKind::Etcd {
        if d.endpoints.is_empty() {
            return Err(("datastore.endpoints".into(), "etcd needs at least one endpoint URL".into()));
        }
        let tls = d.endpoints.first().is_some_and(|e| e.starts_with("https://"));
        for (i, e) in d.endpoints.iter().enumerate() {
            let scheme = if tls { "https://" } else { "http://" };
            let Some(rest) = e.strip_prefix(scheme) else {
                return Err((
                    format!("datastore.endpoints[{i}]"),
                    format!("{e:?} is not an {scheme} URL: every endpoint uses the first one's scheme"),
                ));
            };
            if rest.is_empty() || rest.contains('/') {
                return Err((
                    format!("datastore.endpoints[{i}]"),
                    format!("{e:?} is not of the form {scheme}host:port"),
                ));
            }
        }
        match (tls, &d.ca_file) {
            (true, None) => {
                return Err((
                    "datastore.ca_file".into(),
                    "https:// endpoints need the CA that signed etcd's certificates".into(),
                ))
            }
            (false, Some(_)) => {
                return Err(("datastore.ca_file".into(), "is set but the endpoints are http://: use https://".into()))
            }
            _ => {}
        }
        match (&d.cert_file, &d.key_file) {
            (Some(_), None) => return Err(("datastore.key_file".into(), "cert_file needs its key_file".into())),
            (None, Some(_)) => return Err(("datastore.cert_file".into(), "key_file needs its cert_file".into())),
            (Some(_), Some(_)) if !tls => {
                return Err(("datastore.cert_file".into(), "a client certificate needs https:// endpoints".into()))
            }
            _ => {}
        }
        for (k, f) in [
            ("ca_file", &d.ca_file),
            ("cert_file", &d.cert_file),
            ("key_file", &d.key_file),
            ("password_file", &d.password_file),
        ] {
            if f.as_ref().is_some_and(|f| !f.is_absolute()) {
                return Err((format!("datastore.{k}"), "must be an absolute path".into()));
            }
        }
        match (&d.username, &d.password_file) {
            (Some(u), _) if u.is_empty() => return Err(("datastore.username".into(), "is empty".into())),
            (Some(_), None) => {
                return Err(("datastore.password_file".into(), "username needs its password_file".into()))
            }
            (None, Some(_)) => return Err(("datastore.username".into(), "password_file needs its username".into())),
            _ => {}
        }
        if !d.prefix.starts_with('/') || d.prefix.len() < 2 {
            return Err(("datastore.prefix".into(), format!("{:?} must start with '/' and name something", d.prefix)));
        }
        if d.timeout_ms == 0 {
            return Err(("datastore.timeout_ms".into(), "must be at least 1".into()));
        }
    }
    Ok(())
}

fn check_fib(f: &crate::model::Fib) -> Result<(), Failure> {
    // 0-4 are the kernel's own (unspec, redirect, kernel, boot, static).
    if f.protocol <= 4 {
        return Err((
            "fib.protocol".into(),
            format!("{} is reserved by the kernel (0-4): use 5-255, default 198", f.protocol),
        ));
    }
    // 0 is unspecified and 253-255 are default, main and local; only main
    // of those is allowed.
    if f.table == 0 || (f.table != crate::model::RT_TABLE_MAIN && (253..=255).contains(&f.table)) {
        return Err((
            "fib.table".into(),
            format!("table {} is reserved: use 254 (main) or 1-252, 256 and up", f.table),
        ));
    }
    if f.vxlan_vni == 0 || f.vxlan_vni >= 1 << 24 {
        return Err(("fib.vxlan_vni".into(), format!("{} is not a 24-bit VNI (1-16777215)", f.vxlan_vni)));
    }
    if f.vxlan_port == 0 {
        return Err(("fib.vxlan_port".into(), "port 0 is not allowed".into()));
    }
    if f.underlay_mtu < 1280 {
        return Err(("fib.underlay_mtu".into(), format!("{} is too small: at least 1280", f.underlay_mtu)));
    }
    Ok(())
}

/// The damping settings in effect for `at` (`bgp.` or a peer's prefix).
fn check_damping(at: &str, min: u16, max: u16, forget: u16) -> Result<(), Failure> {
    const LIMIT: u16 = 3600;
    if max < min {
        return Err((format!("{at}error_wait_time_max"), format!("{max} is less than error_wait_time_min ({min})")));
    }
    if max > LIMIT {
        return Err((format!("{at}error_wait_time_max"), format!("{max} s is over the limit of {LIMIT} s")));
    }
    if forget == 0 {
        return Err((format!("{at}error_forget_time"), "must be at least 1 second".into()));
    }
    Ok(())
}
