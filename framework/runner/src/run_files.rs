//! [`RunFiles`]: the files a run appends to while it searches: `log.txt`, `metrics.jsonl`,
//! `alpha_history.jsonl` and, when asked for, the TensorBoard event file. A resumed run cuts
//! the two JSON-lines files back to the lengths its checkpoint recorded, so that the lines the
//! killed process wrote after it are dropped.
use std::path::{Path, PathBuf};

use nas_core::{MixingWeights, NasError, Result, SpaceSpec};
use nas_rundir::checkpoint::Progress;
use nas_rundir::files::{JsonLines, TextLog};
use serde_json::json;

use crate::run_loop::metrics_json;
use crate::tensorboard::EventWriter;

/// The open files of a run.
pub struct RunFiles {
    /// `log.txt`.
    pub log: TextLog,
    metrics_path: PathBuf,
    alphas_path: PathBuf,
    metrics: JsonLines,
    alphas: JsonLines,
    board: Option<EventWriter>,
}

impl RunFiles {
    /// Opens the files of `dir` where `progress` left them: the JSON-lines logs cut back to
    /// its lengths; a resumed run's event file starts after its global step.
    pub fn open(dir: &Path, tensorboard: bool, progress: &Progress, resumed: bool) -> Result<Self> {
        let metrics_path = dir.join("metrics.jsonl");
        let alphas_path = dir.join("alpha_history.jsonl");
        crate::resume::cut_back(&metrics_path, progress.metrics_bytes)?;
        crate::resume::cut_back(&alphas_path, progress.alphas_bytes)?;
        let board = if tensorboard {
            // The first step the resumed run writes: later points of the killed process go.
            let resumed_at = resumed.then_some(progress.global_step + 1);
            Some(EventWriter::create(&dir.join("tensorboard"), resumed_at)?)
        } else {
            None
        };
        Ok(RunFiles {
            log: TextLog::open(&dir.join("log.txt"))?,
            metrics: JsonLines::open(&metrics_path)?,
            alphas: JsonLines::open(&alphas_path)?,
            metrics_path,
            alphas_path,
            board,
        })
    }

    /// Lengths of `metrics.jsonl` and `alpha_history.jsonl` in bytes (for a checkpoint).
    pub fn lengths(&self) -> Result<(u64, u64)> {
        let len = |p: &Path| {
            std::fs::metadata(p)
                .map(|m| m.len())
                .map_err(|e| NasError::io(p, e))
        };
        Ok((len(&self.metrics_path)?, len(&self.alphas_path)?))
    }

    /// One step's line of `metrics.jsonl` (and its TensorBoard scalars).
    pub fn step_line(
        &mut self,
        metrics: &nas_core::Metrics,
        epoch: usize,
        step: usize,
        global_step: u64,
    ) -> Result<()> {
        let mut line = metrics_json(metrics);
        line.insert("kind".into(), json!("step"));
        line.insert("epoch".into(), json!(epoch));
        line.insert("step".into(), json!(step));
        line.insert("global_step".into(), json!(global_step));
        self.metrics.push(&serde_json::Value::Object(line))?;
        if let Some(b) = self.board.as_mut() {
            b.scalars(global_step, "step", metrics)?;
        }
        Ok(())
    }

    /// One epoch's line of `metrics.jsonl` (`steps` taken, the architecture's notation).
    pub fn epoch_line(
        &mut self,
        metrics: &nas_core::Metrics,
        epoch: usize,
        steps: usize,
        architecture: Option<&str>,
    ) -> Result<()> {
        let mut line = metrics_json(metrics);
        line.insert("kind".into(), json!("epoch"));
        line.insert("epoch".into(), json!(epoch));
        line.insert("steps".into(), json!(steps));
        if let Some(a) = architecture {
            line.insert("architecture".into(), json!(a));
        }
        self.metrics.push(&serde_json::Value::Object(line))
    }

    /// One line of `alpha_history.jsonl` (`epoch` -1: before training) and the TensorBoard
    /// histogram of the weights at `global_step`.
    pub fn alphas(
        &mut self,
        epoch: i64,
        global_step: u64,
        spec: &SpaceSpec,
        weights: &MixingWeights,
    ) -> Result<()> {
        self.alphas
            .push(&json!({"epoch": epoch, "weights": weights.0}))?;
        if let Some(b) = self.board.as_mut() {
            b.alphas(global_step, spec, weights)?;
        }
        Ok(())
    }

    /// The epoch's TensorBoard scalars, flushed.
    pub fn epoch_scalars(&mut self, global_step: u64, metrics: &nas_core::Metrics) -> Result<()> {
        if let Some(b) = self.board.as_mut() {
            b.scalars(global_step, "epoch", metrics)?;
            b.flush()?;
        }
        Ok(())
    }
}
