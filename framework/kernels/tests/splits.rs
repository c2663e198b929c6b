//! The batch split of the weight gradient (`nas::weight_splits`), which the host build and the
//! CUDA launch share: every example in exactly one group, enough groups for a GPU.
use nas_kernels::weight_splits;

#[test]
fn every_example_falls_in_exactly_one_group() {
    for n in [1, 2, 3, 7, 64, 100, 256, 70_000] {
        for nw in [1, 9, 144, 400, 1_000, 65_536, 589_824] {
            let (splits, per) = weight_splits(n, nw);
            assert!(splits >= 1 && per >= 1, "n {n} nw {nw}: {splits} x {per}");
            assert!(
                splits * per >= n,
                "n {n} nw {nw}: {splits} x {per} misses examples"
            );
            assert!(
                (splits - 1) * per < n,
                "n {n} nw {nw}: group {splits} is empty"
            );
            assert!(
                splits <= 65_535,
                "n {n} nw {nw}: {splits} groups exceed a grid's y"
            );
        }
    }
}

#[test]
fn small_weights_split_per_example_and_large_ones_not_at_all() {
    // A depthwise 5x5 weight over 16 channels: one group per example of a batch of 64.
    assert_eq!(weight_splits(64, 400), (64, 1));
    // 65,536 partial sums wanted: 1,000 weights -> 65 groups wanted -> 2 examples each.
    assert_eq!(weight_splits(100, 1_000), (50, 2));
    // A weight of 64K elements or more is already enough threads.
    assert_eq!(weight_splits(64, 65_536), (1, 64));
    assert_eq!(weight_splits(64, 589_824), (1, 64));
    assert_eq!(weight_splits(1, 9), (1, 1));
}
