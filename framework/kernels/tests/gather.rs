//! The gather of many tensors into one `f64` buffer (`nas::gather_elem`, what the device runs
//! to copy an optimizer step's weights or gradients to the host at once).
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
