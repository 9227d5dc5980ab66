//! Fuzzes the CNI network configuration a runtime writes on merle-cni's
//! stdin: any bytes are a configuration or a spec error (code 1, 6 or 7)
//! that renders as the spec's JSON, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use merle_cni_spec::netconf::NetConf;

fuzz_target!(|data: &[u8]| {
    match NetConf::parse(data) {
        Ok(c) => {
            let _ = (c.merle_config(), c.has_check(), c.has_gc());
        }
        Err(e) => {
            let v = e.to_json("1.1.0");
            assert!(v["code"].is_u64() && v["msg"].is_string(), "{v}");
        }
    }
});
