//! The node's name and addresses when the file leaves them to the node,
//! as one ConfigMap of a DaemonSet serves every node (calico-node's
//! `NODENAME` and `IP_AUTODETECTION_METHOD`).
//!
//! - The name: `[node] name`, else `MERLE_NODE_NAME` (the DaemonSet sets
//!   it from `spec.nodeName`), else the first line of [`NODENAME_FILE`]
//!   (written by `merle-cni install`, for merle-cni on the host).
//! - An address: `[node] address` (or `MERLE_NODE_ADDRESS`), an address
//!   with its prefix length or a bare one, whose length is then the host's
//!   for it; else `[node] address_autodetect` (or
//!   `MERLE_NODE_ADDRESS_AUTODETECT`), one of
//!   - `first-found`: the first global address of the family on an
//!     interface that is up and is not a loopback, a veth, a bridge of a
//!     container engine or a tunnel of merle's or another CNI's;
//!   - `can-reach=ADDRESS`: the address the kernel would send from to
//!     reach ADDRESS (a UDP socket's connect, no packet sent);
//!   - `interface=REGEX[,REGEX...]`: the first global address on the first
//!     interface whose whole name matches;
//!   - `cidr=CIDR[,CIDR...]`: the first address inside one of them.
//! - `address_v6_autodetect` does the same for `address_v6`.
//!
//! The choice is pure ([`choose`]); [`Host`] is what it asks the system,
//! and [`System`] asks the real one.

use std::net::{IpAddr, UdpSocket};
use std::str::FromStr;

use ipnet::IpNet;

/// Where `merle-cni install` leaves the node's name for merle-cni.
pub const NODENAME_FILE: &str = "/var/lib/merle/nodename";

/// Interface names `first-found` never takes (the kernel's, container
/// engines', virtual machines', and CNIs' own devices), as whole-name
/// regular expressions.
const SKIPPED: &[&str] = &[
    "lo",
    "veth.*",
    "mrl.*",
    "vxlan[.-].*",
    "docker.*",
    "cni.*",
    "cbr.*",
    "virbr.*",
    "lxc.*",
    "cali.*",
    "tunl.*",
    "flannel.*",
    "cilium.*",
    "kube-ipvs.*",
    "br-.*",
    "dummy.*",
];

/// How to find an address.
#[derive(Debug, Clone)]
pub enum Method {
    FirstFound,
    CanReach(IpAddr),
    Interface(Vec<regex::Regex>),
    Cidr(Vec<IpNet>),
}

impl PartialEq for Method {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Method::FirstFound, Method::FirstFound) => true,
            (Method::CanReach(a), Method::CanReach(b)) => a == b,
            (Method::Interface(a), Method::Interface(b)) => {
                a.iter().map(regex::Regex::as_str).eq(b.iter().map(regex::Regex::as_str))
            }
            (Method::Cidr(a), Method::Cidr(b)) => a == b,
            _ => false,
        }
    }
}

fn whole(re: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(&format!("^(?:{re})$")).map_err(|e| format!("{re:?} is not a regular expression: {e}"))
}

impl FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s == "first-found" {
            return Ok(Method::FirstFound);
        }
        let (kind, arg) = s.split_once('=').ok_or_else(|| {
            format!("{s:?} is not a method: first-found, can-reach=ADDRESS, interface=REGEX or cidr=CIDR")
        })?;
        let list = || arg.split(',').map(str::trim).filter(|a| !a.is_empty());
        match kind.trim() {
            "can-reach" => {
                arg.trim().parse().map(Method::CanReach).map_err(|_| format!("can-reach: {arg:?} is not an IP address"))
            }
            "interface" => {
                let v = list().map(whole).collect::<Result<Vec<_>, _>>()?;
                if v.is_empty() {
                    return Err("interface= names no interface".into());
                }
                Ok(Method::Interface(v))
            }
            "cidr" => {
                let v = list()
                    .map(|c| c.parse::<IpNet>().map_err(|_| format!("cidr: {c:?} is not a CIDR")))
                    .collect::<Result<Vec<_>, _>>()?;
                if v.is_empty() {
                    return Err("cidr= names no CIDR".into());
                }
                Ok(Method::Cidr(v))
            }
            k => Err(format!("unknown method {k:?}: first-found, can-reach, interface or cidr")),
        }
    }
}

