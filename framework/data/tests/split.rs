use nas_data::*;
use nas_data::{below, shuffle};

#[test]
fn split_sizes_disjoint_and_covering() {
    // DARTS: floor(0.5 * 11) = 5 train, 6 validation.
    let (a, b) = split_indices(11, 0.5, 3).unwrap();
    assert_eq!((a.len(), b.len()), (5, 6));
    let mut all: Vec<usize> = a.iter().chain(&b).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..11).collect::<Vec<_>>());
    assert!(a.windows(2).all(|w| w[0] < w[1]));
    // floor(0.8 * 10) = 8
    let (a, b) = split_indices(10, 0.8, 3).unwrap();
    assert_eq!((a.len(), b.len()), (8, 2));
}

#[test]
fn split_is_seeded() {
    let x = split_indices(1000, 0.5, 7).unwrap();
    assert_eq!(x, split_indices(1000, 0.5, 7).unwrap());
    assert_ne!(x, split_indices(1000, 0.5, 8).unwrap());
    // Not simply the first half.
    assert_ne!(x.0, (0..500).collect::<Vec<_>>());
}

#[test]
fn split_rejects_bad_portions() {
    for p in [0.0, 1.0, -0.5, 1.5, f64::NAN] {
        let e = split_indices(10, p, 0).unwrap_err().to_string();
        assert!(e.contains("portion"), "{e}");
    }
    // A part would be empty.
    assert!(split_indices(1, 0.5, 0).is_err());
}

#[test]
fn shuffle_is_a_permutation_and_below_is_in_range() {
    let mut rng = nas_core::component_rng(1, "t");
    let mut v: Vec<usize> = (0..50).collect();
    shuffle(&mut v, &mut rng);
    let mut s = v.clone();
    s.sort_unstable();
    assert_eq!(s, (0..50).collect::<Vec<_>>());
    assert_ne!(v, s);
    // Every value of 0..3 appears, none outside, roughly uniformly (3000 draws: each count
    // is 1000 +- 100 with overwhelming probability; a failure means a biased generator).
    let mut counts = [0usize; 3];
    for _ in 0..3000 {
        counts[below(&mut rng, 3)] += 1;
    }
    assert!(
        counts.iter().all(|&c| (900..1100).contains(&c)),
        "{counts:?}"
    );
    assert_eq!(below(&mut rng, 1), 0);
    assert_eq!(below(&mut rng, 0), 0);
}
