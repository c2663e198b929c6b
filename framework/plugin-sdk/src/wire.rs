//! JSON shapes of the values that cross the boundary as UTF-8 JSON ([`PROTOCOL_VERSION`]).
//!
//! (Over 600 lines on purpose: every type's wire form and its round-trip tests sit together,
//! so a protocol change is reviewed in one file.)
//!
//! Most values are the nas-core types' own serde form. Two additions keep the boundary
//! lossless:
//! * numbers that may be non-finite (metrics, scores, costs) cross as [`WireF64`]: a JSON
//!   number when finite, else the string `"NaN"`, `"inf"` or `"-inf"` (plain serde_json
//!   would write `null` and fail to read it back);
//! * errors cross as [`WireError`], one JSON object per [`NasError`] variant, so that an
//!   error keeps its variant on the way through a plugin (a trainer's `NonFinite` reaches
//!   the runner as `NonFinite`).
//!
//! Finite `f64` values come back bit for bit: the SDK enables serde_json's
//! `float_roundtrip`. Tensor-sized data (mixing weights, gradients) never crosses as JSON.
//!
//! [`PROTOCOL_VERSION`]: crate::PROTOCOL_VERSION
use std::collections::BTreeMap;

use nas_core::{
    Architecture, Cost, EpochReport, FoundArchitecture, Metrics, NasError, Result, Score,
    SearchOutcome, SpaceSpec, StepReport,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An `f64` whose JSON form also carries NaN and the infinities.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WireF64(pub f64);

impl Serialize for WireF64 {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let v = self.0;
        if v.is_finite() {
            s.serialize_f64(v)
        } else if v.is_nan() {
            s.serialize_str("NaN")
        } else if v > 0.0 {
            s.serialize_str("inf")
        } else {
            s.serialize_str("-inf")
        }
    }
}

