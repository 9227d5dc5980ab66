//! Fuzzes the control socket's request parser (`merle_control::parse`,
//! what merled runs on every line a client sends): any line is a request
//! or an error that says what is wrong, never a panic; a request that
//! parses survives its own round trip through JSON, and a service it
//! carries gets the configuration's checks against fixed ranges, as the
//! datastore write does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use merle_control::{parse, Request};

fuzz_target!(|data: &[u8]| {
    let line = String::from_utf8_lossy(data);
    match parse(&line) {
        Err(e) => assert!(!e.is_empty(), "an error must say what is wrong"),
        Ok(req) => {
            let text = serde_json::to_string(&req).expect("a request serialises");
            let again = parse(&text).expect("a request's own JSON parses");
            // NaN durations are refused by the check, so equality holds.
            assert_eq!(again, req, "round trip of {text}");
            if let Request::ServicePut { service } = &req {
                let ranges = merle_lb::service::Ranges {
                    cluster_ips: vec!["10.96.0.0/12".parse().unwrap(), "fd00:96::/108".parse().unwrap()],
                    external_ips: vec!["198.51.100.0/24".parse().unwrap()],
                    load_balancer_ips: vec!["192.0.2.0/24".parse().unwrap()],
                    pools: vec!["10.244.0.0/16".parse().unwrap(), "fd00:244::/56".parse().unwrap()],
                    node_ports: merle_lb::service::NODE_PORTS,
                    maglev_size: merle_lb::maglev::DEFAULT_SIZE,
                };
                if let Err(e) = merle_lb::service::validate(std::slice::from_ref(service.as_ref()), &ranges) {
                    assert!(!e.message.is_empty());
                }
            }
        }
    }
});
