//! `--input CxHxW` and `--classes N` of `nas inspect` and `nas latency`: size a network for
//! another input than the experiment's data set (a published ImageNet architecture at
//! 3x224x224 with 1000 classes) without loading any data.
use clap::Args;
use nas_core::NasError;
use nas_model::DataShape;

/// The input shape and class count to build the space for.
#[derive(Args, Debug, Default, Clone)]
pub struct ShapeArgs {
    /// Input shape `CxHxW` (e.g. `3x224x224`) instead of the experiment data set's.
    #[arg(long, value_name = "CxHxW")]
    pub input: Option<String>,
    /// Number of classes instead of the experiment data set's (e.g. 1000 for ImageNet).
    #[arg(long, value_name = "N")]
    pub classes: Option<usize>,
}

impl ShapeArgs {
    /// `shape` with the given input and class count; a malformed value is a usage error
    /// naming the flag (exit code 2).
    pub fn apply(&self, mut shape: DataShape) -> Result<DataShape, NasError> {
        if let Some(s) = &self.input {
            let (c, h, w) = parse_chw(s).ok_or_else(|| NasError::Config {
                file: "--input".into(),
                location: None,
                message: format!(
                    "`{s}` is not CxHxW with three positive integers (e.g. 3x224x224)"
                ),
            })?;
            shape.channels = c;
            shape.height = h;
            shape.width = w;
        }
        if let Some(n) = self.classes {
            if n == 0 {
                return Err(NasError::Config {
                    file: "--classes".into(),
                    location: None,
                    message: "must be at least 1".into(),
                });
            }
            shape.num_classes = n;
        }
        Ok(shape)
    }

    /// The shape to build `exp`'s space for: the data set's (which may read its files),
    /// with the flags applied; with both flags given no data is read.
    pub fn shape_of(
        &self,
        exp: &nas_config::Experiment,
        comps: &nas_registry::Components,
    ) -> Result<DataShape, NasError> {
        let base = if self.input.is_some() && self.classes.is_some() {
            DataShape {
                channels: 1,
                height: 1,
                width: 1,
                num_classes: 1,
            }
        } else {
            nas_registry::data_shape_of(exp, comps)?
        };
        self.apply(base)
    }
}

/// `"3x224x224"` as `(3, 224, 224)`; `None` unless three positive integers.
fn parse_chw(s: &str) -> Option<(usize, usize, usize)> {
    let v: Vec<usize> = s
        .split(['x', 'X'])
        .map(|p| p.trim().parse::<usize>().ok().filter(|&n| n > 0))
        .collect::<Option<Vec<_>>>()?;
    match v[..] {
        [c, h, w] => Some((c, h, w)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_chw_and_rejects_the_rest() {
        assert_eq!(parse_chw("3x224x224"), Some((3, 224, 224)));
        assert_eq!(parse_chw("1X28x28"), Some((1, 28, 28)));
        for bad in ["224x224", "3x0x224", "3x224x224x1", "three", ""] {
            assert_eq!(parse_chw(bad), None, "{bad}");
        }
    }
}
