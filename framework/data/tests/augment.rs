use nas_data::augment::*;

/// One channel, 3 x 4, values 1..=12 row by row:
///  1  2  3  4
///  5  6  7  8
///  9 10 11 12
fn img() -> (Vec<f32>, Shape) {
    (
        (1..=12).map(|v| v as f32).collect(),
        Shape { c: 1, h: 3, w: 4 },
    )
}

#[test]
fn flip_is_the_mirror_image() {
    let (mut x, s) = img();
    hflip(&mut x, s);
    assert_eq!(x, [4., 3., 2., 1., 8., 7., 6., 5., 12., 11., 10., 9.]);
    // two channels flip independently
    let mut y: Vec<f32> = (0..8).map(|v| v as f32).collect();
    hflip(&mut y, Shape { c: 2, h: 2, w: 2 });
    assert_eq!(y, [1., 0., 3., 2., 5., 4., 7., 6.]);
}

#[test]
fn crop_with_padding_shifts_content() {
    let (x, s) = img();
    let mut out = vec![f32::NAN; 12];
    // offset (pad, pad) is the identity
    pad_crop(&x, s, 2, 2, 2, &mut out);
    assert_eq!(out, x);
    // dy = 0, dx = 1 with pad 1: content moves down 1 row, and is kept at the same
    // column: out[y][x] = img[y - 1][x]
    pad_crop(&x, s, 1, 0, 1, &mut out);
    assert_eq!(out, [0., 0., 0., 0., 1., 2., 3., 4., 5., 6., 7., 8.]);
    // dy = 1, dx = 2 with pad 1: out[y][x] = img[y][x + 1] -> shifted left, zero column right
    pad_crop(&x, s, 1, 1, 2, &mut out);
    assert_eq!(out, [2., 3., 4., 0., 6., 7., 8., 0., 10., 11., 12., 0.]);
}

#[test]
fn cutout_zeros_a_clipped_square() {
    // Side 2 centred at (1, 1): rows 0..2, columns 0..2.
    let (mut x, s) = img();
    cutout(&mut x, s, 1, 1, 2);
    assert_eq!(x, [0., 0., 3., 4., 0., 0., 7., 8., 9., 10., 11., 12.]);
    // Side 3 centred at (2, 3): rows 1..4 -> 1..3, columns 2..5 -> 2..4 (clipped).
    let (mut x, s) = img();
    cutout(&mut x, s, 2, 3, 3);
    assert_eq!(x, [1., 2., 3., 4., 5., 6., 0., 0., 9., 10., 0., 0.]);
    // Side 16 on a small image wipes everything.
    let (mut x, s) = img();
    cutout(&mut x, s, 0, 0, 16);
    assert!(x.iter().all(|v| *v == 0.0));
}
