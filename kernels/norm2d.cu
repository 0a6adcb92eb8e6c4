// Normalisations of CNHW blocks (mirrors crates/kernels/src/cpu/norm2d.rs):
// batch norm over channels and the per-image block goodness. A channel row
// (N*H*W values) is reduced by one warp: lane l takes elements l, l+32, ...
// in ascending order from +0.0, then the warp tree (the L32 order).

// Per channel: mean = L32 sum / n; var = L32 sum of fma(d, d, lane), d = x - mean, / n;
// rstd = 1 / sqrt(var + eps). One warp per channel.
extern "C" __global__ void ffwd_bn_stats_f32(const float* __restrict__ x, int channels, int n, float eps,
                                             float* __restrict__ mean, float* __restrict__ var, float* __restrict__ rstd) {
    int c = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x & 31;
    if (c >= channels) return;
    const float* row = x + (long)c * n;
    float acc = 0.0f;
    for (int i = lane; i < n; i += 32) acc = __fadd_rn(acc, row[i]);
    float fn = (float)n;
    float m = __fdiv_rn(ffwd_l32_tree(acc), fn);
    float sq = 0.0f;
    for (int i = lane; i < n; i += 32) {
        float d = __fsub_rn(row[i], m);
        sq = __fmaf_rn(d, d, sq);
    }
    float v = __fdiv_rn(ffwd_l32_tree(sq), fn);
    if (lane == 0) {
        mean[c] = m;
        var[c] = v;
        rstd[c] = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(v, eps)));
    }
}

// y = ((x - mean) * rstd) * gamma + beta; one thread per value.
extern "C" __global__ void ffwd_bn_apply_f32(const float* __restrict__ x, int channels, int n, const float* __restrict__ mean,
                                             const float* __restrict__ rstd, const float* __restrict__ gamma,
                                             const float* __restrict__ beta, float* __restrict__ y) {
    long t = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= (long)channels * n) return;
    int c = (int)(t / n);
    y[t] = __fadd_rn(__fmul_rn(__fmul_rn(__fsub_rn(x[t], mean[c]), rstd[c]), gamma[c]), beta[c]);
}

// Backward with batch statistics, one warp per channel: sdy = L32 sum of dy,
// sdyx = L32 sum of fma(dy, xh, lane) with xh = (x - mean) * rstd;
// dx = (gamma * rstd) * ((dy - sdy / n) - xh * (sdyx / n)); dgamma = sdyx, dbeta = sdy.
extern "C" __global__ void ffwd_bn_backward_f32(const float* __restrict__ x, int channels, int n,
                                                const float* __restrict__ mean, const float* __restrict__ rstd,
                                                const float* __restrict__ gamma, const float* __restrict__ dy,
                                                float* __restrict__ dx, int write_dx,
                                                float* __restrict__ dgamma, float* __restrict__ dbeta) {
    int c = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x & 31;
    if (c >= channels) return;
    const float* xr = x + (long)c * n;
    const float* gr = dy + (long)c * n;
    float* dr = dx + (long)c * n;
    float m = mean[c], r = rstd[c];
    float a0 = 0.0f, a1 = 0.0f;
    for (int i = lane; i < n; i += 32) {
        a0 = __fadd_rn(a0, gr[i]);
        a1 = __fmaf_rn(gr[i], __fmul_rn(__fsub_rn(xr[i], m), r), a1);
    }
    float sdy = ffwd_l32_tree(a0), sdyx = ffwd_l32_tree(a1);
    float fn = (float)n;
    float a = __fmul_rn(gamma[c], r), mdy = __fdiv_rn(sdy, fn), mdyx = __fdiv_rn(sdyx, fn);
    for (int i = lane; write_dx && i < n; i += 32) {
        float xh = __fmul_rn(__fsub_rn(xr[i], m), r);
        dr[i] = __fmul_rn(a, __fsub_rn(__fsub_rn(gr[i], mdy), __fmul_rn(xh, mdyx)));
    }
    if (lane == 0) {
        dgamma[c] = sdyx;
        dbeta[c] = sdy;
    }
}

// Running statistics: r = (1 - m) * r + m * s, the variance unbiased by unbias = n / (n - 1).
extern "C" __global__ void ffwd_bn_update_running_f32(const float* __restrict__ mean, const float* __restrict__ var,
                                                      int channels, float unbias, float mom,
                                                      float* __restrict__ running_mean, float* __restrict__ running_var) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= channels) return;
    float k = __fsub_rn(1.0f, mom);
    running_mean[c] = __fadd_rn(__fmul_rn(k, running_mean[c]), __fmul_rn(mom, mean[c]));
    running_var[c] = __fadd_rn(__fmul_rn(k, running_var[c]), __fmul_rn(mom, __fmul_rn(var[c], unbias)));
}

