//! NVRTC compilation of the kernel modules, with the options that keep the
//! arithmetic exactly the scalar specification's: `--fmad=false` (nothing is
//! fused unless the source writes `__fmaf_rn`), `--ftz=false`,
//! `--prec-div=true`, `--prec-sqrt=true`. Every module is prefixed with the
//! generated constant prelude ([`crate::numerics::cuda_prelude`]) and
//! `kernels/common.cuh`. Compiled PTX is cached per (module, architecture).

use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// One CUDA source file of `kernels/`.
#[derive(Clone, Copy, Debug)]
pub struct Module {
    pub name: &'static str,
    pub source: &'static str,
    /// The `extern "C"` kernels it defines.
    pub entries: &'static [&'static str],
    /// Shared headers of `kernels/` it is compiled with, after the common
    /// numerics (`gemm_tile.cuh`, `optim.cuh`).
    pub headers: &'static [&'static str],
    /// Whether its arithmetic calls `__fmaf_rn` (directly or through the
    /// common numerics); a module that does not must compile to PTX without
    /// any fma.
    pub fmas: bool,
}

const COMMON: &str = include_str!("../../../../kernels/common.cuh");
const GEMM_TILE: &str = include_str!("../../../../kernels/gemm_tile.cuh");
const OPTIM: &str = include_str!("../../../../kernels/optim.cuh");

/// Every kernel module, in the order of the CPU op families.
pub const MODULES: &[Module] = &[
    Module {
        name: "gemm",
        source: include_str!("../../../../kernels/gemm.cu"),
        headers: &[GEMM_TILE],
        entries: &["ffwd_gemm_f32", "ffwd_gemm_128x64_f32", "ffwd_gemm_128_f32"],
        fmas: true,
    },
    Module {
        name: "reduce",
        source: include_str!("../../../../kernels/reduce.cu"),
        headers: &[],
        entries: &[
            "ffwd_row_sumsq_f32",
            "ffwd_row_sum_f32",
            "ffwd_normalize_rows_f32",
            "ffwd_standardize_rows_f32",
            "ffwd_normalize_rows_given_f32",
        ],
        fmas: true,
    },
    Module {
        name: "linear",
        source: include_str!("../../../../kernels/linear.cu"),
        headers: &[GEMM_TILE, OPTIM],
        entries: &[
            "ffwd_local_grad_f32",
            "ffwd_bias_grad_f32",
            "ffwd_linear_backward_update_f32",
            "ffwd_linear_backward_update_128x64_f32",
            "ffwd_linear_backward_update_128_f32",
            "ffwd_linear_grads_f32",
            "ffwd_linear_grads_128x64_f32",
            "ffwd_linear_grads_128_f32",
            "ffwd_bias_grad_kept_f32",
            "ffwd_bias_backward_update_f32",
            "ffwd_peer_means_f32",
            "ffwd_peer_grad_f32",
        ],
        fmas: true,
    },
    Module {
        name: "math",
        source: include_str!("../../../../kernels/math.cu"),
        headers: &[],
        entries: &[
            "ffwd_exp_f32",
            "ffwd_log1p_f32",
            "ffwd_ln_f32",
            "ffwd_softplus_f32",
            "ffwd_sigmoid_f32",
            "ffwd_relu_f32",
            "ffwd_relu_backward_f32",
            "ffwd_add_f32",
        ],
        fmas: true,
    },
    Module {
        name: "pool",
        source: include_str!("../../../../kernels/pool.cu"),
        headers: &[],
        entries: &[
            "ffwd_maxpool2_forward_f32",
            "ffwd_maxpool2_backward_f32",
            "ffwd_maxpool2_relu_backward_f32",
            "ffwd_upsample2_forward_f32",
            "ffwd_upsample2_backward_f32",
        ],
        fmas: false,
    },
    Module {
        name: "loss",
        source: include_str!("../../../../kernels/loss.cu"),
        headers: &[],
        entries: &[
            "ffwd_ff_loss_f32",
            "ffwd_softmax_xent_rows_f32",
            "ffwd_mean_l32_f32",
            "ffwd_cosine_rows_f32",
            "ffwd_softmax_bce_rows_f32",
            "ffwd_goodness_means_f32",
            "ffwd_sub_f32",
            "ffwd_mean_sumsq_f32",
            "ffwd_scale_f32",
            "ffwd_gan_loss_f32",
        ],
        fmas: true,
    },
    Module {
        name: "philox",
        source: include_str!("../../../../kernels/philox.cu"),
        headers: &[],
        entries: &["ffwd_philox_u32", "ffwd_philox_uniform_f32", "ffwd_gaussian_f32", "ffwd_dae_corrupt_f32"],
        fmas: true,
    },
    Module {
        name: "conv",
        source: include_str!("../../../../kernels/conv.cu"),
        headers: &[],
        entries: &["ffwd_im2col_f32", "ffwd_col2im_f32"],
        fmas: false,
    },
    Module {
        name: "norm2d",
        source: include_str!("../../../../kernels/norm2d.cu"),
        headers: &[],
        entries: &[
            "ffwd_bn_stats_f32",
            "ffwd_bn_apply_f32",
            "ffwd_bn_backward_f32",
            "ffwd_bn_update_running_f32",
            "ffwd_block_sumsq_f32",
            "ffwd_sample_norm_inv_f32",
            "ffwd_scale_images_f32",
            "ffwd_sample_norm_coef_f32",
            "ffwd_sample_norm_dx_f32",
            "ffwd_block_local_grad_f32",
            "ffwd_bn_rstd_f32",
        ],
        fmas: true,
    },
    Module {
        name: "embed",
        source: include_str!("../../../../kernels/embed.cu"),
        headers: &[],
        entries: &["ffwd_label_channel_f32", "ffwd_label_channel_grad_f32"],
        fmas: false,
    },
    Module {
        name: "layout",
        source: include_str!("../../../../kernels/layout.cu"),
        headers: &[],
        entries: &["ffwd_put_cols_f32", "ffwd_take_cols_f32", "ffwd_cnhw_rows_f32"],
        fmas: false,
    },
    Module {
        name: "optim",
        source: include_str!("../../../../kernels/optim.cu"),
        headers: &[OPTIM],
        entries: &["ffwd_optim_f32"],
        fmas: true,
    },
];

