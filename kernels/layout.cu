// Copies between layouts (mirrors crates/kernels/src/cpu/layout.rs): column
// blocks of row-major matrices and CNHW blocks <-> per-image rows. One
// thread per value copied; no arithmetic.

// dst[r, off + c] = src[r, c] for c < src_w.
extern "C" __global__ void ffwd_put_cols_f32(const float* __restrict__ src, long rows, int src_w, float* __restrict__ dst,
                                             int dst_w, int off) {
    long t = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= rows * src_w) return;
    long r = t / src_w, c = t % src_w;
    dst[r * dst_w + off + c] = src[t];
}

// dst[r, c] = src[r, off + c] for c < w.
extern "C" __global__ void ffwd_take_cols_f32(const float* __restrict__ src, long rows, int src_w, int off, int w,
                                              float* __restrict__ dst) {
    long t = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= rows * w) return;
    long r = t / w, c = t % w;
    dst[t] = src[r * src_w + off + c];
}

// CNHW (c, b, p) at (c·n + b)·hw + p  <->  rows (b, c, p) at b·C·hw + c·hw + p.
// One thread per value of the rows form; `to_rows` picks the direction.
extern "C" __global__ void ffwd_cnhw_rows_f32(const float* __restrict__ src, int channels, int images, int hw,
                                              int to_rows, float* __restrict__ dst) {
    long t = (long)blockIdx.x * blockDim.x + threadIdx.x;
    long per = (long)channels * hw;
    if (t >= per * images) return;
    long b = t / per, r = t % per;
    long c = r / hw, p = r % hw;
    long cnhw = (c * images + b) * hw + p;
    if (to_rows)
        dst[t] = src[cnhw];
    else
        dst[cnhw] = src[t];
}
