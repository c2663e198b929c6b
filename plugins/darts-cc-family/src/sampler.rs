//! Random architectures of a given size: the control group of a DARTS-CC family.
//!
//! A draw gives every option of every decision an independent standard-normal logit, shifts
//! the logit of the `none` option (where a decision has one) by one bias drawn uniformly in
//! `[-NONE_BIAS, NONE_BIAS]` for the whole draw, and derives an architecture from the
//! softmax by the space's own rule (the same `mode` as the family). The bias spreads the
//! draws over every size a rule can produce: in `simple` mode a large bias makes most edges
//! `none` (a small cell), a negative one none of them. A draw is kept when its parameter
//! count is within a relative `tolerance` of the target; after `max_draws` the closest draw
//! is kept and its deviation reported, so a target no draw can reach never fails silently.
use nas_core::{Architecture, MixingWeights, NasError, Result, SpaceRules};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

/// Half-width of the uniform range of the `none` logit's bias.
pub const NONE_BIAS: f64 = 4.0;

/// A random architecture and how close it came to the target size.
#[derive(Debug, Clone, PartialEq)]
pub struct SizedDraw {
    /// The architecture.
    pub arch: Architecture,
    /// Its parameter count.
    pub params: f64,
    /// `|params - target| / target`.
    pub deviation: f64,
    /// Draws made until it was found.
    pub draws: usize,
}

/// One random architecture derived by `rules` in `mode` (see the module doc).
pub fn random_arch(rules: &dyn SpaceRules, mode: &str, rng: &mut impl Rng) -> Result<Architecture> {
    let bias = rng.random_range(-NONE_BIAS..=NONE_BIAS);
    let weights = rules
        .spec()
        .decisions
        .iter()
        .map(|d| {
            let logits: Vec<f64> = d
                .options
                .iter()
                .map(|o| {
                    let z: f64 = StandardNormal.sample(rng);
                    if o.name == "none" {
                        z + bias
                    } else {
                        z
                    }
                })
                .collect();
            let m = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = logits.iter().map(|l| (l - m).exp()).collect();
            let s: f64 = e.iter().sum();
            e.iter().map(|x| (x / s) as f32).collect()
        })
        .collect();
    rules.derive(&MixingWeights(weights), mode)
}

/// The size a random architecture should have.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SizeRequest {
    /// Target parameter count.
    pub target: f64,
    /// Accepted relative deviation.
    pub tolerance: f64,
    /// Draws before the closest one is taken.
    pub max_draws: usize,
}

/// A random architecture whose parameter count (by `params_of`) is within the request's
/// tolerance (relative) of its target and that is not in `exclude`; the closest of
/// `max_draws` draws when none is.
pub fn random_of_size(
    rules: &dyn SpaceRules,
    mode: &str,
    params_of: &dyn Fn(&Architecture) -> Result<f64>,
    request: SizeRequest,
    exclude: &[Architecture],
    rng: &mut impl Rng,
) -> Result<SizedDraw> {
    let SizeRequest {
        target,
        tolerance,
        max_draws,
    } = request;
    let valid = target.is_finite() && target > 0.0 && tolerance.is_finite() && tolerance >= 0.0;
    if !valid || max_draws == 0 {
        return Err(NasError::Other(format!(
            "random_of_size: target {target}, tolerance {tolerance}, max_draws {max_draws}: \
             need a positive target, a non-negative tolerance and at least one draw"
        )));
    }
    let mut best: Option<SizedDraw> = None;
    for draws in 1..=max_draws {
        let arch = random_arch(rules, mode, rng)?;
        if exclude.contains(&arch) {
            continue;
        }
        let params = params_of(&arch)?;
        let deviation = (params - target).abs() / target;
        if best.as_ref().is_none_or(|b| deviation < b.deviation) {
            best = Some(SizedDraw {
                arch,
                params,
                deviation,
                draws,
            });
        }
        if deviation <= tolerance {
            break;
        }
    }
    best.ok_or_else(|| {
        NasError::Other(format!(
            "no random architecture outside the {} excluded ones in {max_draws} draws",
            exclude.len()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nas_model::DataShape;
    use nas_space_darts::DartsSpace;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn space() -> DartsSpace {
        let shape = DataShape {
            channels: 1,
            height: 8,
            width: 8,
            num_classes: 10,
        };
        DartsSpace::from_params(
            &serde_json::json!({"channels": 4, "layers": 3, "nodes": 2, "multiplier": 2}),
            shape,
        )
        .unwrap()
    }

    fn params(s: &DartsSpace) -> impl Fn(&Architecture) -> Result<f64> + '_ {
        move |a| Ok(s.spec().cost_of(a)?.params)
    }

    #[test]
    fn simple_draws_cover_small_and_large_cells() {
        let s = space();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let none = |a: &Architecture| {
            a.choices
                .iter()
                .zip(&s.spec().decisions)
                .filter(|(c, d)| d.options[**c].name == "none")
                .count()
        };
        let counts: Vec<usize> = (0..400)
            .map(|_| none(&random_arch(&s, "simple", &mut rng).unwrap()))
            .collect();
        let edges = s.spec().decisions.len();
        // The bias of the none logit reaches both ends: all-none cells and none-free cells.
        assert!(counts.contains(&0), "{counts:?}");
        assert!(counts.contains(&edges), "{counts:?}");
    }

    #[test]
    fn a_draw_is_within_tolerance_of_its_target_and_reproducible() {
        let s = space();
        let p = params(&s);
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let sizes: Vec<f64> = (0..200)
            .map(|_| p(&random_arch(&s, "simple", &mut rng).unwrap()).unwrap())
            .collect();
        let lo = sizes.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = sizes.iter().copied().fold(0.0, f64::max);
        for frac in [0.3, 0.5, 0.8] {
            let target = lo + frac * (hi - lo);
            let req = SizeRequest {
                target,
                tolerance: 0.05,
                max_draws: 20_000,
            };
            let draw = |seed| {
                random_of_size(
                    &s,
                    "simple",
                    &p,
                    req,
                    &[],
                    &mut ChaCha8Rng::seed_from_u64(seed),
                )
                .unwrap()
            };
            let a = draw(7);
            // Recount independently of the sampler's own bookkeeping.
            let recount = p(&a.arch).unwrap();
            assert_eq!(recount, a.params);
            assert!(
                (recount - target).abs() <= 0.05 * target,
                "{recount} vs {target}"
            );
            assert_eq!(draw(7), a);
        }
    }

    #[test]
    fn excluded_architectures_are_not_returned_and_an_unreachable_target_gives_the_closest() {
        let s = space();
        let p = params(&s);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let first = random_arch(&s, "darts", &mut rng).unwrap();
        let req = SizeRequest {
            target: p(&first).unwrap(),
            tolerance: 0.0,
            max_draws: 300,
        };
        let d =
            random_of_size(&s, "darts", &p, req, std::slice::from_ref(&first), &mut rng).unwrap();
        assert_ne!(d.arch, first);
        // Far beyond any cell of this space: the largest draw comes back, flagged by its
        // deviation.
        let req = SizeRequest {
            target: 1e9,
            tolerance: 0.05,
            max_draws: 50,
        };
        let d = random_of_size(&s, "simple", &p, req, &[], &mut rng).unwrap();
        assert!(d.deviation > 0.99 && d.draws <= 50, "{d:?}");
        let bad = SizeRequest {
            target: 0.0,
            tolerance: 0.05,
            max_draws: 5,
        };
        assert!(random_of_size(&s, "simple", &p, bad, &[], &mut rng).is_err());
    }
}
