//! Adam over flat `f64` buffers, in TensorFlow's form (the ENAS reference optimises its
//! controller with `tf.train.AdamOptimizer(lr, beta1=0.0, epsilon=1e-3)`, `utils.py`
//! `get_train_ops`): `lr_t = lr * sqrt(1 - b2^t) / (1 - b1^t)`,
//! `w -= lr_t * m / (sqrt(v) + eps)`.
use serde::{Deserialize, Serialize};

/// Adam's moments and step count.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Adam {
    /// First moments, one buffer per parameter.
    pub m: Vec<Vec<f64>>,
    /// Second moments.
    pub v: Vec<Vec<f64>>,
    /// Steps taken.
    pub t: u64,
}

impl Adam {
    /// One step of `w` along gradient `g`.
    pub fn step(&mut self, w: &mut [Vec<f64>], g: &[Vec<f64>], lr: f64, betas: [f64; 2], eps: f64) {
        if self.m.len() != w.len() {
            self.m = w.iter().map(|x| vec![0.0; x.len()]).collect();
            self.v = self.m.clone();
        }
        self.t += 1;
        let t = self.t as i32;
        let (b1, b2) = (betas[0], betas[1]);
        let lr_t = lr * (1.0 - b2.powi(t)).sqrt() / (1.0 - b1.powi(t));
        for (((w, g), m), v) in w.iter_mut().zip(g).zip(&mut self.m).zip(&mut self.v) {
            for i in 0..w.len() {
                m[i] = b1 * m[i] + (1.0 - b1) * g[i];
                v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
                w[i] -= lr_t * m[i] / (v[i].sqrt() + eps);
            }
        }
    }
}
