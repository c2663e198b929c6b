//! Compiles the host build of the kernel bodies (csrc/host.cpp includes csrc/nas_kernels.cuh)
//! with the system C++ compiler, and, with the `cuda` feature, the device build
//! (csrc/device.cu) to PTX with `nvcc` (docs/gpu.md; scripts/build-cuda.sh provides `nvcc`
//! from PyPI's CUDA wheels on a machine without a toolkit).
fn main() {
    println!("cargo:rerun-if-changed=csrc/nas_kernels.cuh");
    println!("cargo:rerun-if-changed=csrc/host.cpp");
    cc::Build::new()
        .cpp(true)
        .file("csrc/host.cpp")
        .include("csrc")
        .flag_if_supported("-std=c++14")
        .flag_if_supported("-fno-fast-math")
        // No fused multiply-adds: the host build is compared bit for bit with Rust's
        // arithmetic (nas_optim's SGD), which never fuses (clang fuses by default).
        .flag_if_supported("-ffp-contract=off")
        .opt_level(2)
        .warnings(true)
        .compile("nas_kernels_host");
    compile_emulation();
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        compile_ptx();
    }
}

/// The device build (`csrc/device.cu`) compiled for the host with the CUDA built-ins of
/// `csrc/emulate.h` (`csrc/emulated.cpp`): its kernels run on threads of the CPU, launched by
/// `nas_kernels::emulated`, so their indexing is tested on every machine.
fn compile_emulation() {
    println!("cargo:rerun-if-changed=csrc/device.cu");
    println!("cargo:rerun-if-changed=csrc/emulate.h");
    println!("cargo:rerun-if-changed=csrc/emulated.cpp");
    cc::Build::new()
        .cpp(true)
        .file("csrc/emulated.cpp")
        .include("csrc")
        .flag_if_supported("-std=c++14")
        .flag_if_supported("-pthread")
        .flag_if_supported("-fno-fast-math")
        .flag_if_supported("-ffp-contract=off")
        .opt_level(2)
        .warnings(true)
        .compile("nas_kernels_emulated");
}

/// `csrc/device.cu` -> `$OUT_DIR/nas_kernels.ptx` for the virtual architecture
/// `compute_$CUDA_COMPUTE_CAP` (the variable candle's kernels read too; 80 when unset, which
/// every GPU from the A100 on can run): the driver compiles the PTX for the GPU it finds.
fn compile_ptx() {
    println!("cargo:rerun-if-env-changed=CUDA_COMPUTE_CAP");
    println!("cargo:rerun-if-env-changed=NVCC");
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "80".to_string());
    if cap.is_empty() || !cap.bytes().all(|b| b.is_ascii_digit()) {
        panic!(
            "nas-kernels: CUDA_COMPUTE_CAP must be a compute capability such as 90, got `{cap}`"
        );
    }
    let nvcc = std::env::var("NVCC").unwrap_or_else(|_| "nvcc".to_string());
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("nas_kernels.ptx");
    let status = std::process::Command::new(&nvcc)
        .args([
            "-ptx",
            &format!("-arch=compute_{cap}"),
            "-std=c++14",
            "-Icsrc",
        ])
        .arg("csrc/device.cu")
        .arg("-o")
        .arg(&out)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("nas-kernels: `{nvcc}` failed to compile csrc/device.cu ({s})"),
        Err(e) => panic!(
            "nas-kernels: the `cuda` feature needs the CUDA compiler: could not run `{nvcc}` ({e}); \
             put nvcc on PATH or set NVCC (scripts/build-cuda.sh installs it from PyPI)"
        ),
    }
}
