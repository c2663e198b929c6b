//! Every registered space: default params, bad params, derivation and the round trips of
//! the notation and of the JSON form (DESIGN.md: plain data crosses every boundary).
use nas_core::{Architecture, MixingWeights};
use nas_registry::BuildContext;
use rand::{Rng, SeedableRng};

use super::{assert_refused_naming, builtins, every_space};

/// Mixing weights drawn uniformly in [0, 1) in the shape of `spec`.
fn random_weights(spec: &nas_core::SpaceSpec, rng: &mut impl Rng) -> MixingWeights {
    MixingWeights(
        spec.shape()
            .into_iter()
            .map(|k| (0..k).map(|_| rng.random::<f32>()).collect())
            .collect(),
    )
}

#[test]
fn every_space_builds_from_default_params_with_decisions() {
    let comps = builtins();
    let spaces = every_space(&comps);
    assert!(spaces.len() >= 7, "spaces: {:?}", comps.spaces.names());
    for (name, space) in &spaces {
        let spec = space.rules().spec();
        assert_eq!(&spec.space, name, "the spec names its space");
        assert!(!spec.decisions.is_empty(), "{name}: no decisions");
        assert!(
            spec.shape().iter().all(|&k| k >= 1),
            "{name}: a decision without options"
        );
    }
}

#[test]
fn every_space_refuses_an_unknown_param_naming_it() {
    let comps = builtins();
    let cx = BuildContext::new(&comps);
    for name in comps.spaces.names() {
        let f = comps.spaces.get(&name).unwrap();
        let r = f(&serde_json::json!({"no_such_param": 1}), &cx);
        assert_refused_naming(&format!("space `{name}`"), r, "no_such_param");
    }
}

#[test]
fn derived_architectures_pass_the_spec_and_survive_both_round_trips() {
    let comps = builtins();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for (name, space) in every_space(&comps) {
        let rules = space.rules();
        let spec = rules.spec();
        for _ in 0..5 {
            let arch = rules
                .derive(&random_weights(spec, &mut rng), "default")
                .unwrap_or_else(|e| panic!("{name}: derive: {e}"));
            spec.check(&arch)
                .unwrap_or_else(|e| panic!("{name}: a derived architecture fails the spec: {e}"));
            // The space's own notation.
            let text = rules.format_arch(&arch);
            let back = rules
                .parse_arch(&text)
                .unwrap_or_else(|e| panic!("{name}: `{text}` does not parse back: {e}"));
            assert_eq!(back, arch, "{name}: notation round trip of `{text}`");
            // The JSON form, through text.
            let json = serde_json::to_string(&arch).unwrap();
            let decoded: Architecture = serde_json::from_str(&json).unwrap();
            assert_eq!(decoded, arch, "{name}: JSON round trip");
            assert_eq!(
                rules.parse_arch(&json).unwrap(),
                arch,
                "{name}: parse_arch of the JSON form"
            );
        }
    }
}

#[test]
fn cell_diagrams_are_well_formed_graphs() {
    let comps = builtins();
    let mut drawn = 0;
    for (name, space) in every_space(&comps) {
        let rules = space.rules();
        let arch = rules
            .derive(&MixingWeights::uniform(rules.spec()), "default")
            .unwrap();
        for d in rules.cell_diagrams(&arch) {
            drawn += 1;
            assert!(!d.stem.is_empty(), "{name}: a diagram without a file stem");
            for e in &d.edges {
                assert!(
                    e.from < e.to && e.to < d.nodes.len(),
                    "{name}: edge {} -> {} of {} nodes (topological order)",
                    e.from,
                    e.to,
                    d.nodes.len()
                );
            }
        }
    }
    // The DARTS space draws two cells, NB201 one.
    assert!(drawn >= 3, "only {drawn} diagrams drawn");
}