/// An address the host holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostAddr {
    pub ifname: String,
    /// The address with the interface's prefix length.
    pub net: IpNet,
    pub up: bool,
}

/// What address finding asks the node.
pub trait Host {
    fn var(&self, name: &str) -> Option<String>;
    /// The first line of the node-name file, if there is one.
    fn nodename_file(&self) -> Option<String>;
    /// Every address of every interface, in the kernel's order.
    fn addrs(&self) -> Result<Vec<HostAddr>, String>;
    /// The source address the kernel picks towards `dst`.
    fn source_for(&self, dst: IpAddr) -> Option<IpAddr>;
}

/// Whether `a` is a global address: not loopback, link-local,
/// unspecified or multicast.
fn global(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(v) => !(v.is_loopback() || v.is_link_local() || v.is_unspecified() || v.is_multicast()),
        IpAddr::V6(v) => {
            !(v.is_loopback() || v.is_unspecified() || v.is_multicast() || (v.segments()[0] & 0xffc0) == 0xfe80)
        }
    }
}

/// The address `method` finds among the host's, of `v6`'s family.
pub fn choose(method: &Method, v6: bool, addrs: &[HostAddr], host: &dyn Host) -> Result<IpNet, String> {
    let family = |n: &&HostAddr| n.net.addr().is_ipv6() == v6 && global(n.net.addr());
    let fam = if v6 { "IPv6" } else { "IPv4" };
    match method {
        Method::FirstFound => {
            let skipped: Vec<regex::Regex> = SKIPPED.iter().filter_map(|s| whole(s).ok()).collect();
            addrs
                .iter()
                .filter(family)
                .find(|a| a.up && !skipped.iter().any(|r| r.is_match(&a.ifname)))
                .map(|a| a.net)
                .ok_or_else(|| format!("first-found: no interface that is up has a global {fam} address"))
        }
        Method::CanReach(dst) => {
            if dst.is_ipv6() != v6 {
                return Err(format!("can-reach={dst} is not an {fam} address"));
            }
            let src = host.source_for(*dst).ok_or_else(|| format!("can-reach={dst}: no route to it"))?;
            with_prefix(src, addrs).ok_or_else(|| format!("can-reach={dst}: the source {src} is on no interface"))
        }
        Method::Interface(res) => res
            .iter()
            .find_map(|re| addrs.iter().filter(family).find(|a| re.is_match(&a.ifname)))
            .map(|a| a.net)
            .ok_or_else(|| format!("interface=: no matching interface has a global {fam} address")),
        Method::Cidr(cidrs) => addrs
            .iter()
            .filter(family)
            .find(|a| cidrs.iter().any(|c| c.contains(&a.net.addr())))
            .map(|a| a.net)
            .ok_or_else(|| format!("cidr=: no {fam} address of the host is inside them")),
    }
}

/// `a` with the prefix length of the host's address it is.
pub fn with_prefix(a: IpAddr, addrs: &[HostAddr]) -> Option<IpNet> {
    addrs.iter().find(|h| h.net.addr() == a).map(|h| h.net)
}

