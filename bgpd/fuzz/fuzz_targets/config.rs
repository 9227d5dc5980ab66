//! Fuzzes the configuration loader: any text is a configuration or a clear
//! error, never a panic or a hang (oversized fields, absurd numbers, deep
//! nesting, invalid UTF-8 turned into a lossy string).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Err(e) = conf::from_str(&text, std::path::Path::new("fuzz.toml")) {
        assert!(!e.to_string().is_empty(), "an error must say what is wrong");
    }
});
