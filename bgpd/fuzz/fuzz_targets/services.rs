//! Fuzzes services from the configuration side, up to what the eBPF
//! service maps are written from: any `[[services]]` text after a fixed
//! node and ranges is refused with a clear error, or validates, and then
//! this node's plan (frontends, tables) and every table's Maglev slots
//! hold what `merle_ebpf::services::Services::sync` relies on. Never a
//! panic.
#![no_main]

use std::collections::BTreeSet;

use libfuzzer_sys::fuzz_target;

const BASE: &str = "[node]\nname = \"n1\"\naddress = \"10.0.0.1/24\"\naddress_v6 = \"fd00::1/64\"\n\n\
[[pools]]\ncidr = \"10.244.0.0/16\"\n\n[[pools]]\ncidr = \"fd00:244::/56\"\nblock_size = 122\n\n\
[service_ranges]\ncluster_ips = [\"10.96.0.0/12\", \"fd00:96::/108\"]\nexternal_ips = [\"198.51.100.0/24\"]\n\
load_balancer_ips = [\"192.0.2.0/24\", \"2001:db8::/64\"]\n\n";

fuzz_target!(|data: &[u8]| {
    let text = format!("{BASE}{}", String::from_utf8_lossy(data));
    let cfg = match conf::from_str(&text, std::path::Path::new("fuzz.toml")) {
        Ok(c) => c,
        Err(e) => {
            assert!(!e.to_string().is_empty(), "an error must say what is wrong");
            return;
        }
    };
    let addrs: Vec<std::net::IpAddr> =
        std::iter::once(cfg.node.address.addr()).chain(cfg.node.address_v6.map(|a| a.addr())).collect();
    let mut plan = merle_lb::plan::plan(&cfg.services, &cfg.node.name, &addrs);
    plan.maglev_size = cfg.dataplane.maglev_table_size;
    assert_eq!(
        plan,
        {
            let mut again = merle_lb::plan::plan(&cfg.services, &cfg.node.name, &addrs);
            again.maglev_size = cfg.dataplane.maglev_table_size;
            again
        },
        "the plan is a function of the configuration"
    );
    for (f, fp) in &plan.frontends {
        assert!(plan.tables.contains_key(&fp.table), "{f:?}: its table is planned");
    }
    for (key, targets) in &plan.tables {
        let s = cfg.services.iter().find(|s| s.name == key.service).expect("a table of a configured service");
        let mine: BTreeSet<(std::net::IpAddr, u16)> =
            s.backends.iter().filter(|b| !key.local || b.node == cfg.node.name).map(|b| (b.address, b.port)).collect();
        assert!(targets.iter().all(|t| mine.contains(&(t.address, t.port))), "{key:?}: only its own backends");
        assert!(targets.windows(2).all(|w| w[0] < w[1]), "{key:?}: sorted, no duplicate");
        if targets.is_empty() {
            continue;
        }
        let keys: Vec<Vec<u8>> = targets.iter().map(|t| t.maglev_key()).collect();
        let slots = merle_lb::maglev::table(&keys, plan.maglev_size).expect("a validated table size and backends");
        assert_eq!(slots.len(), plan.maglev_size as usize);
        assert!(slots.iter().all(|&i| (i as usize) < keys.len()), "{key:?}: every slot names a backend");
    }
});
