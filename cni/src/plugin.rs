//! The plugin's commands: ADD, DEL, CHECK, VERSION, STATUS and GC.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use ipnet::IpNet;
use serde_json::Value;

use crate::link::{self, LinkError};
use crate::netconf::{attachment, NetConf};
use crate::spec::{self, AddResult, Code, Command, Env, Error, Interface, IpConfig, Route};
use merle_ebpf::pods as dataplane;
use merle_ipam::{self as ipam, alloc, Holder, IpamError, Store};

/// The CNI error for an IPAM error: no address, try again later (the
/// store is unreachable), or I/O.
fn ipam_error(e: IpamError) -> Error {
    let code = match &e {
        IpamError::NoPools | IpamError::Exhausted { .. } => Code::NoAddress,
        IpamError::Unavailable(_) => Code::TryAgainLater,
        IpamError::Corrupt(_) | IpamError::Io(_) => Code::Io,
    };
    Error::new(code, e.to_string())
}

impl From<LinkError> for Error {
    fn from(e: LinkError) -> Self {
        let code = match &e {
            LinkError::Netns(..) => Code::UnknownContainer,
            LinkError::Mismatch(_) => Code::CheckFailed,
            LinkError::Busy(_) => Code::InvalidEnvironment,
            _ => Code::Io,
        };
        Error::new(code, e.to_string())
    }
}

/// One invocation: what the runtime asked, with merle's configuration.
#[derive(Debug)]
struct Call {
    env: Env,
    conf: NetConf,
    cfg: conf::Config,
    /// How long the ADD's allocation transaction took (for the metrics).
    ipam_seconds: std::cell::Cell<Option<f64>>,
}

/// Runs the command the environment names. `Ok(Some(v))` is printed on
/// stdout; an error is printed as the spec's error JSON with `version`.
pub fn run(get: impl Fn(&str) -> Option<String>, stdin: &[u8]) -> Result<Option<Value>, (Error, String)> {
    let fallback = spec::LATEST.to_string();
    let cmd = match get("CNI_COMMAND") {
        Some(c) => Command::parse(&c).map_err(|e| (e, fallback.clone()))?,
        None => return Err((Error::new(Code::InvalidEnvironment, "CNI_COMMAND is not set"), fallback)),
    };
    if cmd == Command::Version {
        let v: Option<String> = serde_json::from_slice::<Value>(stdin)
            .ok()
            .and_then(|v| v.get("cniVersion").and_then(|s| s.as_str().map(str::to_owned)));
        let v = v.filter(|v| spec::SUPPORTED_VERSIONS.contains(&v.as_str())).unwrap_or(fallback);
        return Ok(Some(spec::version_json(&v)));
    }
    let conf = NetConf::parse(stdin).map_err(|e| (e, fallback.clone()))?;
    let version = conf.cni_version.clone();
    let fail = |e: Error| (e, version.clone());
    match cmd {
        Command::Check if !conf.has_check() => {
            return Err(fail(Error::new(Code::IncompatibleVersion, "CHECK needs cniVersion 0.4.0 or later")))
        }
        Command::Status | Command::Gc if !conf.has_gc() => {
            return Err(fail(Error::new(Code::IncompatibleVersion, "STATUS and GC need cniVersion 1.1.0")))
        }
        _ => {}
    }
    let env = Env::read(cmd, &get).map_err(fail)?;
    let path = conf.merle_config();
    let cfg = conf::load(&path)
        .map_err(|e| fail(Error::new(Code::InvalidConfig, format!("merle configuration {}: {e}", path.display()))))?;
    let call = Call { env, conf, cfg, ipam_seconds: std::cell::Cell::new(None) };
    let started = std::time::Instant::now();
    let out = ipam::open(&call.cfg).map_err(ipam_error).and_then(|store| match cmd {
        Command::Add => add(&call, store.as_ref()).map(|r| Some(r.to_json(&version))),
        Command::Del => del(&call, store.as_ref()).map(|()| None),
        Command::Check => check(&call, store.as_ref()).map(|()| None),
        Command::Status => status(&call, store.as_ref()).map(|()| None),
        Command::Gc => gc(&call, store.as_ref()).map(|()| None),
        Command::Version => Ok(None),
    });
    let result = match &out {
        Ok(_) => "ok".to_owned(),
        Err(e) => format!("code_{}", e.code as u32),
    };
    crate::notify::cni_call(
        &call.cfg.control.socket,
        cmd.as_str(),
        &result,
        started.elapsed().as_secs_f64(),
        call.ipam_seconds.get(),
    );
    out.map_err(fail)
}

