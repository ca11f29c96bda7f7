//! Fuzzes the configuration parser (`Config::from_str_named`) with arbitrary
//! text: it must never panic, and a diagnostic must point inside the text
//! (a line that exists, the file name given) and say something.
#![no_main]

use bote_node::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = Config::from_str_named(text, "fuzz.toml")
        && let Some(d) = e.diagnostic()
    {
        assert_eq!(d.file, "fuzz.toml");
        assert!(d.line >= 1 && d.line <= text.lines().count().max(1) + 1, "{d}");
        assert!(!d.message.is_empty());
    }
});
