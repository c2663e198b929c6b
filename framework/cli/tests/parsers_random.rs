//! The stable-Rust stand-in for the fuzz targets of `fuzz/` (which need nightly and
//! cargo-fuzz; `scripts/fuzz.sh` runs them for a bounded time): many seeded random and
//! mutated inputs for the experiment-config loader, the `--set` parser, the DARTS genotype
//! parser and the NB201 arch-string parser. None may panic, and whatever parses must write
//! back to text that parses to the same value.
use std::panic::{catch_unwind, AssertUnwindSafe};

use nas_model::DataShape;
use nas_space_darts::{Genotype, DARTS_V1, DARTS_V2};

/// xorshift64* (Vigna 2016): a small, seeded generator, so a failure is reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Pieces the mutations insert: the punctuation and words of the three notations, and
/// numbers at the edges of their types.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "(",
    ")",
    ":",
    ",",
    "'",
    "\"",
    "|",
    "~",
    "+",
    "-",
    "=",
    "\n",
    "  ",
    "\t",
    "#",
    "&a",
    "*a",
    "!!str ",
    "? ",
    "- ",
    "null",
    "~",
    "true",
    "yes",
    ".nan",
    ".inf",
    "-.inf",
    "0",
    "-1",
    "1e999",
    "18446744073709551616",
    "4294967296",
    "0.5",
    "-0.0",
    "1e-320",
    "Genotype(",
    "normal=",
    "reduce=",
    "range(",
    "normal_concat=",
    "sep_conv_3x3",
    "none",
    "skip_connect",
    "nor_conv_3x3",
    "avg_pool_3x3",
    "schema:",
    "space:",
    "name:",
    "params:",
    "seed:",
    "budget:",
    "epochs:",
    "lr:",
    "data:",
    "batch_size:",
    "output:",
    "plugins:",
    "\u{e9}",
    "\u{1F600}",
    "\u{0}",
    "\u{FEFF}",
];

fn mutate(rng: &mut Rng, seed: &str) -> String {
    let mut s: Vec<char> = seed.chars().collect();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(s.len() + 1);
        match rng.below(6) {
            0 if !s.is_empty() => {
                // Delete a range.
                let end = (at + 1 + rng.below(16)).min(s.len());
                s.drain(at.min(end)..end);
            }
            1 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                s.splice(at..at, t.chars());
            }
            2 if !s.is_empty() => {
                // Duplicate a range.
                let st = rng.below(s.len());
                let end = (st + 1 + rng.below(32)).min(s.len());
                let piece: Vec<char> = s[st..end].to_vec();
                s.splice(at..at, piece);
            }
            3 if at < s.len() => s[at] = char::from(rng.below(128) as u8),
            4 => s.truncate(at),
            _ => {
                let t = TOKENS[rng.below(TOKENS.len())];
                s.extend(t.chars());
            }
        }
    }
    s.into_iter().collect()
}

fn random_text(rng: &mut Rng) -> String {
    (0..rng.below(24))
        .map(|_| TOKENS[rng.below(TOKENS.len())])
        .collect()
}

/// Inputs for one parser: its seeds, random token soup, and mutated seeds.
fn inputs(rng: &mut Rng, seeds: &[&str], n: usize) -> Vec<String> {
    let mut out: Vec<String> = seeds.iter().map(|s| s.to_string()).collect();
    while out.len() < n {
        if rng.below(4) == 0 {
            out.push(random_text(rng));
        } else {
            let s = seeds[rng.below(seeds.len())];
            out.push(mutate(rng, s));
        }
    }
    out
}

fn no_panic(what: &str, input: &str, f: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(f)).is_err() {
        panic!("{what} panicked on the input {input:?}");
    }
}

const CONFIG_SEEDS: &[&str] = &[
    "schema: 1\nname: d\nseed: 0\nspace:\n  name: darts\n  params: {channels: 8, layers: 5}\n\
     strategy:\n  name: darts\n  params: {order: first}\noptimizers:\n  weights:\n    name: sgd\n\
     \x20   params: {lr: 0.025, momentum: 0.9}\n    schedule: {name: cosine, params: {eta_min: 0.001}}\n\
     \x20   clip_grad_norm: 5.0\n  arch: {name: adam, params: {lr: 3.0e-4, betas: [0.5, 0.999]}}\n\
     trainer: {name: supernet, params: {on_non_finite: skip}}\ndata:\n  name: digits\n  batch_size: 64\n\
     \x20 train_portion: 0.5\n  augment: {crop_padding: 1, hflip: false, cutout: 0}\n\
     budget: {epochs: 10, steps_per_epoch: 4}\noutput: {log_every: 5, checkpoint_every: 2}\n\
     train: {epochs: 20, channels: 16, layers: 8, drop_path: 0.1}\n",
    "schema: 1\nname: r\nseed: 3\nspace: {name: nb201}\nstrategy: {name: rea, params: {queries: 30}}\n\
     estimator: {name: nb201_table}\nbudget: {epochs: 3, steps_per_epoch: 10, queries: 30}\nplugins: [a.so]\n",
];