fn holder_of(c: &Call) -> Holder {
    attachment(&c.conf.name, &c.env.container_id, &c.env.ifname)
}

/// The pod MTU: the configured one less the largest encapsulation overhead
/// of the pools the pod's addresses come from.
pub fn pod_mtu(cfg: &conf::Config, netconf_mtu: Option<u16>, addrs: &[IpAddr]) -> u32 {
    let base = netconf_mtu.or(cfg.ipam.pod_mtu).unwrap_or(cfg.fib.underlay_mtu);
    let overhead = cfg
        .pools
        .iter()
        .filter(|p| addrs.iter().any(|a| p.cidr.contains(a)))
        .map(|p| {
            let v4 = p.cidr.addr().is_ipv4();
            if p.vxlan_mode != conf::EncapMode::Never {
                if v4 {
                    fib_sync::desired::VXLAN_OVERHEAD_V4
                } else {
                    fib_sync::desired::VXLAN_OVERHEAD_V6
                }
            } else if p.ipip_mode != conf::EncapMode::Never {
                20
            } else {
                0
            }
        })
        .max()
        .unwrap_or(0);
    u32::from(base.saturating_sub(overhead))
}

fn now() -> u64 {
    ipam::now()
}

fn add(c: &Call, store: &dyn Store) -> Result<AddResult, Error> {
    let netns = Path::new(&c.env.netns);
    if !netns.exists() {
        return Err(Error::new(Code::UnknownContainer, format!("CNI_NETNS {} does not exist", netns.display())));
    }
    // Everything that can be checked before IPAM is: a bad netns or a taken
    // interface name must not claim a block or rewrite the store.
    let mut sandbox = link::Sandbox::open(netns)?;
    let host = ipam::pods::host_veth_name(&c.env.container_id, &c.env.ifname);
    sandbox.ensure_free(&c.env.ifname, &host)?;
    let h = holder_of(c);
    let req = alloc::Assign {
        holder: &h,
        node: &c.cfg.node.name,
        pools: &c.cfg.pools,
        strict_affinity: c.cfg.ipam.strict_affinity,
    };
    let t = std::time::Instant::now();
    let (addrs, fresh) = ipam::transact(store, |b| alloc::assign(b, &req)).map_err(ipam_error)?;
    c.ipam_seconds.set(Some(t.elapsed().as_secs_f64()));
    let mtu = pod_mtu(&c.cfg, c.conf.mtu, &addrs);
    let a = link::Attachment { host: &host, ifname: &c.env.ifname, netns, addrs: &addrs, mtu };
    // A repeated ADD of a working attachment leaves it alone.
    let existing = if fresh { None } else { link::verify(&a, &mut sandbox).ok() };
    let created = match existing {
        Some(x) => x,
        None => match link::setup(&a, &mut sandbox) {
            Ok(x) => x,
            Err(e) => {
                // Roll the allocation back too: nothing of this ADD stays. An
                // attachment that already held its addresses keeps them: the
                // runtime's DEL releases those.
                let mut err: Error = e.into();
                if fresh {
                    if let Err(u) = ipam::transact(store, |b| Ok(alloc::release(b, &h, now()))) {
                        err = err.details(format!("and releasing {} failed: {u}", h.handle));
                    }
                }
                return Err(err);
            }
        },
    };
    // The fast path before the pod's first packet: link the pinned pod
    // program and publish the endpoint. A failure undoes the whole ADD.
    if let Err(e) = dataplane::attach(&c.cfg, &host, &addrs, created.pod_mac) {
        let _ = dataplane::detach(&c.cfg, &host, &addrs);
        let _ = link::teardown(&host);
        let mut err = Error::new(Code::Io, format!("eBPF datapath: {e}"));
        if fresh {
            if let Err(u) = ipam::transact(store, |b| Ok(alloc::release(b, &h, now()))) {
                err = err.details(format!("and releasing {} failed: {u}", h.handle));
            }
        }
        return Err(err);
    }
    if fresh {
        crate::notify::ipam_changed(&c.cfg.control.socket);
    }
    let mut routes = Vec::new();
    if addrs.iter().any(|a| a.is_ipv4()) {
        routes.push(Route {
            dst: IpNet::from(IpAddr::V4(Ipv4Addr::UNSPECIFIED)).trunc_to(0),
            gw: Some(IpAddr::V4(link::GATEWAY_V4)),
        });
    }
    if addrs.iter().any(|a| a.is_ipv6()) {
        routes.push(Route {
            dst: IpNet::from(IpAddr::V6(Ipv6Addr::UNSPECIFIED)).trunc_to(0),
            gw: Some(IpAddr::V6(link::GATEWAY_V6)),
        });
    }
    Ok(AddResult {
        interfaces: vec![
            Interface {
                name: host.clone(),
                mac: link::mac_string(&dataplane::HOST_MAC),
                mtu: Some(mtu),
                sandbox: None,
            },
            Interface {
                name: c.env.ifname.clone(),
                mac: link::mac_string(&created.pod_mac),
                mtu: Some(mtu),
                sandbox: Some(c.env.netns.clone()),
            },
        ],
        ips: addrs.iter().map(|a| IpConfig { address: IpNet::from(*a), gateway: None, interface: Some(1) }).collect(),
        routes,
    })
}

