// Row reductions in the L32 order and length normalisation (mirrors
// crates/kernels/src/cpu/reduce.rs). One warp per row: lane l accumulates
// elements l, l+32, ... sequentially from +0.0, then the warp tree.

FFWD_DEV float ffwd_row_sumsq(const float* row, int d) {
    float acc = 0.0f;
    for (int j = threadIdx.x & 31; j < d; j += 32) acc = __fmaf_rn(row[j], row[j], acc);
    return ffwd_l32_tree(acc);
}

extern "C" __global__ void ffwd_row_sumsq_f32(const float* __restrict__ x, int rows, int d, float* __restrict__ out) {
    int r = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (r >= rows) return;
    float s = ffwd_row_sumsq(x + (long)r * d, d);
    if ((threadIdx.x & 31) == 0) out[r] = s;
}

extern "C" __global__ void ffwd_row_sum_f32(const float* __restrict__ x, int rows, int d, float* __restrict__ out) {
    int r = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (r >= rows) return;
    const float* row = x + (long)r * d;
    float acc = 0.0f;
    for (int j = threadIdx.x & 31; j < d; j += 32) acc = __fadd_rn(acc, row[j]);
    float s = ffwd_l32_tree(acc);
    if ((threadIdx.x & 31) == 0) out[r] = s;
}

// kind: 0 = RMS, 1 = L2, 2 = none.
extern "C" __global__ void ffwd_normalize_rows_f32(const float* __restrict__ x, float* __restrict__ y, int rows, int d,
                                                   int kind, float eps) {
    int r = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (r >= rows) return;
    const float* row = x + (long)r * d;
    float* out = y + (long)r * d;
    float inv = 1.0f;
    if (kind != 2) {
        float ss = ffwd_row_sumsq(row, d);
        float den = kind == 0 ? __fadd_rn(__fsqrt_rn(__fdiv_rn(ss, (float)d)), eps) : __fadd_rn(__fsqrt_rn(ss), eps);
        inv = __fdiv_rn(1.0f, den);
    }
    for (int j = threadIdx.x & 31; j < d; j += 32) out[j] = kind == 2 ? row[j] : __fmul_rn(row[j], inv);
}

// Row standardisation (mirrors CpuBackend::standardize_rows): mu = L32 sum / d,
// centred values, var = L32 sum of squares of them / d, times 1/sqrt(var + eps).
extern "C" __global__ void ffwd_standardize_rows_f32(const float* __restrict__ x, float* __restrict__ y, int rows, int d,
                                                     float eps) {
    int r = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (r >= rows) return;
    const float* row = x + (long)r * d;
    float* out = y + (long)r * d;
    float acc = 0.0f;
    for (int j = threadIdx.x & 31; j < d; j += 32) acc = __fadd_rn(acc, row[j]);
    float mu = __fdiv_rn(ffwd_l32_tree(acc), (float)d);
    float sq = 0.0f;
    for (int j = threadIdx.x & 31; j < d; j += 32) {
        float c = __fsub_rn(row[j], mu);
        sq = __fmaf_rn(c, c, sq);
    }
    float var = __fdiv_rn(ffwd_l32_tree(sq), (float)d);
    float inv = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(var, eps)));
    for (int j = threadIdx.x & 31; j < d; j += 32) out[j] = __fmul_rn(__fsub_rn(row[j], mu), inv);
}

// The length normalisation with each row's sum of squares given (the FF
// forward's goodness of the layer below): the same inv as
// ffwd_normalize_rows_f32 from ss = sumsq[r].
extern "C" __global__ void ffwd_normalize_rows_given_f32(const float* __restrict__ x, const float* __restrict__ sumsq,
                                                         float* __restrict__ y, int rows, int d, int kind, float eps) {
    int r = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (r >= rows) return;
    const float* row = x + (long)r * d;
    float* out = y + (long)r * d;
    float inv = 1.0f;
    if (kind != 2) {
        float ss = sumsq[r];
        float den = kind == 0 ? __fadd_rn(__fsqrt_rn(__fdiv_rn(ss, (float)d)), eps) : __fadd_rn(__fsqrt_rn(ss), eps);
        inv = __fdiv_rn(1.0f, den);
    }
    for (int j = threadIdx.x & 31; j < d; j += 32) out[j] = kind == 2 ? row[j] : __fmul_rn(row[j], inv);
}
