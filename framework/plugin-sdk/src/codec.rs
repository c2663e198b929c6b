//! Conversions between the nas-core trainer types and their `#[repr(C)]` forms: drives
//! (mixing weights as one flat `f32` buffer), gradient orders, splits and statistics.
//! Both sides use them, so that one encoder always meets its own decoder.
use nas_core::{
    Architecture, Drive, DriveKind, EvalStats, GradOrder, MixingWeights, NasError, Needs, Result,
    Split, StepStats,
};

use crate::abi::*;
use crate::wire::Wire;

/// A drive encoded for the boundary; [`EncodedDrive::view`] borrows it as a [`DriveView`].
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedDrive {
    kind: u32,
    condition: Option<f32>,
    samples: usize,
    weights: Vec<f32>,
    shape: Vec<usize>,
    archs: Vec<u8>,
}

fn shape_of(w: &MixingWeights) -> Vec<usize> {
    w.0.iter().map(Vec::len).collect()
}

impl EncodedDrive {
    /// Encodes `drive`. Per-sample weights must all have the same shape.
    pub fn new(drive: &Drive) -> Result<Self> {
        let mut e = EncodedDrive {
            kind: DRIVE_MIXED,
            condition: drive.condition,
            samples: 0,
            weights: Vec::new(),
            shape: Vec::new(),
            archs: Vec::new(),
        };
        match &drive.kind {
            DriveKind::Mixed { weights } | DriveKind::SelectedOnly { weights } => {
                if matches!(drive.kind, DriveKind::SelectedOnly { .. }) {
                    e.kind = DRIVE_SELECTED_ONLY;
                }
                e.samples = 1;
                e.shape = shape_of(weights);
                e.weights = weights.flatten();
            }
            DriveKind::Gated { weights, active } => {
                e.kind = DRIVE_GATED;
                e.samples = 1;
                e.shape = shape_of(weights);
                e.weights = weights.flatten();
                e.archs = serde_json::to_vec(active).map_err(|err| {
                    NasError::Plugin(format!("cannot encode the active sets: {err}"))
                })?;
            }
            DriveKind::MixedPerSample { weights } | DriveKind::SelectedPerSample { weights } => {
                e.kind = if matches!(drive.kind, DriveKind::SelectedPerSample { .. }) {
                    DRIVE_SELECTED_PER_SAMPLE
                } else {
                    DRIVE_MIXED_PER_SAMPLE
                };
                e.samples = weights.len();
                if let Some(first) = weights.first() {
                    e.shape = shape_of(first);
                }
                e.weights.reserve(e.samples * e.shape.iter().sum::<usize>());
                for (i, w) in weights.iter().enumerate() {
                    if shape_of(w) != e.shape {
                        return Err(NasError::Strategy(format!(
                            "per-sample mixing weights differ in shape: sample 0 has {:?}, \
                             sample {i} has {:?}",
                            e.shape,
                            shape_of(w)
                        )));
                    }
                    e.weights.extend(w.0.iter().flatten());
                }
            }
            DriveKind::Paths { archs } => {
                e.kind = DRIVE_PATHS;
                e.archs = archs.to_wire()?;
            }
        }
        Ok(e)
    }

    /// Borrows the encoded drive; valid while `self` lives.
    pub fn view(&self) -> DriveView {
        DriveView {
            kind: self.kind,
            has_condition: self.condition.is_some() as u32,
            condition: self.condition.unwrap_or(0.0),
            samples: self.samples,
            weights: Slice::new(&self.weights),
            shape: Slice::new(&self.shape),
            archs: Slice::new(&self.archs),
        }
    }
}

