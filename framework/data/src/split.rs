//! Seeded index splits and shuffles, with our own Fisher-Yates over ChaCha8's raw output,
//! so that the order depends only on the seed (not on a `rand` version's algorithms).
use nas_core::params::ensure;
use nas_core::{component_rng, Result};
use rand::RngCore;

/// A uniform integer in `0..n` (`n >= 1`) by Lemire's multiply-and-reject method
/// (Lemire 2019, "Fast random integer generation in an interval"). `n <= 1` gives 0
/// without drawing.
pub fn below(rng: &mut impl RngCore, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    let n = n as u64;
    let threshold = n.wrapping_neg() % n;
    loop {
        let m = (rng.next_u64() as u128) * (n as u128);
        if (m as u64) >= threshold {
            return (m >> 64) as usize;
        }
    }
}

/// Fisher-Yates shuffle (Durstenfeld's version) driven by [`below`].
pub fn shuffle<T>(items: &mut [T], rng: &mut impl RngCore) {
    for i in (1..items.len()).rev() {
        let j = below(rng, i + 1);
        items.swap(i, j);
    }
}

/// A seeded train/validation split of `0..n`: a shuffle (stream `data.split` of `seed`),
/// then the first `floor(portion * n)` indices train and the rest validate, as DARTS' search
/// does (`train_portion` 0.5, Liu et al. 2019, `train_search.py`). Both parts are returned
/// sorted. `portion` must lie in `(0, 1)` and both parts must be non-empty.
pub fn split_indices(n: usize, portion: f64, seed: u64) -> Result<(Vec<usize>, Vec<usize>)> {
    ensure(
        portion > 0.0 && portion < 1.0,
        "data split",
        "portion",
        format!("must lie in (0, 1), got {portion}"),
    )?;
    let k = (portion * n as f64).floor() as usize;
    ensure(
        k > 0 && k < n,
        "data split",
        "portion",
        format!("splitting {n} items at {portion} leaves a part empty"),
    )?;
    let mut idx: Vec<usize> = (0..n).collect();
    shuffle(&mut idx, &mut component_rng(seed, "data.split"));
    let mut train = idx[..k].to_vec();
    let mut valid = idx[k..].to_vec();
    train.sort_unstable();
    valid.sort_unstable();
    Ok((train, valid))
}
