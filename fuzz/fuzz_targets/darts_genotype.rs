//! `Genotype::parse` on arbitrary text: never panics, and a parsed genotype's notation
//! parses back to the same genotype.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nas_space_darts::Genotype;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(g) = Genotype::parse(text) {
        let notation = g.format();
        let again = Genotype::parse(&notation)
            .unwrap_or_else(|e| panic!("`{notation}` does not parse: {e}"));
        assert_eq!(g, again, "{notation}");
    }
});