/// The raw configuration with `[node]`'s name and addresses filled in from
/// `host` where the file leaves them out: (key, message) when they cannot
/// be.
pub fn resolve(raw: config::Config, host: &dyn Host) -> Result<config::Config, (String, String)> {
    let get = |k: &str| raw.get_string(k).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    let mut set: Vec<(&str, String)> = Vec::new();
    if get("node.name").is_none() {
        let name = host.var("MERLE_NODE_NAME").or_else(|| host.nodename_file()).ok_or_else(|| {
            (
                "node.name".to_string(),
                format!("not set: give it, or set MERLE_NODE_NAME, or leave the name in {NODENAME_FILE}"),
            )
        })?;
        set.push(("node.name", name));
    }
    let mut addrs: Option<Vec<HostAddr>> = None;
    for (key, var, auto, auto_var, v6) in [
        ("node.address", "MERLE_NODE_ADDRESS", "node.address_autodetect", "MERLE_NODE_ADDRESS_AUTODETECT", false),
        (
            "node.address_v6",
            "MERLE_NODE_ADDRESS_V6",
            "node.address_v6_autodetect",
            "MERLE_NODE_ADDRESS_V6_AUTODETECT",
            true,
        ),
    ] {
        let mut list = || -> Result<Vec<HostAddr>, (String, String)> {
            if addrs.is_none() {
                addrs = Some(host.addrs().map_err(|e| (key.to_string(), e))?);
            }
            Ok(addrs.clone().unwrap_or_default())
        };
        if let Some(given) = get(key).or_else(|| host.var(var)) {
            if given.contains('/') {
                if get(key).is_none() {
                    set.push((key, given));
                }
                continue;
            }
            // A bare address: the prefix length is the host's for it.
            let a: IpAddr = given.parse().map_err(|_| (key.to_string(), format!("{given:?} is not an IP address")))?;
            let net = with_prefix(a, &list()?).ok_or_else(|| {
                (key.to_string(), format!("{a} is not an address of this host: give its prefix length"))
            })?;
            set.push((key, net.to_string()));
            continue;
        }
        let Some(m) = get(auto).or_else(|| host.var(auto_var)) else { continue };
        let method: Method = m.parse().map_err(|e| (auto.to_string(), e))?;
        let net = choose(&method, v6, &list()?, host).map_err(|e| (auto.to_string(), e))?;
        set.push((key, net.to_string()));
    }
    if set.is_empty() {
        return Ok(raw);
    }
    let mut b = config::Config::builder().add_source(raw);
    for (k, v) in set {
        b = b.set_override(k, v).map_err(|e| (k.to_string(), e.to_string()))?;
    }
    b.build().map_err(|e| ("node".to_string(), e.to_string()))
}

/// The real node: the process's environment, [`NODENAME_FILE`],
/// getifaddrs(3), and a connected UDP socket for the source address.
#[derive(Debug, Clone, Copy, Default)]
pub struct System;

