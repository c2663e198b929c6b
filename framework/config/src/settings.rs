//! Settings with a fixed set of values, parsed as enums when the config is decoded (so a bad
//! value fails there, with the file, line and key): `device` and `dtype`.
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// `device:` where a run computes. Whether this build and machine can use it is the
/// runner's question (`nas_runner::run::experiment_device`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceSetting {
    /// A GPU when the binary has CUDA and one is present, else the CPU.
    Auto,
    /// The CPU (the default).
    #[default]
    Cpu,
    /// A CUDA GPU: `cuda` (`None`, the first) or `cuda:N`.
    Cuda(Option<usize>),
}

impl FromStr for DeviceSetting {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`device` must be `auto`, `cpu`, `cuda` or `cuda:N`, got `{s}`");
        match s {
            "auto" => Ok(DeviceSetting::Auto),
            "cpu" => Ok(DeviceSetting::Cpu),
            "cuda" => Ok(DeviceSetting::Cuda(None)),
            _ => {
                let n = s.strip_prefix("cuda:").ok_or_else(bad)?;
                if n.is_empty() || !n.chars().all(|c| c.is_ascii_digit()) {
                    return Err(bad());
                }
                n.parse()
                    .map(|n| DeviceSetting::Cuda(Some(n)))
                    .map_err(|_| bad())
            }
        }
    }
}

impl fmt::Display for DeviceSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSetting::Auto => f.write_str("auto"),
            DeviceSetting::Cpu => f.write_str("cpu"),
            DeviceSetting::Cuda(None) => f.write_str("cuda"),
            DeviceSetting::Cuda(Some(n)) => write!(f, "cuda:{n}"),
        }
    }
}

impl TryFrom<String> for DeviceSetting {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<DeviceSetting> for String {
    fn from(d: DeviceSetting) -> String {
        d.to_string()
    }
}

/// `dtype:` the floating-point type of weights and activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DTypeSetting {
    /// 32-bit floats (the default).
    #[default]
    F32,
    /// 64-bit floats (gradient checks).
    F64,
}

impl fmt::Display for DTypeSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DTypeSetting::F32 => "f32",
            DTypeSetting::F64 => "f64",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_round_trip_and_bad_ones_name_the_values() {
        for s in ["auto", "cpu", "cuda", "cuda:0", "cuda:12"] {
            let d: DeviceSetting = s.parse().unwrap();
            assert_eq!(d.to_string(), s);
        }
        assert_eq!("cuda:3".parse(), Ok(DeviceSetting::Cuda(Some(3))));
        for s in ["gpu", "cuda:", "cuda:x", "cuda:-1", "cuda0", "CPU", ""] {
            let e = s.parse::<DeviceSetting>().unwrap_err();
            assert!(
                e.contains("`device`") && e.contains(&format!("`{s}`")),
                "{e}"
            );
        }
        let y: DTypeSetting = serde_json::from_str("\"f64\"").unwrap();
        assert_eq!(y, DTypeSetting::F64);
        assert!(serde_json::from_str::<DTypeSetting>("\"f16\"").is_err());
        assert_eq!(
            serde_json::to_string(&DeviceSetting::Cuda(Some(1))).unwrap(),
            "\"cuda:1\""
        );
    }
}