/// Splits `samples` consecutive weight sets of shape `shape` out of `flat`.
pub fn split_samples(flat: &[f32], shape: &[usize], samples: usize) -> Result<Vec<MixingWeights>> {
    let per = shape.iter().sum::<usize>();
    if flat.len() != per * samples {
        return Err(NasError::Plugin(format!(
            "flat buffer has {} values, {samples} sets of shape {shape:?} need {}",
            flat.len(),
            per * samples
        )));
    }
    (0..samples)
        .map(|s| {
            MixingWeights::from_flat(&flat[s * per..(s + 1) * per], shape)
                .ok_or_else(|| NasError::Plugin(format!("buffer does not fit shape {shape:?}")))
        })
        .collect()
}

/// Decodes a drive received across the boundary.
///
/// # Safety
/// The slices of `view` must be valid for reads for the duration of the call.
pub unsafe fn decode_drive(view: &DriveView) -> Result<Drive> {
    // SAFETY: guaranteed by the caller.
    let (flat, shape, archs) = unsafe {
        (
            view.weights.as_slice(),
            view.shape.as_slice(),
            view.archs.as_slice(),
        )
    };
    let kind = match view.kind {
        DRIVE_MIXED | DRIVE_SELECTED_ONLY => {
            let mut sets = split_samples(flat, shape, 1)?;
            let weights = sets.pop().unwrap_or_else(|| MixingWeights(Vec::new()));
            if view.kind == DRIVE_MIXED {
                DriveKind::Mixed { weights }
            } else {
                DriveKind::SelectedOnly { weights }
            }
        }
        DRIVE_GATED => {
            let mut sets = split_samples(flat, shape, 1)?;
            DriveKind::Gated {
                weights: sets.pop().unwrap_or_else(|| MixingWeights(Vec::new())),
                active: serde_json::from_slice(archs).map_err(|e| {
                    NasError::Plugin(format!("cannot decode the active sets from JSON: {e}"))
                })?,
            }
        }
        DRIVE_MIXED_PER_SAMPLE => DriveKind::MixedPerSample {
            weights: split_samples(flat, shape, view.samples)?,
        },
        DRIVE_SELECTED_PER_SAMPLE => DriveKind::SelectedPerSample {
            weights: split_samples(flat, shape, view.samples)?,
        },
        DRIVE_PATHS => DriveKind::Paths {
            archs: Vec::<Architecture>::from_wire(archs)?,
        },
        k => return Err(NasError::Plugin(format!("unknown drive kind code {k}"))),
    };
    Ok(Drive {
        kind,
        condition: (view.has_condition != 0).then_some(view.condition),
    })
}

impl From<GradOrder> for GradOrderC {
    fn from(o: GradOrder) -> Self {
        match o {
            GradOrder::First => GradOrderC {
                order: ORDER_FIRST,
                has_xi: 0,
                xi: 0.0,
            },
            GradOrder::Second { xi } => GradOrderC {
                order: ORDER_SECOND,
                has_xi: xi.is_some() as u32,
                xi: xi.unwrap_or(0.0),
            },
        }
    }
}

impl TryFrom<GradOrderC> for GradOrder {
    type Error = NasError;
    fn try_from(o: GradOrderC) -> Result<Self> {
        match o.order {
            ORDER_FIRST => Ok(GradOrder::First),
            ORDER_SECOND => Ok(GradOrder::Second {
                xi: (o.has_xi != 0).then_some(o.xi),
            }),
            k => Err(NasError::Plugin(format!("unknown gradient order code {k}"))),
        }
    }
}

/// The code of a split.
pub fn split_code(s: Split) -> u32 {
    match s {
        Split::Train => SPLIT_TRAIN,
        Split::Valid => SPLIT_VALID,
        Split::Test => SPLIT_TEST,
    }
}

/// The split of a code.
pub fn split_from_code(c: u32) -> Result<Split> {
    match c {
        SPLIT_TRAIN => Ok(Split::Train),
        SPLIT_VALID => Ok(Split::Valid),
        SPLIT_TEST => Ok(Split::Test),
        k => Err(NasError::Plugin(format!("unknown split code {k}"))),
    }
}

/// The code of a [`Needs`].
pub fn needs_code(n: Needs) -> u32 {
    match n {
        Needs::Trainer => NEEDS_TRAINER,
        Needs::Estimator => NEEDS_ESTIMATOR,
    }
}