trait TruncTo {
    fn trunc_to(self, len: u8) -> IpNet;
}

impl TruncTo for IpNet {
    fn trunc_to(self, len: u8) -> IpNet {
        IpNet::new(self.addr(), len).map(|n| n.trunc()).unwrap_or(self)
    }
}

fn del(c: &Call, store: &dyn Store) -> Result<(), Error> {
    let host = ipam::pods::host_veth_name(&c.env.container_id, &c.env.ifname);
    let h = holder_of(c);
    // The endpoint entries first: nothing is redirected into a veth that
    // is going away. Then the link, then the veth.
    let addrs = alloc::addresses_of(&store.load().map_err(ipam_error)?, &h);
    dataplane::detach(&c.cfg, &host, &addrs).map_err(|e| Error::new(Code::Io, format!("eBPF datapath: {e}")))?;
    link::teardown(&host)?;
    let freed = ipam::transact(store, |b| Ok(alloc::release(b, &h, now()))).map_err(ipam_error)?;
    if !freed.is_empty() {
        crate::notify::ipam_changed(&c.cfg.control.socket);
    }
    Ok(())
}

fn check(c: &Call, store: &dyn Store) -> Result<(), Error> {
    let h = holder_of(c);
    let addrs = alloc::addresses_of(&store.load().map_err(ipam_error)?, &h);
    if addrs.is_empty() {
        return Err(Error::new(Code::CheckFailed, format!("IPAM has no addresses for {}", h.handle)));
    }
    if let Some(prev) = &c.conf.prev_result {
        let mut listed: Vec<IpAddr> = prev
            .get("ips")
            .and_then(Value::as_array)
            .map(|ips| {
                ips.iter().filter_map(|i| i.get("address")?.as_str()?.parse::<IpNet>().ok()).map(|n| n.addr()).collect()
            })
            .unwrap_or_default();
        listed.sort_by_key(|a| (a.is_ipv6(), *a));
        if listed != addrs {
            return Err(Error::new(
                Code::CheckFailed,
                format!("prevResult lists {listed:?} but IPAM holds {addrs:?} for {}", h.handle),
            ));
        }
    }
    let host = ipam::pods::host_veth_name(&c.env.container_id, &c.env.ifname);
    let netns = Path::new(&c.env.netns);
    let a = link::Attachment {
        host: &host,
        ifname: &c.env.ifname,
        netns,
        addrs: &addrs,
        mtu: pod_mtu(&c.cfg, c.conf.mtu, &addrs),
    };
    link::verify(&a, &mut link::Sandbox::open(netns)?)?;
    Ok(())
}

