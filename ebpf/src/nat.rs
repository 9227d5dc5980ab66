//! Outgoing NAT (Calico's `natOutgoing`): traffic from a pod of a pool
//! with `nat_outgoing` to an address outside every cluster range leaves
//! with the node's address. It is done by netfilter in both modes, with one
//! nftables table that merled owns (`inet merle_nat`) and replaces
//! atomically on every change; in eBPF mode the pod program hands such
//! packets to the stack (PASS_NAT_OUTGOING), so the rule sees them, and
//! replies are de-NATed by conntrack and routed by the kernel.

use std::io::Write;
use std::process::{Command, Stdio};

use ipnet::IpNet;

use crate::types::NET_F_NAT_OUTGOING;
use crate::Error;

pub const TABLE: &str = "merle_nat";

fn set(name: &str, kind: &str, nets: &[IpNet]) -> String {
    let mut s = format!("  set {name} {{\n    type {kind}\n    flags interval\n    auto-merge\n");
    if !nets.is_empty() {
        let e: Vec<String> = nets.iter().map(|n| n.to_string()).collect();
        s.push_str(&format!("    elements = {{ {} }}\n", e.join(", ")));
    }
    s.push_str("  }\n");
    s
}

/// The nftables script for `cfg`: replaces the table, or removes it when
/// no pool has `nat_outgoing`. Pure; [`apply`] runs it.
pub fn script(cfg: &conf::Config) -> String {
    let ranges = crate::nets::ranges(cfg);
    let pick = |v4: bool, f: &dyn Fn(u32) -> bool| -> Vec<IpNet> {
        ranges.iter().filter(|(n, fl)| matches!(n, IpNet::V4(_)) == v4 && f(**fl)).map(|(n, _)| *n).collect()
    };
    let nat4 = pick(true, &|f| f & NET_F_NAT_OUTGOING != 0);
    let nat6 = pick(false, &|f| f & NET_F_NAT_OUTGOING != 0);
    // Create-then-delete makes the delete succeed whether or not the table
    // was there; nft applies the whole script as one transaction.
    let mut s = format!("table inet {TABLE}\ndelete table inet {TABLE}\n");
    if nat4.is_empty() && nat6.is_empty() {
        return s;
    }
    let all4 = pick(true, &|_| true);
    let all6 = pick(false, &|_| true);
    s.push_str(&format!("table inet {TABLE} {{\n"));
    s.push_str(&set("nat_pools_v4", "ipv4_addr", &nat4));
    s.push_str(&set("cluster_v4", "ipv4_addr", &all4));
    s.push_str(&set("nat_pools_v6", "ipv6_addr", &nat6));
    s.push_str(&set("cluster_v6", "ipv6_addr", &all6));
    s.push_str(
        "  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n    \
         ip saddr @nat_pools_v4 ip daddr != @cluster_v4 counter masquerade comment \"merle nat_outgoing\"\n    \
         ip6 saddr @nat_pools_v6 ip6 daddr != @cluster_v6 counter masquerade comment \"merle nat_outgoing\"\n  }\n}\n",
    );
    s
}

/// Whether any pool asks for outgoing NAT.
pub fn wanted(cfg: &conf::Config) -> bool {
    cfg.pools.iter().any(|p| p.nat_outgoing)
}

/// Runs `nft -f -` with the script of `cfg` in the calling process's
/// network namespace.
pub fn apply(cfg: &conf::Config) -> Result<(), Error> {
    run_nft(&script(cfg), wanted(cfg))
}

/// Removes merle's table.
pub fn remove() -> Result<(), Error> {
    run_nft(&format!("table inet {TABLE}\ndelete table inet {TABLE}\n"), false)
}

fn run_nft(script: &str, needed: bool) -> Result<(), Error> {
    let child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !needed => return Ok(()),
        Err(e) => return Err(Error::Nat(format!("cannot run nft (install nftables): {e}"))),
    };
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes()).map_err(|e| Error::Nat(format!("writing to nft: {e}")))?;
    }
    let out = child.wait_with_output().map_err(|e| Error::Nat(format!("nft: {e}")))?;
    if !out.status.success() {
        return Err(Error::Nat(format!("nft refused the rules: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cfg(extra: &str) -> conf::Config {
        conf::from_str(
            &format!(
                "[node]\nname = \"n\"\naddress = \"10.0.0.1/24\"\n\
                 [services]\ncluster_ips = [\"10.96.0.0/12\"]\n\
                 [[pools]]\ncidr = \"10.244.0.0/16\"\nnat_outgoing = true\n\
                 [[pools]]\ncidr = \"10.245.0.0/16\"\n{extra}"
            ),
            std::path::Path::new("t.toml"),
        )
        .unwrap()
    }

    #[test]
    fn masquerades_nat_pools_to_outside_every_cluster_range() {
        let s = script(&cfg(""));
        assert!(s.starts_with("table inet merle_nat\ndelete table inet merle_nat\n"));
        assert!(s.contains("set nat_pools_v4 {\n    type ipv4_addr\n    flags interval\n    auto-merge\n    elements = { 10.244.0.0/16 }"), "{s}");
        assert!(s.contains("elements = { 10.0.0.0/24, 10.96.0.0/12, 10.244.0.0/16, 10.245.0.0/16 }"), "{s}");
        assert!(s.contains("ip saddr @nat_pools_v4 ip daddr != @cluster_v4 counter masquerade"));
        assert!(!s.contains("set nat_pools_v6 {\n    type ipv6_addr\n    flags interval\n    auto-merge\n    elements"));
    }

    #[test]
    fn no_nat_pool_removes_the_table() {
        let c = conf::from_str(
            "[node]\nname = \"n\"\naddress = \"10.0.0.1/24\"\n[[pools]]\ncidr = \"10.244.0.0/16\"\n",
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        assert_eq!(script(&c), "table inet merle_nat\ndelete table inet merle_nat\n");
        assert!(!wanted(&c));
    }
}
