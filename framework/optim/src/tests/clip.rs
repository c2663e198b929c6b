use super::assert_close;
use crate::*;

#[test]
fn clips_by_the_global_norm() {
    // Two buffers [3] and [4, 0]: global norm sqrt(9 + 16) = 5.
    let (mut a, mut b) = (vec![3.0], vec![4.0, 0.0]);
    let n = clip_grad_norm(&mut [&mut a[..], &mut b[..]], 1.0);
    assert_eq!(n, 5.0);
    // factor 1/(5 + 1e-6)
    let f = 1.0 / (5.0 + 1e-6);
    assert_close(&a, &[3.0 * f], 1e-15);
    assert_close(&b, &[4.0 * f, 0.0], 1e-15);
    assert!((grad_norm([&a[..], &b[..]]) - 1.0).abs() < 1e-6);
}

#[test]
fn leaves_small_gradients_alone() {
    let mut a = vec![0.3, -0.4];
    let n = clip_grad_norm(&mut [&mut a[..]], 5.0);
    assert!((n - 0.5).abs() < 1e-15);
    assert_eq!(a, vec![0.3, -0.4]);
    // Exactly at the limit the factor 5/(5 + 1e-6) < 1 still scales (PyTorch does too).
    let mut b = [3.0, 4.0];
    clip_grad_norm(&mut [&mut b[..]], 5.0);
    assert!(b[0] < 3.0);
}

#[test]
fn negative_or_zero_max_norm_zeroes_without_flipping() {
    let mut a = [1.0, -2.0];
    assert_eq!(clip_grad_norm(&mut [&mut a[..]], -1.0), 5f64.sqrt());
    assert!(a.iter().all(|v| *v == 0.0));
}