impl Host for System {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.trim().is_empty())
    }
    fn nodename_file(&self) -> Option<String> {
        let text = std::fs::read_to_string(NODENAME_FILE).ok()?;
        let name = text.lines().next()?.trim().to_owned();
        (!name.is_empty()).then_some(name)
    }
    fn addrs(&self) -> Result<Vec<HostAddr>, String> {
        let list = nix::ifaddrs::getifaddrs().map_err(|e| format!("cannot list the host's addresses: {e}"))?;
        let mut out = Vec::new();
        for ifa in list {
            let Some(addr) = ifa.address else { continue };
            let up = ifa.flags.contains(nix::net::if_::InterfaceFlags::IFF_UP);
            let (a, len) = if let Some(s) = addr.as_sockaddr_in() {
                let mask = ifa.netmask.and_then(|m| m.as_sockaddr_in().map(|m| u32::from(m.ip()).count_ones()));
                (IpAddr::V4(s.ip()), mask.unwrap_or(32) as u8)
            } else if let Some(s) = addr.as_sockaddr_in6() {
                let mask = ifa.netmask.and_then(|m| m.as_sockaddr_in6().map(|m| u128::from(m.ip()).count_ones()));
                (IpAddr::V6(s.ip()), mask.unwrap_or(128) as u8)
            } else {
                continue;
            };
            if let Ok(net) = IpNet::new(a, len) {
                out.push(HostAddr { ifname: ifa.interface_name, net, up });
            }
        }
        Ok(out)
    }
    fn source_for(&self, dst: IpAddr) -> Option<IpAddr> {
        let bind: IpAddr = if dst.is_ipv6() { "::".parse().ok()? } else { "0.0.0.0".parse().ok()? };
        let s = UdpSocket::bind((bind, 0)).ok()?;
        s.connect((dst, 9)).ok()?;
        s.local_addr().ok().map(|a| a.ip())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    struct Fake(Vec<HostAddr>, Option<IpAddr>);
    impl Host for Fake {
        fn var(&self, _: &str) -> Option<String> {
            None
        }
        fn nodename_file(&self) -> Option<String> {
            None
        }
        fn addrs(&self) -> Result<Vec<HostAddr>, String> {
            Ok(self.0.clone())
        }
        fn source_for(&self, _: IpAddr) -> Option<IpAddr> {
            self.1
        }
    }

    fn a(ifname: &str, net: &str, up: bool) -> HostAddr {
        HostAddr { ifname: ifname.into(), net: net.parse().unwrap(), up }
    }

    fn host() -> Vec<HostAddr> {
        vec![
            a("lo", "127.0.0.1/8", true),
            a("docker0", "172.17.0.1/16", true),
            a("eth1", "192.168.9.5/24", false),
            a("eth0", "fe80::1/64", true),
            a("eth0", "10.0.0.7/24", true),
            a("eth0", "fd00::7/64", true),
            a("ens5", "10.1.0.7/16", true),
            a("vxlan.merle", "10.244.3.0/32", true),
        ]
    }

    #[test]
    fn methods_parse_and_bad_ones_say_what_is_wrong() {
        assert_eq!("first-found".parse::<Method>().unwrap(), Method::FirstFound);
        assert_eq!("can-reach=10.0.0.254".parse::<Method>().unwrap(), Method::CanReach("10.0.0.254".parse().unwrap()));
        assert!(matches!("interface=eth.*, ens5".parse::<Method>().unwrap(), Method::Interface(v) if v.len() == 2));
        assert!(matches!("cidr=10.0.0.0/24".parse::<Method>().unwrap(), Method::Cidr(v) if v.len() == 1));
        for (bad, says) in [
            ("can-reach=gateway", "not an IP address"),
            ("interface=eth(", "not a regular expression"),
            ("cidr=10.0.0.0/33", "not a CIDR"),
            ("ifname=eth0", "unknown method"),
            ("eth0", "not a method"),
            ("interface=", "names no interface"),
        ] {
            let e = bad.parse::<Method>().unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn each_method_picks_the_address_a_calico_user_expects() {
        let h = host();
        let f = Fake(h.clone(), Some("10.1.0.7".parse().unwrap()));
        let pick = |m: &str, v6| choose(&m.parse().unwrap(), v6, &h, &f);
        assert_eq!(pick("first-found", false).unwrap().to_string(), "10.0.0.7/24", "skips lo, docker0, a down eth1");
        assert_eq!(pick("first-found", true).unwrap().to_string(), "fd00::7/64", "skips the link-local");
        assert_eq!(pick("can-reach=10.1.255.254", false).unwrap().to_string(), "10.1.0.7/16");
        assert_eq!(pick("interface=ens.*", false).unwrap().to_string(), "10.1.0.7/16");
        assert_eq!(pick("interface=eth0", true).unwrap().to_string(), "fd00::7/64");
        assert_eq!(
            pick("interface=eth", false).unwrap_err(),
            "interface=: no matching interface has a global IPv4 address"
        );
        assert_eq!(pick("cidr=10.1.0.0/16,10.0.0.0/8", false).unwrap().to_string(), "10.0.0.7/24", "kernel order");
        assert!(pick("can-reach=fd00::1", false).unwrap_err().contains("not an IPv4 address"));
        let nowhere = Fake(h.clone(), None);
        assert!(choose(&"can-reach=10.9.9.9".parse().unwrap(), false, &h, &nowhere).unwrap_err().contains("no route"));
        let only_lo = vec![a("lo", "127.0.0.1/8", true)];
        assert!(choose(&Method::FirstFound, false, &only_lo, &f).unwrap_err().contains("no interface"));
    }

    #[test]
    fn the_real_host_lists_its_loopback() {
        let addrs = System.addrs().unwrap();
        assert!(addrs.iter().any(|a| a.ifname == "lo" && a.net.to_string() == "127.0.0.1/8"), "{addrs:?}");
        assert_eq!(System.source_for("127.0.0.1".parse().unwrap()), Some("127.0.0.1".parse().unwrap()));
    }

    /// A node with environment variables.
    struct Env(Vec<(&'static str, &'static str)>, Option<&'static str>);
    impl Host for Env {
        fn var(&self, name: &str) -> Option<String> {
            self.0.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
        }
        fn nodename_file(&self) -> Option<String> {
            self.1.map(String::from)
        }
        fn addrs(&self) -> Result<Vec<HostAddr>, String> {
            Ok(host())
        }
        fn source_for(&self, _: IpAddr) -> Option<IpAddr> {
            "10.0.0.7".parse().ok()
        }
    }

    fn load(text: &str, h: &dyn Host) -> Result<crate::Config, crate::ConfigError> {
        crate::from_str_on(text, std::path::Path::new("merle.toml"), h)
    }

    #[test]
    fn one_file_serves_every_node_with_the_name_and_address_from_the_node() {
        let shared =
            "[node]\naddress_autodetect = \"can-reach=10.0.0.254\"\naddress_v6_autodetect = \"interface=eth0\"\n";
        let c = load(shared, &Env(vec![("MERLE_NODE_NAME", "n7")], None)).unwrap();
        assert_eq!((c.node.name.as_str(), c.node.address.to_string()), ("n7", "10.0.0.7/24".into()));
        assert_eq!(c.node.address_v6.unwrap().to_string(), "fd00::7/64");
        // merle-cni on the host: the name from the file install left.
        let c = load(shared, &Env(vec![], Some("n8"))).unwrap();
        assert_eq!(c.node.name, "n8");
        // The downward API's bare host IP takes the host's prefix length.
        let c =
            load("[node]\n", &Env(vec![("MERLE_NODE_NAME", "n7"), ("MERLE_NODE_ADDRESS", "10.1.0.7")], None)).unwrap();
        assert_eq!(c.node.address.to_string(), "10.1.0.7/16");
        // What the file says wins over the environment.
        let c = load(
            "[node]\nname = \"file\"\naddress = \"10.0.0.9/24\"\n",
            &Env(vec![("MERLE_NODE_NAME", "env"), ("MERLE_NODE_ADDRESS", "10.1.0.7")], None),
        )
        .unwrap();
        assert_eq!((c.node.name.as_str(), c.node.address.to_string()), ("file", "10.0.0.9/24".into()));
        // Without the node's help, nothing is guessed.
        let e = crate::from_str(shared, std::path::Path::new("merle.toml")).unwrap_err();
        assert_eq!(e.key, "node", "{e}");
    }

    #[test]
    fn what_the_node_cannot_answer_is_named_by_its_key() {
        let none = Env(vec![], None);
        let e = load("[node]\naddress = \"10.0.0.7/24\"\n", &none).unwrap_err();
        assert_eq!(e.key, "node.name");
        assert!(e.message.contains("MERLE_NODE_NAME"), "{e}");
        let named = Env(vec![("MERLE_NODE_NAME", "n7")], None);
        let e = load("[node]\naddress_autodetect = \"cidr=192.0.2.0/24\"\n", &named).unwrap_err();
        assert_eq!(e.key, "node.address_autodetect");
        assert!(e.message.contains("no IPv4 address of the host is inside"), "{e}");
        let e = load("[node]\naddress_autodetect = \"nearest\"\n", &named).unwrap_err();
        assert_eq!(e.key, "node.address_autodetect");
        let e = load("[node]\naddress = \"10.9.9.9\"\n", &named).unwrap_err();
        assert_eq!(e.key, "node.address");
        assert!(e.message.contains("not an address of this host"), "{e}");
        // A method given with an address is still checked.
        let e = crate::from_str(
            "[node]\nname = \"n\"\naddress = \"10.0.0.7/24\"\naddress_autodetect = \"cidr=x\"\n",
            std::path::Path::new("merle.toml"),
        )
        .unwrap_err();
        assert_eq!(e.key, "node.address_autodetect");
    }
}
