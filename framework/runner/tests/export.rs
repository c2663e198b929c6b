//! `nas export --inherit`: a single-path run's network with weights inherited from its
//! supernet. Checked independently: every exported tensor equals the supernet tensor of the
//! same name read straight from the run's checkpoint file; after recalibration the
//! standalone network scores exactly what the trainer's own evaluation of that path of the
//! supernet scores (same batches, same statistics); spaces that cannot inherit are refused.
use std::path::Path;

use nas_core::{Drive, Split};
use nas_runner::export::{export_inherited, InheritOptions};
use nas_runner::{run_experiment, RunOptions};

fn config(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../configs/experiments")
        .join(name)
}

fn tiny_run(dir: &Path, file: &str, sets: &[&str]) {
    let mut all: Vec<String> = vec![
        "budget.epochs=1".into(),
        "budget.steps_per_epoch=3".into(),
        "trainer.params.recalibrate_batches=2".into(),
    ];
    all.extend(sets.iter().map(|s| s.to_string()));
    let exp = nas_config::load_experiment(&config(file), &all).unwrap();
    let s = run_experiment(
        &exp,
        &nas_builtins::components().unwrap(),
        &RunOptions {
            out_dir: Some(dir.to_path_buf()),
            progress: false,
        },
    )
    .unwrap();
    assert_eq!(s.status, "finished");
}

#[test]
fn an_exported_spos_network_is_the_supernet_path_with_its_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    tiny_run(
        &run,
        "spos-uniform-digits.yaml",
        &[
            "strategy.params.search.params={population: 4, top_k: 2, mutations: 2, crossovers: 2, generations: 1}",
        ],
    );
    let comps = nas_builtins::components().unwrap();
    let r = export_inherited(&run, &comps, &InheritOptions::default()).unwrap();
    assert_eq!(r.dir, run.join("inherited"));
    assert!(r.inherited > 0);
    // SPOS's supernet batch norms are affine-free: the standalone network's scales and
    // shifts stay at 1 and 0.
    assert!(r.initialised > 0);

    // 1. Every tensor: the supernet's of the same name, from the checkpoint file itself.
    let dev = candle_core::Device::Cpu;
    let exported = candle_core::safetensors::load(r.dir.join("weights.safetensors"), &dev).unwrap();
    let supernet =
        candle_core::safetensors::load(run.join("checkpoint/supernet.safetensors"), &dev).unwrap();
    let (mut same, mut ones_zeros) = (0, 0);
    for (name, t) in &exported {
        let v: Vec<f64> = t
            .flatten_all()
            .unwrap()
            .to_dtype(candle_core::DType::F64)
            .unwrap()
            .to_vec1()
            .unwrap();
        match supernet.get(name) {
            Some(s) => {
                let w: Vec<f64> = s
                    .flatten_all()
                    .unwrap()
                    .to_dtype(candle_core::DType::F64)
                    .unwrap()
                    .to_vec1()
                    .unwrap();
                assert_eq!(v, w, "{name}");
                same += 1;
            }
            None => {
                let want = if name.ends_with(".weight") { 1.0 } else { 0.0 };
                assert!(v.iter().all(|&x| x == want), "{name}: {v:?}");
                ones_zeros += 1;
            }
        }
    }
    assert_eq!((same, ones_zeros), (r.inherited, r.initialised));

    // 2. The trainer's own path evaluation (batch norms recalibrated on the same batches)
    // gives the same test accuracy and loss.
    let exp = nas_config::load_experiment(&run.join("config.resolved.yaml"), &[]).unwrap();
    let data = nas_registry::load_data(&exp, &comps).unwrap().unwrap();
    let space =
        nas_registry::build_space(&exp, &comps, nas_registry::data_shape(Some(&data))).unwrap();
    let ts = space.tensor().unwrap();
    let arch =
        nas_runner::retrain::read_arch_arg(run.join("architecture.json").to_str().unwrap(), ts)
            .unwrap();
    let device = nas_registry::parse_device(exp.device).unwrap();
    let dtype = nas_registry::parse_dtype(exp.dtype).unwrap();
    let mut trainer =
        nas_registry::build_trainer(&exp, &comps, &space, &data, &device, dtype).unwrap();
    nas_rundir::checkpoint::load(&run)
        .unwrap()
        .restore_supernet(trainer.as_mut())
        .unwrap();
    let ev = trainer
        .evaluate(&Drive::path(arch), Split::Test, None)
        .unwrap();
    assert_eq!(ev.samples, r.test_samples);
    assert_eq!(ev.accuracy, r.test_acc);
    assert!(
        (ev.loss - r.test_loss).abs() < 1e-9,
        "{} vs {}",
        ev.loss,
        r.test_loss
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(r.dir.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["test_acc"], r.test_acc);
    assert!(r.dir.join("batchnorm.safetensors").is_file());
}

#[test]
fn spaces_whose_networks_are_named_otherwise_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    tiny_run(&run, "darts-digits.yaml", &["budget.steps_per_epoch=1"]);
    let comps = nas_builtins::components().unwrap();
    let e = export_inherited(&run, &comps, &InheritOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("--inherit") && e.contains("darts"), "{e}");
    let e = export_inherited(
        &tmp.path().join("nothing"),
        &comps,
        &InheritOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("not a run directory"), "{e}");
}
