//! The NB201 space's tensor variant in a run: first-order DARTS on its supernet on the
//! embedded digits, a few steps.
use nas_runner::{run_experiment, RunOptions};

#[test]
fn darts_searches_the_nb201_supernet_on_real_data() {
    let tmp = tempfile::tempdir().unwrap();
    let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../configs/base/darts-search.yaml")
        .canonicalize()
        .unwrap();
    let cfg = format!(
        "include: [\"{}\"]\nname: t\nseed: 1\nspace: {{name: nb201, params: {{channels: 4, cells: 1}}}}\n\
         data: {{name: digits, batch_size: 16}}\nbudget: {{epochs: 2, steps_per_epoch: 2}}\n",
        base.display()
    );
    let file = tmp.path().join("e.yaml");
    std::fs::write(&file, cfg).unwrap();
    let exp = nas_config::load_experiment(&file, &[]).unwrap();
    let comps = nas_builtins::components().unwrap();
    let out = tmp.path().join("run");
    let s = run_experiment(
        &exp,
        &comps,
        &RunOptions {
            out_dir: Some(out.clone()),
            progress: false,
        },
    )
    .unwrap();
    assert_eq!(s.status, "finished");
    // The result is an NB201 arch string with one of the five operations per edge.
    let a = nas_space_nb201::parse_arch_str(s.architecture.as_deref().unwrap()).unwrap();
    assert_eq!(a.choices.len(), 6);
    // Alphas were recorded before and after each epoch: 6 edges x 5 operations, each a
    // probability vector.
    let text = std::fs::read_to_string(out.join("alpha_history.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    let w: Vec<Vec<f64>> = serde_json::from_value(lines[2]["weights"].clone()).unwrap();
    assert_eq!(w.len(), 6);
    for e in &w {
        assert_eq!(e.len(), 5);
        assert!((e.iter().sum::<f64>() - 1.0).abs() < 1e-5);
    }
    // The search moved the alphas away from uniform.
    let w0: Vec<Vec<f64>> = serde_json::from_value(lines[0]["weights"].clone()).unwrap();
    assert_ne!(w, w0);
}
