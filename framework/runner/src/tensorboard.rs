//! TensorBoard event files (opt-in with `output.tensorboard: true`): the run's step and epoch
//! metrics as scalars and, for strategies with mixing weights, the alpha history as one scalar
//! per option (`alpha/<decision>/<option>`), in `RUN/tensorboard/events.out.tfevents.*`.
//!
//! Why written here rather than with a crate: the crates that write event files either compile
//! TensorFlow's `.proto` files at build time (so every build of `nas` would need `protoc`) or
//! pull in an unmaintained protobuf 2 and image stack. An event file is a TFRecord stream of
//! `Event` protocol buffers, and the three messages we write (`Event`, `Summary.Value` with a
//! `simple_value`, `SessionLog`) need a few dozen lines of encoding, checked byte for byte
//! against hand-encoded records in this module's tests.
//!
//! Format (TensorFlow `core/util/event.proto`, `core/framework/summary.proto`,
//! `core/lib/io/record_writer.cc`): each record is `u64 length (LE)`, `u32 masked CRC-32C of
//! the length bytes`, the payload, `u32 masked CRC-32C of the payload`, where
//! `masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8`. The first event carries
//! `file_version = "brain.Event:2"`.
//!
//! Resume: a resumed run opens a new event file whose first event after the version is a
//! `SessionLog { status: START }` at the first step the resumed run writes, which tells
//! TensorBoard to drop the points at or after that step from the earlier files (what PyTorch's
//! `SummaryWriter(purge_step=...)` writes), so a killed and resumed run shows one curve.
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use nas_core::{MixingWeights, NasError, Result, SpaceSpec};

const CASTAGNOLI: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// TFRecord's masked CRC-32C.
pub fn masked_crc32c(bytes: &[u8]) -> u32 {
    let c = CASTAGNOLI.checksum(bytes);
    (c.rotate_right(15)).wrapping_add(0xa282_ead8)
}

/// Appends a protobuf varint.
fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends a field key (`field << 3 | wire type`).
fn key(out: &mut Vec<u8>, field: u64, wire: u64) {
    varint(out, (field << 3) | wire);
}

