//! Compiles the host build of the kernel bodies (csrc/host.cpp includes csrc/nas_kernels.cuh)
//! with the system C++ compiler. The CUDA build of the same bodies is scripts/build-cuda.sh.
fn main() {
    println!("cargo:rerun-if-changed=csrc/nas_kernels.cuh");
    println!("cargo:rerun-if-changed=csrc/host.cpp");
    cc::Build::new()
        .cpp(true)
        .file("csrc/host.cpp")
        .include("csrc")
        .flag_if_supported("-std=c++14")
        .flag_if_supported("-fno-fast-math")
        .opt_level(2)
        .warnings(true)
        .compile("nas_kernels_host");
}
