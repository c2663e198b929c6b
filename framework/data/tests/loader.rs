use std::sync::Arc;

use crate::ramp_dataset;
use nas_data::*;

fn loader(n: usize, batch: usize, shuffle: bool, augment: Augment, seed: u64) -> Loader {
    let d = Arc::new(ramp_dataset(n, 2, 3, 4, 3));
    Loader::new(
        d,
        (0..n).collect(),
        batch,
        shuffle,
        augment,
        vec![0.5, 0.25],
        vec![0.5, 2.0],
        seed,
    )
    .unwrap()
}

#[test]
fn batches_cover_the_epoch_and_normalise() {
    // 10 images, batch 4: 4 + 4 + 2 (drop_last = false).
    let mut l = loader(10, 4, false, Augment::none(), 1);
    assert_eq!(l.batches_per_epoch(), 3);
    let sizes: Vec<usize> = (0..3).map(|_| l.next_batch().unwrap().n).collect();
    assert_eq!(sizes, [4, 4, 2]);
    // Unshuffled: the first batch of epoch 1 is images 0..4 again.
    let b = l.next_batch().unwrap();
    assert_eq!(l.epoch(), 1);
    assert_eq!(b.labels, [0, 1, 2, 0]);
    // Image 1, pixel 0 (channel 0) is 10/1000 -> (0.01 - 0.5)/0.5 = -0.98;
    // pixel 12 (channel 1) is 22/1000 -> (0.022 - 0.25)/2 = -0.114.
    assert!((b.images[24] - (-0.98)).abs() < 1e-6);
    assert!((b.images[24 + 12] - (-0.114)).abs() < 1e-6);
    assert_eq!(b.images.len(), 4 * 24);
}

#[test]
fn shuffled_epochs_are_permutations_fixed_by_seed_and_epoch() {
    let mut l = loader(10, 3, true, Augment::none(), 5);
    let epoch = |l: &mut Loader| -> Vec<u32> {
        let mut firsts = Vec::new();
        for _ in 0..l.batches_per_epoch() {
            let b = l.next_batch().unwrap();
            // recover the image index from its first pixel: (i*10)/1000 -> i
            for k in 0..b.n {
                let v = b.images[k * 24] * 0.5 + 0.5;
                firsts.push((v * 100.0).round() as u32);
            }
        }
        firsts
    };
    let e0 = epoch(&mut l);
    let e1 = epoch(&mut l);
    let mut sorted = e0.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..10).collect::<Vec<u32>>());
    assert_ne!(e0, e1);
    assert_ne!(e0, sorted);
    // Same seed, same epochs; start_epoch(1) reproduces epoch 1.
    let mut m = loader(10, 3, true, Augment::none(), 5);
    assert_eq!(epoch(&mut m), e0);
    m.start_epoch(1);
    assert_eq!(epoch(&mut m), e1);
    // Another seed, another order.
    assert_ne!(epoch(&mut loader(10, 3, true, Augment::none(), 6)), e0);
}