/// Appends a length-delimited field.
fn bytes_field(out: &mut Vec<u8>, field: u64, data: &[u8]) {
    key(out, field, 2);
    varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

/// What an event carries besides its time and step.
#[derive(Debug, Clone, PartialEq)]
pub enum EventBody {
    /// `file_version` (field 3).
    FileVersion(String),
    /// `summary` (field 5): scalar values by tag.
    Scalars(Vec<(String, f32)>),
    /// `session_log` (field 6) with `status = START` (1): purge later steps of earlier files.
    SessionStart,
}

/// Encodes one `Event` message.
pub fn encode_event(wall_time: f64, step: i64, body: &EventBody) -> Vec<u8> {
    let mut out = Vec::new();
    key(&mut out, 1, 1); // wall_time: double
    out.extend_from_slice(&wall_time.to_le_bytes());
    key(&mut out, 2, 0); // step: int64
    varint(&mut out, step as u64);
    match body {
        EventBody::FileVersion(v) => bytes_field(&mut out, 3, v.as_bytes()),
        EventBody::Scalars(values) => {
            let mut summary = Vec::new();
            for (tag, v) in values {
                let mut value = Vec::new();
                bytes_field(&mut value, 1, tag.as_bytes()); // tag
                key(&mut value, 2, 5); // simple_value: float
                value.extend_from_slice(&v.to_le_bytes());
                bytes_field(&mut summary, 1, &value); // repeated Value value = 1
            }
            bytes_field(&mut out, 5, &summary);
        }
        EventBody::SessionStart => {
            let mut log = Vec::new();
            key(&mut log, 1, 0);
            varint(&mut log, 1); // SessionStatus.START
            bytes_field(&mut out, 6, &log);
        }
    }
    out
}

/// Frames a payload as one TFRecord.
pub fn frame_record(payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(payload.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&masked_crc32c(payload).to_le_bytes());
    out
}

/// An open event file.
pub struct EventWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl EventWriter {
    /// Creates a new event file in `dir` (created if missing). `resumed_at` is the first global
    /// step a resumed run writes: TensorBoard then drops the earlier files' points from it on.
    pub fn create(dir: &Path, resumed_at: Option<u64>) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| NasError::io(dir, e))?;
        let t = now();
        let mut k = 0;
        let path = loop {
            let p = dir.join(format!(
                "events.out.tfevents.{}.nas.{}.{k}",
                t as u64,
                std::process::id()
            ));
            if !p.exists() {
                break p;
            }
            k += 1;
        };
        let file = File::create(&path).map_err(|e| NasError::io(&path, e))?;
        let mut w = EventWriter {
            path,
            out: BufWriter::new(file),
        };
        w.event(0, &EventBody::FileVersion("brain.Event:2".into()))?;
        if let Some(step) = resumed_at {
            w.event(step as i64, &EventBody::SessionStart)?;
        }
        w.flush()?;
        Ok(w)
    }

    /// The event file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one event now.
    pub fn event(&mut self, step: i64, body: &EventBody) -> Result<()> {
        let rec = frame_record(&encode_event(now(), step, body));
        self.out
            .write_all(&rec)
            .map_err(|e| NasError::io(&self.path, e))
    }

    /// Writes the finite values of `metrics` as scalars `{prefix}/{name}` at `step`.
    pub fn scalars(&mut self, step: u64, prefix: &str, metrics: &nas_core::Metrics) -> Result<()> {
        let values: Vec<(String, f32)> = metrics
            .iter()
            .filter(|(_, v)| v.is_finite())
            .map(|(k, v)| (format!("{prefix}/{k}"), *v as f32))
            .collect();
        if values.is_empty() {
            return Ok(());
        }
        self.event(step as i64, &EventBody::Scalars(values))
    }

    /// Writes the mixing weights as `alpha/{decision key}/{option name}` at `step`.
    pub fn alphas(&mut self, step: u64, spec: &SpaceSpec, w: &MixingWeights) -> Result<()> {
        let values = spec
            .decisions
            .iter()
            .zip(&w.0)
            .flat_map(|(d, ws)| {
                d.options
                    .iter()
                    .zip(ws)
                    .map(move |(o, &v)| (format!("alpha/{}/{}", d.key, o.name), v))
            })
            .collect();
        self.event(step as i64, &EventBody::Scalars(values))
    }

    /// Flushes buffered events to the file (at every epoch end, so a killed run keeps them).
    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().map_err(|e| NasError::io(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CRC-32C's check value (RFC 3720 / the Castagnoli catalogue): "123456789" -> 0xE3069283.
    #[test]
    #[allow(clippy::manual_rotate)]
    fn crc32c_check_value_and_mask() {
        assert_eq!(CASTAGNOLI.checksum(b"123456789"), 0xE306_9283);
        let c: u32 = 0xE306_9283;
        // The mask of TensorFlow's crc32c.h, written out: rotate right by 15, add a constant.
        let masked = ((c >> 15) | (c << 17)).wrapping_add(0xa282_ead8);
        assert_eq!(masked_crc32c(b"123456789"), masked);
    }

    /// An Event with a scalar, encoded by hand from the proto definitions:
    /// wall_time 1.5 (field 1, fixed64), step 300 (field 2, varint 0xac 0x02),
    /// summary (field 5) { value (1) { tag (1) "a/b", simple_value (2, fixed32) 0.25 } }.
    #[test]
    fn scalar_event_bytes_by_hand() {
        let got = encode_event(1.5, 300, &EventBody::Scalars(vec![("a/b".into(), 0.25)]));
        let mut want = vec![0x09];
        want.extend_from_slice(&1.5f64.to_le_bytes());
        want.extend_from_slice(&[0x10, 0xac, 0x02]);
        // Value: 0a 03 'a' '/' 'b' 15 <0.25f32> = 10 bytes; Summary: 0a 0a <value> = 12 bytes.
        want.extend_from_slice(&[0x2a, 12, 0x0a, 10, 0x0a, 3, b'a', b'/', b'b', 0x15]);
        want.extend_from_slice(&0.25f32.to_le_bytes());
        assert_eq!(got, want);
    }

    /// file_version (field 3) and SessionLog { status: START } (field 6 { 1: 1 }).
    #[test]
    fn version_and_session_start_bytes_by_hand() {
        let v = encode_event(0.0, 0, &EventBody::FileVersion("brain.Event:2".into()));
        assert_eq!(
            &v[9..],
            &[&[0x10, 0x00, 0x1a, 13][..], b"brain.Event:2"].concat()[..]
        );
        let s = encode_event(0.0, 7, &EventBody::SessionStart);
        assert_eq!(&s[9..], &[0x10, 0x07, 0x32, 0x02, 0x08, 0x01]);
    }

    #[test]
    fn records_are_framed_with_masked_crcs() {
        let rec = frame_record(b"xyz");
        assert_eq!(&rec[..8], &3u64.to_le_bytes());
        assert_eq!(
            &rec[8..12],
            &masked_crc32c(&3u64.to_le_bytes()).to_le_bytes()
        );
        assert_eq!(&rec[12..15], b"xyz");
        assert_eq!(&rec[15..], &masked_crc32c(b"xyz").to_le_bytes());
    }
}