/// Whether libnvrtc can be loaded (probed once; never panics).
pub fn nvrtc_available() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    // SAFETY: only tries to dlopen the library candidates; no NVRTC call.
    *HAS.get_or_init(|| unsafe { cudarc::nvrtc::sys::is_culib_present() })
}

/// The full source NVRTC sees for `module`.
pub fn full_source(module: &Module) -> String {
    let mut s = format!("{}\n{}\n", crate::numerics::cuda_prelude(), COMMON.replace("#pragma once", ""));
    for h in module.headers {
        s += &h.replace("#pragma once", "");
        s.push('\n');
    }
    s + &format!("// ---- {}.cu ----\n{}", module.name, module.source)
}

/// Compiled PTX by (module name, architecture).
type PtxCache = Mutex<HashMap<(&'static str, String), Arc<String>>>;

/// PTX of `module` for `arch` (e.g. `compute_90`), compiled once per process.
pub fn compile_ptx(module: &Module, arch: &str) -> Result<Arc<String>> {
    static CACHE: OnceLock<PtxCache> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = (module.name, arch.to_string());
    if let Some(p) = cache.lock().expect("ptx cache").get(&key) {
        return Ok(p.clone());
    }
    if !nvrtc_available() {
        return Err(Error::Cuda { what: format!("compile {}.cu", module.name), detail: "libnvrtc not found".into() });
    }
    let opts = cudarc::nvrtc::CompileOptions {
        ftz: Some(false),
        prec_sqrt: Some(true),
        prec_div: Some(true),
        fmad: Some(false),
        options: vec![format!("--gpu-architecture={arch}")],
        ..Default::default()
    };
    let ptx = cudarc::nvrtc::compile_ptx_with_opts(full_source(module), opts)
        .map_err(|e| Error::Cuda { what: format!("compile {}.cu for {arch}", module.name), detail: e.to_string() })?;
    let ptx = Arc::new(ptx.to_src());
    cache.lock().expect("ptx cache").insert(key, ptx.clone());
    Ok(ptx)
}
