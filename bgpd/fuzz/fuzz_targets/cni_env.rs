//! Fuzzes the CNI environment: the input, split at NUL bytes, is
//! CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_ARGS and
//! CNI_PATH (a missing part is an unset variable). Any values give an
//! environment or error 4 naming the variable, never a panic. merle-cni
//! keeps CNI_ARGS as it is and reads nothing from it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use merle_cni_spec::spec::{Code, Command, Env};

fuzz_target!(|data: &[u8]| {
    let parts: Vec<String> = data.split(|b| *b == 0).map(|p| String::from_utf8_lossy(p).into_owned()).collect();
    let part = |i: usize| parts.get(i).cloned();
    let Ok(cmd) = Command::parse(&part(0).unwrap_or_default()) else { return };
    let keys = ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH"];
    let get = |k: &str| keys.iter().position(|x| *x == k).and_then(|i| part(i + 1));
    match Env::read(cmd, get) {
        Ok(e) => assert!(e.container_id.len() <= data.len() && e.ifname.len() <= 15),
        Err(e) => {
            assert_eq!(e.code, Code::InvalidEnvironment, "{e}");
            assert!(e.msg.contains("CNI_"), "the error names the variable: {e}");
        }
    }
});