// For one warp: image b's sum over channels ascending (from +0.0) of each
// plane's L32 sum of squares.
FFWD_DEV float ffwd_image_sumsq(const float* x, int channels, int images, int hw, int b, int lane) {
    float s = 0.0f;
    for (int c = 0; c < channels; ++c) {
        const float* p = x + ((long)c * images + b) * hw;
        float acc = 0.0f;
        for (int i = lane; i < hw; i += 32) acc = __fmaf_rn(p[i], p[i], acc);
        s = __fadd_rn(s, ffwd_l32_tree(acc));
    }
    return s;
}

// Per image b: the block goodness (ffwd_image_sumsq). One warp per image.
extern "C" __global__ void ffwd_block_sumsq_f32(const float* __restrict__ x, int channels, int images, int hw,
                                                float* __restrict__ out) {
    int b = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x & 31;
    if (b >= images) return;
    float s = ffwd_image_sumsq(x, channels, images, hw, b, lane);
    if (lane == 0) out[b] = s;
}

// Per-image length norm (RMS over C*H*W). One warp per image: ss as in
// ffwd_block_sumsq; inv = 1 / (sqrt(ss / D) + eps).
extern "C" __global__ void ffwd_sample_norm_inv_f32(const float* __restrict__ x, int channels, int images, int hw, float eps,
                                                    float* __restrict__ inv) {
    int b = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x & 31;
    if (b >= images) return;
    float s = ffwd_image_sumsq(x, channels, images, hw, b, lane);
    float d = (float)(channels * hw);
    if (lane == 0) inv[b] = __fdiv_rn(1.0f, __fadd_rn(__fsqrt_rn(__fdiv_rn(s, d)), eps));
}

// y = x * s[b] (image b's planes), one thread per value.
extern "C" __global__ void ffwd_scale_images_f32(const float* __restrict__ x, int channels, int images, int hw,
                                                 const float* __restrict__ s, float* __restrict__ y) {
    long t = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= (long)channels * images * hw) return;
    int b = (int)((t / hw) % images);
    y[t] = __fmul_rn(x[t], s[b]);
}

// Length-norm backward, per image (one warp): ss and dot = sums over
// channels ascending of the planes' L32 sums of fma(x, x) and fma(dy, x);
// r = sqrt(ss / D); coef = -(inv * inv) * (dot / (D * r)), 0 when r = 0.
extern "C" __global__ void ffwd_sample_norm_coef_f32(const float* __restrict__ x, const float* __restrict__ dy, int channels,
                                                     int images, int hw, const float* __restrict__ inv,
                                                     float* __restrict__ coef) {
    int b = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x & 31;
    if (b >= images) return;
    float ss = 0.0f, dot = 0.0f;
    for (int c = 0; c < channels; ++c) {
        long off = ((long)c * images + b) * hw;
        float a0 = 0.0f, a1 = 0.0f;
        for (int i = lane; i < hw; i += 32) {
            a0 = __fmaf_rn(x[off + i], x[off + i], a0);
            a1 = __fmaf_rn(dy[off + i], x[off + i], a1);
        }
        ss = __fadd_rn(ss, ffwd_l32_tree(a0));
        dot = __fadd_rn(dot, ffwd_l32_tree(a1));
    }
    float d = (float)(channels * hw);
    float r = __fsqrt_rn(__fdiv_rn(ss, d));
    float k = r > 0.0f ? __fmul_rn(-__fmul_rn(inv[b], inv[b]), __fdiv_rn(dot, __fmul_rn(d, r))) : 0.0f;
    if (lane == 0) coef[b] = k;
}

// dx = dy * inv[b] + x * coef[b], one thread per value.
extern "C" __global__ void ffwd_sample_norm_dx_f32(const float* __restrict__ x, const float* __restrict__ dy, int channels,
                                                   int images, int hw, const float* __restrict__ inv,
                                                   const float* __restrict__ coef, float* __restrict__ dx) {
    long t = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= (long)channels * images * hw) return;
    int b = (int)((t / hw) % images);
    dx[t] = __fadd_rn(__fmul_rn(dy[t], inv[b]), __fmul_rn(x[t], coef[b]));
}

// The block goodness gradient: dx = x * (dldg[b] + dldg[b]).
extern "C" __global__ void ffwd_block_local_grad_f32(const float* __restrict__ x, int channels, int images, int hw,
                                                     const float* __restrict__ dldg, float* __restrict__ dx) {
    long t = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= (long)channels * images * hw) return;
    int b = (int)((t / hw) % images);
    dx[t] = __fmul_rn(x[t], __fadd_rn(dldg[b], dldg[b]));
}

// rstd = 1 / sqrt(var + eps) per channel (evaluation from the running variance).
extern "C" __global__ void ffwd_bn_rstd_f32(const float* __restrict__ var, int channels, float eps,
                                           float* __restrict__ rstd) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= channels) return;
    rstd[c] = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(var[c], eps)));
}