#[test]
fn augmented_batches_are_reproducible_and_restorable() {
    let aug = Augment {
        crop_padding: 1,
        hflip: true,
        cutout: 2,
    };
    let mut a = loader(9, 4, true, aug, 11);
    let mut b = loader(9, 4, true, aug, 11);
    let first: Vec<Batch> = (0..4).map(|_| a.next_batch().unwrap()).collect();
    for want in &first {
        let got = b.next_batch().unwrap();
        assert_eq!(
            got.images.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            want.images.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }
    // Save mid-way, restore into a fresh loader: identical continuation.
    let state = a.state();
    assert_eq!(
        state,
        LoaderState {
            epoch: 1,
            cursor: 4
        }
    );
    let json = serde_json::to_string(&state).unwrap();
    let mut c = loader(9, 4, true, aug, 11);
    c.restore(&serde_json::from_str(&json).unwrap());
    for _ in 0..5 {
        assert_eq!(a.next_batch().unwrap(), c.next_batch().unwrap());
    }
    // Augmentation did something: some batch differs from the plain one.
    let mut plain = loader(9, 4, true, Augment::none(), 11);
    assert_ne!(plain.next_batch().unwrap().images, first[0].images);
}

#[test]
fn each_augmented_image_is_a_flip_or_crop_of_its_source() {
    // One image of ones with mean 0, std 1: a flip changes nothing, a crop with padding
    // brings in zero rows/columns, cutout zeros a square of side <= 2 inside.
    let d = Dataset {
        images: vec![1.0; 12],
        ..ramp_dataset(1, 1, 3, 4, 1)
    };
    let d = Arc::new(d);
    let count_zeros = |aug: Augment, seed: u64| -> Vec<usize> {
        let mut l = Loader::new(
            d.clone(),
            vec![0],
            1,
            false,
            aug,
            vec![0.0],
            vec![1.0],
            seed,
        )
        .unwrap();
        (0..40)
            .map(|_| {
                l.next_batch()
                    .unwrap()
                    .images
                    .iter()
                    .filter(|v| **v == 0.0)
                    .count()
            })
            .collect()
    };
    assert!(count_zeros(
        Augment {
            hflip: true,
            ..Augment::none()
        },
        1
    )
    .iter()
    .all(|&z| z == 0));
    // cutout side 2 inside a 3x4 image: 1, 2 or 4 zeros depending on clipping; sometimes 4.
    let z = count_zeros(
        Augment {
            cutout: 2,
            ..Augment::none()
        },
        1,
    );
    assert!(z.iter().all(|&z| [1, 2, 4].contains(&z)), "{z:?}");
    assert!(z.contains(&4));
    // crop padding 1: zeros = shifted-in rows*4 + columns*3 - overlap; some draws shift.
    let z = count_zeros(
        Augment {
            crop_padding: 1,
            ..Augment::none()
        },
        1,
    );
    assert!(z.iter().all(|&z| [0, 3, 4, 6].contains(&z)), "{z:?}");
    assert!(z.contains(&0) && z.contains(&6));
}

#[test]
fn flip_happens_about_half_the_time() {
    // A 1x1x2 image [0.2, 0.8]: flipped it reads [0.8, 0.2]. Over 400 draws the number of
    // flips is 200 +- 40 with overwhelming probability for a fair coin.
    let d = Arc::new(Dataset {
        images: vec![0.2, 0.8],
        ..ramp_dataset(1, 1, 1, 2, 1)
    });
    let mut l = Loader::new(
        d,
        vec![0],
        1,
        false,
        Augment {
            hflip: true,
            ..Augment::none()
        },
        vec![0.0],
        vec![1.0],
        3,
    )
    .unwrap();
    let flips = (0..400)
        .filter(|_| l.next_batch().unwrap().images[0] == 0.8)
        .count();
    assert!((160..=240).contains(&flips), "{flips}");
}

#[test]
fn bad_loader_arguments_are_errors() {
    let d = Arc::new(ramp_dataset(4, 1, 2, 2, 2));
    let new = |idx: Vec<usize>, bs: usize, mean: Vec<f32>, std: Vec<f32>| {
        Loader::new(d.clone(), idx, bs, true, Augment::none(), mean, std, 0)
            .err()
            .map(|e| e.to_string())
    };
    assert!(new(vec![0, 4], 2, vec![0.0], vec![1.0])
        .unwrap()
        .contains("index 4"));
    assert!(new(vec![], 2, vec![0.0], vec![1.0])
        .unwrap()
        .contains("indices"));
    assert!(new(vec![0], 0, vec![0.0], vec![1.0])
        .unwrap()
        .contains("batch_size"));
    assert!(new(vec![0], 1, vec![0.0, 0.0], vec![1.0])
        .unwrap()
        .contains("mean"));
    assert!(new(vec![0], 1, vec![0.0], vec![0.0])
        .unwrap()
        .contains("std"));
    assert!(new(vec![0], 1, vec![0.0], vec![1.0]).is_none());
}