/// The [`Needs`] of a code.
pub fn needs_from_code(c: u32) -> Result<Needs> {
    match c {
        NEEDS_TRAINER => Ok(Needs::Trainer),
        NEEDS_ESTIMATOR => Ok(Needs::Estimator),
        k => Err(NasError::Plugin(format!("unknown needs code {k}"))),
    }
}

impl From<StepStats> for StepStatsC {
    fn from(s: StepStats) -> Self {
        StepStatsC {
            loss: s.loss,
            accuracy: s.accuracy,
            grad_norm: s.grad_norm,
            lr: s.lr,
        }
    }
}

impl From<StepStatsC> for StepStats {
    fn from(s: StepStatsC) -> Self {
        StepStats {
            loss: s.loss,
            accuracy: s.accuracy,
            grad_norm: s.grad_norm,
            lr: s.lr,
        }
    }
}

impl From<EvalStats> for EvalStatsC {
    fn from(s: EvalStats) -> Self {
        EvalStatsC {
            loss: s.loss,
            accuracy: s.accuracy,
            samples: s.samples,
        }
    }
}

impl From<EvalStatsC> for EvalStats {
    fn from(s: EvalStatsC) -> Self {
        EvalStats {
            loss: s.loss,
            accuracy: s.accuracy,
            samples: s.samples,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(rows: &[&[f32]]) -> MixingWeights {
        MixingWeights(rows.iter().map(|r| r.to_vec()).collect())
    }

    fn round_trip(d: &Drive) -> Drive {
        let e = EncodedDrive::new(d).unwrap();
        unsafe { decode_drive(&e.view()) }.unwrap()
    }

    #[test]
    fn every_drive_kind_round_trips() {
        let a = w(&[&[0.25, 0.75], &[0.1, 0.2, 0.7]]);
        let b = w(&[&[1.0, 0.0], &[f32::MIN_POSITIVE, -0.0, 3.5]]);
        let drives = vec![
            Drive::mixed(a.clone()),
            Drive::mixed(a.clone()).with_condition(0.3),
            Drive {
                kind: DriveKind::SelectedOnly { weights: b.clone() },
                condition: None,
            },
            Drive {
                kind: DriveKind::MixedPerSample {
                    weights: vec![a.clone(), b.clone(), a.clone()],
                },
                condition: Some(1.0),
            },
            Drive {
                kind: DriveKind::MixedPerSample { weights: vec![] },
                condition: None,
            },
            Drive::paths(vec![
                Architecture::new("s", vec![0, 2]),
                Architecture::new("s", vec![1, 1]),
            ]),
            Drive::gated(b.clone(), vec![vec![0, 1], vec![2]]),
            Drive::gated(a.clone(), vec![vec![1], vec![0, 2]]).with_condition(0.5),
            Drive {
                kind: DriveKind::SelectedPerSample {
                    weights: vec![b.clone(), a.clone()],
                },
                condition: None,
            },
        ];
        for d in drives {
            assert_eq!(round_trip(&d), d);
        }
    }

    #[test]
    fn gated_drives_cross_bit_for_bit() {
        // Values `==` cannot tell apart (-0.0 and 0.0; NaN payloads) and edge values.
        let odd = [
            -0.0f32,
            0.0,
            f32::MIN_POSITIVE,
            f32::from_bits(1),
            f32::from_bits(0x7fc0_1234),
            f32::MAX,
            -1.5e-38,
        ];
        let g = w(&[&odd[..3], &odd[3..]]);
        let active = vec![vec![0, 2], vec![1, 2, 3]];
        let d = Drive::gated(g.clone(), active.clone()).with_condition(-0.0);
        let e = EncodedDrive::new(&d).unwrap();
        assert_eq!(e.view().kind, DRIVE_GATED);
        let back = unsafe { decode_drive(&e.view()) }.unwrap();
        let DriveKind::Gated {
            weights: bw,
            active: ba,
        } = &back.kind
        else {
            panic!("decoded as {back:?}");
        };
        let bits = |m: &MixingWeights| m.flatten().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(bw), bits(&g));
        assert_eq!(ba, &active);
        assert_eq!(back.condition.map(f32::to_bits), Some((-0.0f32).to_bits()));
    }

    #[test]
    fn per_example_selected_drives_cross_bit_for_bit_and_keep_their_kind() {
        let one_hot = |k: usize| {
            w(&[
                &[(k == 0) as u8 as f32, (k == 1) as u8 as f32],
                &[-0.0, 1.0, f32::from_bits(1)],
            ])
        };
        let d = Drive {
            kind: DriveKind::SelectedPerSample {
                weights: vec![one_hot(0), one_hot(1), one_hot(1)],
            },
            condition: Some(0.25),
        };
        let e = EncodedDrive::new(&d).unwrap();
        assert_eq!(e.view().kind, DRIVE_SELECTED_PER_SAMPLE);
        assert_eq!(e.view().samples, 3);
        let back = unsafe { decode_drive(&e.view()) }.unwrap();
        let (
            DriveKind::SelectedPerSample { weights: bw },
            DriveKind::SelectedPerSample { weights: dw },
        ) = (&back.kind, &d.kind)
        else {
            panic!("decoded as {back:?}");
        };
        let bits = |m: &[MixingWeights]| {
            m.iter()
                .flat_map(|x| x.flatten())
                .map(f32::to_bits)
                .collect::<Vec<_>>()
        };
        assert_eq!(bits(bw), bits(dw));
        assert_eq!(back.condition, Some(0.25));
    }

    #[test]
    fn a_gated_drive_with_bad_active_json_is_an_error() {
        let d = Drive::gated(w(&[&[1.0, 0.0]]), vec![vec![0, 1]]);
        let e = EncodedDrive::new(&d).unwrap();
        let mut v = e.view();
        let junk = b"[[0, 1]";
        v.archs = Slice::new(junk);
        let m = unsafe { decode_drive(&v) }.unwrap_err().to_string();
        assert!(m.contains("active sets"), "{m}");
    }

    #[test]
    fn flat_layout_is_sample_then_decision_then_option() {
        let d = Drive {
            kind: DriveKind::MixedPerSample {
                weights: vec![w(&[&[1.0, 2.0], &[3.0]]), w(&[&[4.0, 5.0], &[6.0]])],
            },
            condition: None,
        };
        let e = EncodedDrive::new(&d).unwrap();
        let v = e.view();
        assert_eq!(
            unsafe { v.weights.as_slice() },
            &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
        );
        assert_eq!(unsafe { v.shape.as_slice() }, &[2, 1]);
        assert_eq!(v.samples, 2);
    }

    #[test]
    fn ragged_per_sample_weights_are_an_error() {
        let d = Drive {
            kind: DriveKind::MixedPerSample {
                weights: vec![w(&[&[1.0, 2.0]]), w(&[&[1.0]])],
            },
            condition: None,
        };
        assert!(EncodedDrive::new(&d).is_err());
        assert!(split_samples(&[1.0, 2.0, 3.0], &[2], 2).is_err());
    }

    #[test]
    fn orders_and_codes_round_trip() {
        for o in [
            GradOrder::First,
            GradOrder::Second { xi: None },
            GradOrder::Second { xi: Some(0.025) },
        ] {
            assert_eq!(GradOrder::try_from(GradOrderC::from(o)).unwrap(), o);
        }
        for s in [Split::Train, Split::Valid, Split::Test] {
            assert_eq!(split_from_code(split_code(s)).unwrap(), s);
        }
        for n in [Needs::Trainer, Needs::Estimator] {
            assert_eq!(needs_from_code(needs_code(n)).unwrap(), n);
        }
        assert!(split_from_code(9).is_err() && needs_from_code(9).is_err());
    }
}