fn status(c: &Call, store: &dyn Store) -> Result<(), Error> {
    if c.cfg.pools.is_empty() {
        return Err(Error::new(Code::NotAvailable, "no IP pool is configured ([[pools]] is empty)"));
    }
    store.load().map_err(|e| Error::new(Code::NotAvailable, e.to_string()))?;
    Ok(())
}

/// The stale-only reconcile of the endpoint map against this node's pods.
fn reconcile_pods(cfg: &conf::Config, blocks: &alloc::Blocks) -> Result<dataplane::Reconciled, merle_ebpf::Error> {
    let node = &cfg.node.name;
    dataplane::reconcile(
        cfg,
        &ipam::pods::attachments(blocks, node),
        &ipam::pods::allocated(blocks, node),
        dataplane::Scope::Stale,
    )
}

fn gc(c: &Call, store: &dyn Store) -> Result<(), Error> {
    // Without the list, "nothing is valid" would be a guess that frees
    // every pod of the network: only an explicit empty list says that.
    let listed = c.conf.valid_attachments.as_ref().ok_or_else(|| {
        Error::new(Code::InvalidConfig, "GC needs cni.dev/valid-attachments (an empty list if nothing is valid)")
    })?;
    let valid: HashSet<ipam::Attachment> =
        listed.iter().filter_map(|a| attachment(&c.conf.name, &a.container_id, &a.ifname).attachment).collect();
    let node = &c.cfg.node.name;
    // What the runtime forgot may still be wired (an ADD killed midway),
    // and its host end would hold the address's host route against the
    // next pod given the address. So the wiring goes first, and only what
    // was unwired is released: a failure or a crash in between leaves the
    // allocation for the next GC to find again.
    let stale = alloc::stale(&store.load().map_err(ipam_error)?, node, &c.conf.name, &valid);
    let mut unwired = HashSet::new();
    let mut failed = Vec::new();
    for a in stale {
        match link::teardown(&ipam::pods::host_veth_name(&a.container_id, &a.ifname)) {
            Ok(_) => {
                unwired.insert(a);
            }
            Err(e) => failed.push(format!("{}: {e}", Holder::of(a).handle)),
        }
    }
    let freed = ipam::transact(store, |b| {
        let now_stale = alloc::stale(b, node, &c.conf.name, &valid);
        let mut out = Vec::new();
        for a in now_stale.into_iter().filter(|a| unwired.contains(a)) {
            out.extend(alloc::release(b, &Holder::of(a), now()));
        }
        Ok(out)
    })
    .map_err(ipam_error)?;
    if !freed.is_empty() {
        crate::notify::ipam_changed(&c.cfg.control.socket);
    }
    // No endpoint entry or pod link outlives its pod.
    match reconcile_pods(&c.cfg, &store.load().map_err(ipam_error)?) {
        Ok(r) => failed.extend(r.errors),
        Err(e) => failed.push(format!("eBPF datapath: {e}")),
    }
    if !failed.is_empty() {
        return Err(Error::new(Code::Io, format!("GC could not remove {} stale attachment(s)", failed.len()))
            .details(failed.join("; ")));
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
                 [[pools]]\ncidr = \"10.244.0.0/16\"\nvxlan_mode = \"Always\"\n\
                 [[pools]]\ncidr = \"10.245.0.0/16\"\n\
                 [[pools]]\ncidr = \"fd00:244::/56\"\nvxlan_mode = \"CrossSubnet\"\n{extra}"
            ),
            Path::new("t.toml"),
        )
        .unwrap()
    }

    #[test]
    fn pod_mtu_takes_off_the_overhead_of_the_pods_pools() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let c = cfg("");
        assert_eq!(pod_mtu(&c, None, &[ip("10.244.0.1")]), 1450);
        assert_eq!(pod_mtu(&c, None, &[ip("10.245.0.1")]), 1500);
        assert_eq!(pod_mtu(&c, None, &[ip("10.245.0.1"), ip("fd00:244::1")]), 1430);
        assert_eq!(pod_mtu(&c, Some(9000), &[ip("10.244.0.1")]), 8950);
        let c = cfg("[ipam]\npod_mtu = 1400\n[fib]\nunderlay_mtu = 9000\n");
        assert_eq!(pod_mtu(&c, None, &[ip("10.244.0.1")]), 1350);
    }
}