#[test]
fn the_config_loader_and_set_parser_never_panic_and_round_trip() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fuzz.yaml");
    let mut loaded = 0;
    for text in inputs(&mut rng, CONFIG_SEEDS, 1500) {
        for line in text.lines().take(16) {
            no_panic("parse_override", line, || {
                let _ = nas_config::overrides::parse_override(line);
            });
        }
        if text.contains("include") {
            continue; // includes read other files; the fuzz target skips them too
        }
        no_panic("load_experiment", &text, || {
            std::fs::write(&path, &text).unwrap();
            if let Ok(exp) = nas_config::load_experiment(&path, &[]) {
                loaded += 1;
                let yaml = nas_config::to_yaml(&exp).expect("a loaded experiment writes");
                std::fs::write(&path, &yaml).unwrap();
                let again = nas_config::load_experiment(&path, &[])
                    .unwrap_or_else(|e| panic!("resolved YAML does not load: {e}\n{yaml}"));
                assert_eq!(exp, again, "{yaml}");
            }
        });
    }
    // The mutations keep some inputs valid, so the round trip is exercised too.
    assert!(loaded >= 20, "only {loaded} inputs loaded");
}

#[test]
fn the_darts_genotype_parser_never_panics_and_round_trips() {
    let mut rng = Rng(0x243f_6a88_85a3_08d3);
    let nested = "Genotype(normal=[[('sep_conv_3x3', 0)], [], [('skip_connect', 1), \
                  ('dil_conv_5x5', 2)], [('avg_pool_3x3', 3)]], normal_concat=range(2, 6), \
                  reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), \
                  ('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), \
                  ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=range(2, 6))";
    let comps = nas_builtins::components().unwrap();
    let shape = DataShape {
        channels: 3,
        height: 32,
        width: 32,
        num_classes: 10,
    };
    let space = (comps.spaces.get("darts").unwrap())(
        &serde_json::Value::Null,
        &nas_registry::BuildContext::new(&comps).with_shape(shape),
    )
    .unwrap();
    let mut parsed = 0;
    for text in inputs(&mut rng, &[DARTS_V1, DARTS_V2, nested], 20_000) {
        no_panic("Genotype::parse", &text, || {
            if let Ok(g) = Genotype::parse(&text) {
                parsed += 1;
                let notation = g.format();
                let again = Genotype::parse(&notation)
                    .unwrap_or_else(|e| panic!("`{notation}` does not parse: {e}"));
                assert_eq!(g, again, "{notation}");
            }
            // The space's reader (what `nas inspect` and `nas train` use).
            if let Ok(a) = space.rules().parse_arch(&text) {
                let n = space.rules().format_arch(&a);
                assert_eq!(space.rules().parse_arch(&n).ok(), Some(a), "{n}");
            }
        });
    }
    assert!(parsed >= 100, "only {parsed} inputs parsed");
}

#[test]
fn a_huge_concat_range_is_an_error_not_an_abort() {
    // Found by this test's generator: `range(0, 42949672960)` used to allocate 343 GB.
    let g = DARTS_V2.replace(
        "normal_concat=[2, 3, 4, 5]",
        "normal_concat=range(0, 42949672960)",
    );
    let e = Genotype::parse(&g).unwrap_err().to_string();
    assert!(e.contains("range(0, 42949672960)"), "{e}");
}

#[test]
fn the_nb201_arch_string_parser_never_panics_and_round_trips() {
    let mut rng = Rng(0x1319_8a2e_0370_7344);
    let seeds = [
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
        "|none~0|+|avg_pool_3x3~0|nor_conv_1x1~1|+|skip_connect~0|none~1|avg_pool_3x3~2|",
        r#"{"space": "nb201", "choices": [0, 1, 2, 3, 4, 0]}"#,
    ];
    let comps = nas_builtins::components().unwrap();
    let shape = DataShape {
        channels: 3,
        height: 32,
        width: 32,
        num_classes: 10,
    };
    let space = (comps.spaces.get("nb201").unwrap())(
        &serde_json::Value::Null,
        &nas_registry::BuildContext::new(&comps).with_shape(shape),
    )
    .unwrap();
    let mut parsed = 0;
    for text in inputs(&mut rng, &seeds, 20_000) {
        no_panic("parse_arch_str", &text, || {
            if let Ok(a) = nas_space_nb201::parse_arch_str(&text) {
                parsed += 1;
                let s = nas_space_nb201::to_arch_str(&a).expect("a parsed architecture formats");
                assert_eq!(nas_space_nb201::parse_arch_str(&s).ok(), Some(a), "{s}");
            }
            if let Ok(a) = space.rules().parse_arch(&text) {
                let n = space.rules().format_arch(&a);
                assert_eq!(space.rules().parse_arch(&n).ok(), Some(a), "{n}");
            }
        });
    }
    assert!(parsed >= 20, "only {parsed} inputs parsed");
}
