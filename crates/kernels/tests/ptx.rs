//! Every kernel module compiles to PTX through NVRTC with the backend's
//! fixed options, defines its entry points, and passes the PTX lint. Needs
//! libnvrtc (CI installs the `nvidia-cuda-nvrtc` wheel), not a GPU; without
//! it the test prints SKIP, and with `FFWD_REQUIRE_NVRTC=1` it fails.

use ffwd_kernels::cuda::{compile_ptx, lint_ptx, nvrtc_available, Module, MODULES};

#[test]
fn every_kernel_module_compiles_to_ptx_that_passes_the_lint() {
    if !nvrtc_available() {
        if std::env::var("FFWD_REQUIRE_NVRTC").as_deref() == Ok("1") {
            panic!("FFWD_REQUIRE_NVRTC=1 but libnvrtc cannot be loaded (LD_LIBRARY_PATH?)");
        }
        eprintln!("SKIP (no libnvrtc)");
        return;
    }
    for arch in ["compute_90", "compute_80"] {
        for m in MODULES {
            let ptx = compile_ptx(m, arch).unwrap_or_else(|e| panic!("{e}"));
            for e in m.entries {
                assert!(ptx.contains(&format!(".entry {e}(")), "{}.cu for {arch}: no entry {e}", m.name);
            }
            let bad = lint_ptx(&ptx, m.fmas);
            assert!(bad.is_empty(), "{}.cu for {arch}:\n{}", m.name, bad.join("\n"));
        }
    }
}

#[test]
fn a_source_without_fma_calls_compiles_to_ptx_without_fma() {
    // With --fmad=false, `a * b + c` must stay a rounded multiply and a
    // rounded add; only an explicit __fmaf_rn may fuse.
    if !nvrtc_available() {
        eprintln!("SKIP (no libnvrtc)");
        return;
    }
    let probe = Module {
        name: "lint_probe_mul_add",
        source: "extern \"C\" __global__ void probe(float* x) { x[0] = x[1] * x[2] + x[3]; }",
        headers: &[],
        entries: &["probe"],
        fmas: false,
    };
    let ptx = compile_ptx(&probe, "compute_90").unwrap();
    assert!(lint_ptx(&ptx, false).is_empty(), "{ptx}");
    assert!(ptx.contains("mul.rn.f32") && ptx.contains("add.rn.f32"), "{ptx}");
    // and the lint would see one: gemm.cu's fma chain is there
    let g = MODULES.iter().find(|m| m.name == "gemm").unwrap();
    let gptx = compile_ptx(g, "compute_90").unwrap();
    assert!(gptx.contains("fma.rn.f32"));
    assert!(!lint_ptx(&gptx, false).is_empty());
}

#[test]
fn the_device_philox_uses_the_rust_constants() {
    // Source text only: no NVRTC needed.
    use ffwd_tensor::philox::{M0, M1, W0, W1};
    let m = MODULES.iter().find(|m| m.name == "philox").unwrap();
    for (name, v) in [("M0", M0), ("M1", M1), ("W0", W0), ("W1", W1)] {
        let want = format!("#define FFWD_PHILOX_{name} {v:#010X}u").replace("0X", "0x");
        assert!(m.source.contains(&want), "philox.cu lacks `{want}`");
    }
}
