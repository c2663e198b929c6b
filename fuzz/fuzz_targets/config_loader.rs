//! The experiment-config loader on arbitrary text: never panics, and an experiment that
//! loads writes a resolved YAML that loads to an equal experiment (the loader's invariant).
//! Each line is also tried as a `--set KEY=VALUE` override.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("nas-fuzz-config-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("scratch directory");
        d.join("fuzz.yaml")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for line in text.lines().take(16) {
        let _ = nas_config::overrides::parse_override(line);
    }
    // `include` reads other files: keep the target hermetic.
    if text.contains("include") {
        return;
    }
    let path = scratch();
    std::fs::write(path, text).expect("write the scratch file");
    if let Ok(exp) = nas_config::load_experiment(path, &[]) {
        let yaml = nas_config::to_yaml(&exp).expect("a loaded experiment writes as YAML");
        std::fs::write(path, &yaml).expect("write the scratch file");
        let again = nas_config::load_experiment(path, &[])
            .unwrap_or_else(|e| panic!("the resolved YAML does not load: {e}\n{yaml}"));
        assert_eq!(
            exp, again,
            "the resolved YAML loads to another experiment:\n{yaml}"
        );
    }
});