impl<'de> Deserialize<'de> for WireF64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = WireF64;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number, \"NaN\", \"inf\" or \"-inf\"")
            }
            fn visit_f64<E>(self, v: f64) -> std::result::Result<WireF64, E> {
                Ok(WireF64(v))
            }
            fn visit_i64<E>(self, v: i64) -> std::result::Result<WireF64, E> {
                Ok(WireF64(v as f64))
            }
            fn visit_u64<E>(self, v: u64) -> std::result::Result<WireF64, E> {
                Ok(WireF64(v as f64))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<WireF64, E> {
                match v {
                    "NaN" => Ok(WireF64(f64::NAN)),
                    "inf" => Ok(WireF64(f64::INFINITY)),
                    "-inf" => Ok(WireF64(f64::NEG_INFINITY)),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

type WireMetrics = BTreeMap<String, WireF64>;

fn metrics_to_wire(m: &Metrics) -> WireMetrics {
    m.iter().map(|(k, &v)| (k.clone(), WireF64(v))).collect()
}

fn metrics_from_wire(m: WireMetrics) -> Metrics {
    m.into_iter().map(|(k, v)| (k, v.0)).collect()
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireStepReport {
    metrics: WireMetrics,
    finished: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireEpochReport {
    metrics: WireMetrics,
    current: Option<Architecture>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireFound {
    label: String,
    arch: Architecture,
    metrics: WireMetrics,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireOutcome {
    architectures: Vec<WireFound>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireScore {
    fitness: WireF64,
    report: WireMetrics,
    cost_seconds: WireF64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireCost {
    params: WireF64,
    flops: WireF64,
    latency_ms: Option<WireF64>,
}

/// A value with a JSON form for the boundary.
pub trait Wire: Sized {
    /// What the value is, for error messages.
    const WHAT: &'static str;
    /// Encodes to UTF-8 JSON.
    fn to_wire(&self) -> Result<Vec<u8>>;
    /// Decodes from UTF-8 JSON.
    fn from_wire(bytes: &[u8]) -> Result<Self>;
}

fn encode<T: Serialize>(what: &str, v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| NasError::Plugin(format!("cannot encode {what}: {e}")))
}

fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| NasError::Plugin(format!("cannot decode {what} from JSON: {e}")))
}

macro_rules! plain_wire {
    ($($t:ty => $what:literal),* $(,)?) => {$(
        impl Wire for $t {
            const WHAT: &'static str = $what;
            fn to_wire(&self) -> Result<Vec<u8>> {
                encode(Self::WHAT, self)
            }
            fn from_wire(bytes: &[u8]) -> Result<Self> {
                decode(Self::WHAT, bytes)
            }
        }
    )*};
}

plain_wire!(
    Architecture => "an architecture",
    Vec<Architecture> => "a list of architectures",
    SpaceSpec => "a space spec",
    serde_json::Value => "a JSON value",
    crate::PluginInfo => "plugin info",
);

impl Wire for StepReport {
    const WHAT: &'static str = "a step report";
    fn to_wire(&self) -> Result<Vec<u8>> {
        encode(
            Self::WHAT,
            &WireStepReport {
                metrics: metrics_to_wire(&self.metrics),
                finished: self.finished,
            },
        )
    }
    fn from_wire(bytes: &[u8]) -> Result<Self> {
        let w: WireStepReport = decode(Self::WHAT, bytes)?;
        Ok(StepReport {
            metrics: metrics_from_wire(w.metrics),
            finished: w.finished,
        })
    }
}

impl Wire for EpochReport {
    const WHAT: &'static str = "an epoch report";
    fn to_wire(&self) -> Result<Vec<u8>> {
        encode(
            Self::WHAT,
            &WireEpochReport {
                metrics: metrics_to_wire(&self.metrics),
                current: self.current.clone(),
            },
        )
    }
    fn from_wire(bytes: &[u8]) -> Result<Self> {
        let w: WireEpochReport = decode(Self::WHAT, bytes)?;
        Ok(EpochReport {
            metrics: metrics_from_wire(w.metrics),
            current: w.current,
        })
    }
}

impl Wire for SearchOutcome {
    const WHAT: &'static str = "a search outcome";
    fn to_wire(&self) -> Result<Vec<u8>> {
        let w = WireOutcome {
            architectures: self
                .architectures
                .iter()
                .map(|f| WireFound {
                    label: f.label.clone(),
                    arch: f.arch.clone(),
                    metrics: metrics_to_wire(&f.metrics),
                })
                .collect(),
        };
        encode(Self::WHAT, &w)
    }
    fn from_wire(bytes: &[u8]) -> Result<Self> {
        let w: WireOutcome = decode(Self::WHAT, bytes)?;
        Ok(SearchOutcome {
            architectures: w
                .architectures
                .into_iter()
                .map(|f| FoundArchitecture {
                    label: f.label,
                    arch: f.arch,
                    metrics: metrics_from_wire(f.metrics),
                })
                .collect(),
        })
    }
}

impl Wire for Score {
    const WHAT: &'static str = "a score";
    fn to_wire(&self) -> Result<Vec<u8>> {
        encode(
            Self::WHAT,
            &WireScore {
                fitness: WireF64(self.fitness),
                report: metrics_to_wire(&self.report),
                cost_seconds: WireF64(self.cost_seconds),
            },
        )
    }
    fn from_wire(bytes: &[u8]) -> Result<Self> {
        let w: WireScore = decode(Self::WHAT, bytes)?;
        Ok(Score {
            fitness: w.fitness.0,
            report: metrics_from_wire(w.report),
            cost_seconds: w.cost_seconds.0,
        })
    }
}

impl Wire for Cost {
    const WHAT: &'static str = "a cost";
    fn to_wire(&self) -> Result<Vec<u8>> {
        encode(
            Self::WHAT,
            &WireCost {
                params: WireF64(self.params),
                flops: WireF64(self.flops),
                latency_ms: self.latency_ms.map(WireF64),
            },
        )
    }
    fn from_wire(bytes: &[u8]) -> Result<Self> {
        let w: WireCost = decode(Self::WHAT, bytes)?;
        Ok(Cost {
            params: w.params.0,
            flops: w.flops.0,
            latency_ms: w.latency_ms.map(|v| v.0),
        })
    }
}

/// A [`NasError`] as it crosses the boundary: one JSON object per variant, tagged by
/// `"error"`. An I/O error keeps its path and message (not its OS error code).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum WireError {
    /// [`NasError::Config`].
    Config {
        /// File.
        file: String,
        /// Location.
        location: Option<String>,
        /// Message.
        message: String,
    },
    /// [`NasError::InvalidParams`].
    InvalidParams {
        /// Component.
        component: String,
        /// Key path.
        path: String,
        /// Message.
        message: String,
    },
    /// [`NasError::UnknownComponent`].
    UnknownComponent {
        /// Kind.
        kind: String,
        /// Name.
        name: String,
        /// Known names.
        known: String,
    },
    /// [`NasError::DuplicateComponent`].
    DuplicateComponent {
        /// Kind.
        kind: String,
        /// Name.
        name: String,
    },
    /// [`NasError::Architecture`].
    Architecture {
        /// Message.
        message: String,
    },
    /// [`NasError::Data`].
    Data {
        /// File.
        file: String,
        /// Message.
        message: String,
    },
    /// [`NasError::NonFinite`].
    NonFinite {
        /// Quantity.
        quantity: String,
        /// Epoch.
        epoch: usize,
        /// Step.
        step: usize,
    },
    /// [`NasError::Strategy`].
    Strategy {
        /// Message.
        message: String,
    },
    /// [`NasError::Tensor`].
    Tensor {
        /// Message.
        message: String,
    },
    /// [`NasError::Plugin`].
    Plugin {
        /// Message.
        message: String,
    },
    /// [`NasError::Io`].
    Io {
        /// Path.
        path: String,
        /// The I/O error's message.
        message: String,
    },
    /// [`NasError::Other`].
    Other {
        /// Message.
        message: String,
    },
}

impl From<&NasError> for WireError {
    fn from(e: &NasError) -> Self {
        match e {
            NasError::Config {
                file,
                location,
                message,
            } => WireError::Config {
                file: file.clone(),
                location: location.clone(),
                message: message.clone(),
            },
            NasError::InvalidParams {
                component,
                path,
                message,
            } => WireError::InvalidParams {
                component: component.clone(),
                path: path.clone(),
                message: message.clone(),
            },
            NasError::UnknownComponent { kind, name, known } => WireError::UnknownComponent {
                kind: kind.clone(),
                name: name.clone(),
                known: known.clone(),
            },
            NasError::DuplicateComponent { kind, name } => WireError::DuplicateComponent {
                kind: kind.clone(),
                name: name.clone(),
            },
            NasError::Architecture(m) => WireError::Architecture { message: m.clone() },
            NasError::Data { file, message } => WireError::Data {
                file: file.clone(),
                message: message.clone(),
            },
            NasError::NonFinite {
                quantity,
                epoch,
                step,
            } => WireError::NonFinite {
                quantity: quantity.clone(),
                epoch: *epoch,
                step: *step,
            },
            NasError::Strategy(m) => WireError::Strategy { message: m.clone() },
            NasError::Tensor(m) => WireError::Tensor { message: m.clone() },
            NasError::Plugin(m) => WireError::Plugin { message: m.clone() },
            NasError::Io { path, source } => WireError::Io {
                path: path.clone(),
                message: source.to_string(),
            },
            NasError::Other(m) => WireError::Other { message: m.clone() },
        }
    }
}

impl From<WireError> for NasError {
    fn from(e: WireError) -> Self {
        match e {
            WireError::Config {
                file,
                location,
                message,
            } => NasError::Config {
                file,
                location,
                message,
            },
            WireError::InvalidParams {
                component,
                path,
                message,
            } => NasError::InvalidParams {
                component,
                path,
                message,
            },
            WireError::UnknownComponent { kind, name, known } => {
                NasError::UnknownComponent { kind, name, known }
            }
            WireError::DuplicateComponent { kind, name } => {
                NasError::DuplicateComponent { kind, name }
            }
            WireError::Architecture { message } => NasError::Architecture(message),
            WireError::Data { file, message } => NasError::Data { file, message },
            WireError::NonFinite {
                quantity,
                epoch,
                step,
            } => NasError::NonFinite {
                quantity,
                epoch,
                step,
            },
            WireError::Strategy { message } => NasError::Strategy(message),
            WireError::Tensor { message } => NasError::Tensor(message),
            WireError::Plugin { message } => NasError::Plugin(message),
            WireError::Io { path, message } => NasError::Io {
                path,
                source: std::io::Error::other(message),
            },
            WireError::Other { message } => NasError::Other(message),
        }
    }
}

/// Encodes an error for the `err` out-parameter.
pub fn encode_error(e: &NasError) -> Vec<u8> {
    serde_json::to_vec(&WireError::from(e)).unwrap_or_else(|_| {
        // Serialising plain strings and integers cannot fail; keep a readable fallback.
        e.to_string().into_bytes()
    })
}

/// Decodes an `err` out-parameter written with [`encode_error`]; text that is not a wire
/// error becomes [`NasError::Plugin`] carrying that text.
pub fn decode_error(bytes: &[u8]) -> NasError {
    match serde_json::from_slice::<WireError>(bytes) {
        Ok(w) => w.into(),
        Err(_) => NasError::Plugin(String::from_utf8_lossy(bytes).into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small xorshift generator, so that the test needs no extra dependency.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn finite_f64_cross_bit_for_bit() {
        // Random bit patterns cover every exponent; 17-digit mantissas are where a
        // best-effort float parser loses the last bit.
        let mut s = 0x9e37_79b9_7f4a_7c15;
        let mut m = Metrics::new();
        let mut expect = Vec::new();
        for i in 0..2000 {
            let v = f64::from_bits(xorshift(&mut s));
            if v.is_finite() {
                m.insert(format!("k{i:04}"), v);
                expect.push((format!("k{i:04}"), v));
            }
        }
        for (i, v) in [0.1, 1.0 / 3.0, 2.0f64.sqrt(), 5e-324, f64::MAX, -0.0]
            .into_iter()
            .enumerate()
        {
            m.insert(format!("hand{i}"), v);
            expect.push((format!("hand{i}"), v));
        }
        let r = StepReport {
            metrics: m,
            finished: true,
        };
        let back = StepReport::from_wire(&r.to_wire().unwrap()).unwrap();
        for (k, v) in expect {
            assert_eq!(back.metrics[&k].to_bits(), v.to_bits(), "{k}: {v:e}");
        }
        assert!(back.finished);
    }

    #[test]
    fn non_finite_values_survive_as_strings() {
        let mut m = Metrics::new();
        m.insert("nan".into(), f64::NAN);
        m.insert("inf".into(), f64::INFINITY);
        m.insert("ninf".into(), f64::NEG_INFINITY);
        let r = EpochReport {
            metrics: m,
            current: Some(Architecture::new("s", vec![1, 0])),
        };
        let json = r.to_wire().unwrap();
        assert_eq!(
            std::str::from_utf8(&json).unwrap(),
            r#"{"metrics":{"inf":"inf","nan":"NaN","ninf":"-inf"},"current":{"space":"s","choices":[1,0]}}"#
        );
        let back = EpochReport::from_wire(&json).unwrap();
        assert!(back.metrics["nan"].is_nan());
        assert_eq!(back.metrics["inf"], f64::INFINITY);
        assert_eq!(back.metrics["ninf"], f64::NEG_INFINITY);
        assert_eq!(back.current, r.current);

        let c = Cost {
            params: 1.0,
            flops: f64::NAN,
            latency_ms: Some(f64::INFINITY),
        };
        let back = Cost::from_wire(&c.to_wire().unwrap()).unwrap();
        assert!(back.flops.is_nan() && back.latency_ms == Some(f64::INFINITY));
        assert!(StepReport::from_wire(br#"{"metrics":{"a":"nope"},"finished":false}"#).is_err());
    }

    #[test]
    fn errors_keep_their_variant() {
        let cases = vec![
            NasError::InvalidParams {
                component: "strategy x".into(),
                path: "lr".into(),
                message: "must be > 0".into(),
            },
            NasError::NonFinite {
                quantity: "arch gradient".into(),
                epoch: 3,
                step: 7,
            },
            NasError::Config {
                file: "a.yaml".into(),
                location: Some("2:3".into()),
                message: "bad".into(),
            },
            NasError::Strategy("s".into()),
            NasError::Other("o".into()),
        ];
        for e in cases {
            let back = decode_error(&encode_error(&e));
            assert_eq!(back.to_string(), e.to_string());
            assert_eq!(
                std::mem::discriminant(&back),
                std::mem::discriminant(&e),
                "{e}"
            );
        }
        let io = NasError::io("/x", std::io::Error::other("gone"));
        let back = decode_error(&encode_error(&io));
        assert!(matches!(back, NasError::Io { ref path, .. } if path == "/x"));
        assert_eq!(back.to_string(), io.to_string());
        // Free text becomes a plugin error that carries it.
        assert!(matches!(decode_error(b"boom"), NasError::Plugin(m) if m == "boom"));
    }
}
