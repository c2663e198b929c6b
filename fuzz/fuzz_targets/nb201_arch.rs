//! `parse_arch_str` (NAS-Bench-201 arch strings) on arbitrary text: never panics, and a
//! parsed architecture's string parses back to the same architecture.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nas_space_nb201::{parse_arch_str, to_arch_str};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(a) = parse_arch_str(text) {
        let s = to_arch_str(&a).unwrap_or_else(|e| panic!("{a:?} does not format: {e}"));
        let again = parse_arch_str(&s).unwrap_or_else(|e| panic!("`{s}` does not parse: {e}"));
        assert_eq!(a, again, "{s}");
    }
});
