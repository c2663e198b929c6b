//! `nas bench --strategy proxylessnas` times a full ProxylessNAS step (a tiny network, 1
//! step), and, ignored by default, the measurement recorded in docs/proxylessnas.md next to
//! a DARTS first-order step, in one process:
//! `cargo test -p nas-runner --test bench_proxylessnas -- --ignored --nocapture`.
use nas_runner::bench::{bench_darts, BenchConfig};

fn cfg(strategy: &str, layers: usize, channels: usize, batch: usize, steps: usize) -> BenchConfig {
    BenchConfig {
        layers,
        channels,
        batch,
        size: if layers > 2 { 32 } else { 8 },
        steps,
        order: nas_core::OrderSetting::First,
        strategy: strategy.into(),
        profile: false,
        device: nas_config::DeviceSetting::Cpu,
    }
}

#[test]
fn a_proxylessnas_step_is_benchable() {
    let r = bench_darts(
        &cfg("proxylessnas", 2, 4, 2, 1),
        &nas_builtins::components().unwrap(),
    )
    .unwrap();
    assert_eq!(r.step_ms.len(), 1);
    assert!(r.supernet_params > 0);
    assert!(r.profile.is_none());
    // GPU-only figures stay out of a CPU run's result.
    assert!(r.gpu_peak_mib.is_none() && r.gpu_kernel_launches_per_step.is_none());
}

/// `--profile` accounts the kernels of the timed steps by name: a DARTS step on two
/// reduction cells runs every edge as one fused mixed edge, forward and backward, with the
/// options inside it accounted by kind, and the backward phase contains them.
#[test]
fn a_profiled_step_names_its_kernels_and_phases() {
    let mut c = cfg("darts", 2, 4, 2, 2);
    c.profile = true;
    let r = bench_darts(&c, &nas_builtins::components().unwrap()).unwrap();
    let rows = r.profile.expect("profile requested");
    let row = |name: &str| {
        rows.iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("no row {name} in {rows:?}"))
    };
    // Per step: two forwards (architecture step and weight step) of 2 cells of 14 edges.
    assert_eq!(row("nas-mixed-edge").calls_per_step, 2.0 * 2.0 * 14.0);
    let bwd = row("nas-mixed-edge-bwd");
    assert_eq!(bwd.calls_per_step, 56.0);
    // Inside each edge, 4 options are separable or dilated convolutions; the 8 stride-2 edges
    // of a reduction cell have a FactorizedReduce `skip_connect`, the other 6 an identity.
    assert_eq!(
        row("  in edge: relu-dw-pw-bn units").calls_per_step,
        56.0 * 4.0
    );
    assert_eq!(
        row("  in edge: factorized reduce").calls_per_step,
        2.0 * 2.0 * 8.0
    );
    assert_eq!(row("  in edge: identity").calls_per_step, 2.0 * 2.0 * 6.0);
    assert!(rows.iter().all(|r| r.name != "nas-relu-dw-pw-bn"));
    let backward = row("phase: backward");
    assert_eq!(backward.calls_per_step, 2.0);
    assert!(backward.ms_per_step >= bwd.ms_per_step * 0.99);
    assert!(rows
        .windows(2)
        .all(|w| w[0].ms_per_step >= w[1].ms_per_step));
    // Nothing is recorded once the bench is over.
    assert!(!nas_ops::profile::enabled());
}

#[test]
#[ignore = "a measurement, not a check: run with --ignored --nocapture"]
fn measure_proxylessnas_against_darts_first_order() {
    let p = bench_darts(
        &cfg("proxylessnas", 5, 16, 32, 2),
        &nas_builtins::components().unwrap(),
    )
    .unwrap();
    let d = bench_darts(
        &cfg("darts", 5, 16, 32, 2),
        &nas_builtins::components().unwrap(),
    )
    .unwrap();
    println!(
        "DARTS search network 5 cells x 16 channels, batch 32, 32x32x3, {} threads: \
         proxylessnas {:.0} ms/step (cpu {:.0}, peak RSS {:.0} MiB), darts first order \
         {:.0} ms/step (cpu {:.0}, peak RSS {:.0} MiB, the process's peak so far)",
        p.threads,
        p.ms_per_step,
        p.cpu_ms_per_step.unwrap_or(f64::NAN),
        p.peak_rss_mib.unwrap_or(f64::NAN),
        d.ms_per_step,
        d.cpu_ms_per_step.unwrap_or(f64::NAN),
        d.peak_rss_mib.unwrap_or(f64::NAN)
    );
}
