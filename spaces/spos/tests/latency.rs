//! Latency lookup table: measured once per candidate block, saved, reused, applied.
use candle_core::Device;
use nas_core::{Architecture, SpaceRules};
use nas_model::DataShape;
use nas_space_spos::{new_space, SposParams};
use serde_json::json;

#[test]
fn latency_table_is_measured_saved_reused_and_applied() {
    let p: SposParams = serde_json::from_value(json!({
        "stem_channels": 4, "stage_channels": [8, 12], "stage_repeats": [1, 1], "last_channels": 8
    }))
    .unwrap();
    let shape = DataShape {
        channels: 1,
        height: 8,
        width: 8,
        num_classes: 10,
    };
    let space = new_space(&p, shape).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lat/spos.json");
    let t = space
        .load_or_measure_latency(&path, &Device::Cpu, 2, 1)
        .unwrap();
    assert!(path.exists());
    assert_eq!(t.latency_ms.len(), 2);
    assert!(t
        .latency_ms
        .iter()
        .flatten()
        .all(|&ms| ms.is_finite() && ms >= 0.0));
    // Reused, not measured again: the file's numbers come back exactly.
    let mut edited = t.clone();
    edited.latency_ms[0][0] = 123.0;
    edited.save(&path).unwrap();
    let again = space
        .load_or_measure_latency(&path, &Device::Cpu, 2, 1)
        .unwrap();
    assert_eq!(again.latency_ms[0][0], 123.0);
    // Loaded through the space params, it fills the option costs and sums per path.
    let mut p2 = p.clone();
    p2.latency_table = Some(path.to_string_lossy().into_owned());
    let with = new_space(&p2, shape).unwrap();
    let a = Architecture::new("spos", vec![0, 1]);
    let c = with.spec().cost_of(&a).unwrap();
    let expect = again.fixed_ms + again.latency_ms[0][0] + again.latency_ms[1][1];
    assert!((c.latency_ms.unwrap() - expect).abs() < 1e-9);
    // A table of another configuration is refused.
    let mut p3 = p2.clone();
    p3.stage_repeats = vec![2, 1];
    assert!(new_space(&p3, shape).is_err());
}
