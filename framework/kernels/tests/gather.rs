//! The gather of many tensors into one `f64` buffer and its reverse (`nas::gather_elem`,
//! `nas::scatter_elem`: what the device runs to copy an optimizer step's weights or gradients
//! to the host, and the weights back, at once).
use nas_kernels::host;

#[test]
fn gathering_concatenates_in_order_and_widens_exactly() {
    let a = [1.5f32, -2.0, 1.0e-7];
    let b: [f32; 0] = [];
    let c = [3.25f32, f32::MAX];
    let out = host::gather_f64(&[&a[..], &b[..], &c[..]]).unwrap();
    assert_eq!(
        out,
        vec![1.5, -2.0, 1.0e-7f32 as f64, 3.25, f32::MAX as f64]
    );
    let d = [0.1f64, -0.3];
    assert_eq!(
        host::gather_f64(&[&d[..], &d[..1]]).unwrap(),
        vec![0.1, -0.3, 0.1]
    );
    assert!(host::gather_f64::<f64>(&[]).unwrap().is_empty());
}

#[test]
fn scattering_splits_in_order_and_rounds_to_nearest() {
    let input = [1.5, -2.0, 0.1, 3.25, 1.0e-3];
    let (mut a, mut b, mut c) = ([0f32; 2], [0f32; 0], [0f32; 3]);
    host::scatter_f64(&input, &mut [&mut a[..], &mut b[..], &mut c[..]]).unwrap();
    assert_eq!(a, [1.5, -2.0]);
    assert_eq!(c, [0.1f64 as f32, 3.25, 1.0e-3f64 as f32]);
    let mut d = [0f64; 5];
    host::scatter_f64(&input, &mut [&mut d[..]]).unwrap();
    assert_eq!(d, input);
    assert!(host::scatter_f64(&input[..4], &mut [&mut d[..]]).is_err());
    // The round trip through gather is exact for f64.
    assert_eq!(host::gather_f64(&[&d[..]]).unwrap(), input);
}
