// 2x resampling of CNHW blocks (mirrors crates/kernels/src/cpu/pool.rs):
// 2x2 max-pool (stride 2, odd sides floored) and nearest 2x upsampling,
// forward and backward. One thread per output (forward) or per input
// (backward); nothing is reduced across threads.

// One thread per pooled output of P = planes planes of h x w inputs. The
// window is taken in the order (0,0), (0,1), (1,0), (1,1); a later value
// wins only when it is strictly greater.
extern "C" __global__ void ffwd_maxpool2_forward_f32(const float* __restrict__ x, int planes, int h, int w,
                                                     float* __restrict__ y, unsigned char* __restrict__ idx) {
    int ho = h / 2, wo = w / 2;
    long t = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= (long)planes * ho * wo) return;
    long p = t / (ho * wo);
    int o = (int)(t % (ho * wo));
    int oy = o / wo, ox = o % wo;
    const float* xp = x + p * h * w;
    int base = 2 * oy * w + 2 * ox;
    float cand[4] = {xp[base], xp[base + 1], xp[base + w], xp[base + w + 1]};
    int best = 0;
    for (int k = 1; k < 4; ++k)
        if (cand[k] > cand[best]) best = k;
    y[t] = cand[best];
    idx[t] = (unsigned char)best;
}

// Input element t's share of the pool's gradient: the gradient of the
// output whose recorded position is t, else +0.0 (also for the dropped last
// row or column of an odd side).
__device__ __forceinline__ float unpool_at(const float* __restrict__ dy, const unsigned char* __restrict__ idx,
                                           long t, int h, int w) {
    int ho = h / 2, wo = w / 2;
    long p = t / (h * w);
    int e = (int)(t % (h * w));
    int y = e / w, xx = e % w;
    if (y >= 2 * ho || xx >= 2 * wo) return 0.0f;
    long o = p * ho * wo + (y / 2) * wo + xx / 2;
    return (int)idx[o] == (y % 2) * 2 + (xx % 2) ? dy[o] : 0.0f;
}

// One thread per input element: the gradient of the output whose recorded
// position is this element, else +0.0.
extern "C" __global__ void ffwd_maxpool2_backward_f32(const float* __restrict__ dy, const unsigned char* __restrict__ idx,
                                                      int planes, int h, int w, float* __restrict__ dx) {
    long t = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= (long)planes * h * w) return;
    dx[t] = unpool_at(dy, idx, t, h, w);
}

// One thread per input element: the gradient through the ReLU before the
// pool and the pool, in one pass: the output's gradient where the pool
// recorded this element and the ReLU's output there is > 0, else +0.0 (the
// same bits as ffwd_maxpool2_backward_f32 followed by
// ffwd_relu_backward_f32). At the recorded element the ReLU's output is
// the pool's output y, which is what is read.
extern "C" __global__ void ffwd_maxpool2_relu_backward_f32(const float* __restrict__ dy,
                                                           const unsigned char* __restrict__ idx,
                                                           const float* __restrict__ y, int planes, int h, int w,
                                                           float* __restrict__ dx) {
    long t = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= (long)planes * h * w) return;
    int ho = h / 2, wo = w / 2;
    long p = t / (h * w);
    int e = (int)(t % (h * w));
    int iy = e / w, ix = e % w;
    long o = p * ho * wo + (iy / 2) * wo + ix / 2;
    bool inside = iy < 2 * ho && ix < 2 * wo;
    dx[t] = inside && y[o] > 0.0f ? unpool_at(dy, idx, t, h, w) : 0.0f;
}

// Output (2y + a, 2x + b) copies input (y, x).
extern "C" __global__ void ffwd_upsample2_forward_f32(const float* __restrict__ x, int planes, int h, int w,
                                                      float* __restrict__ y) {
    long t = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= (long)planes * 4 * h * w) return;
    long p = t / (4 * h * w);
    int e = (int)(t % (4 * h * w));
    int oy = e / (2 * w), ox = e % (2 * w);
    y[t] = x[p * h * w + (oy / 2) * w + ox / 2];
}

// dx(y, x) = ((g(0,0) + g(0,1)) + g(1,0)) + g(1,1) over its four outputs.
extern "C" __global__ void ffwd_upsample2_backward_f32(const float* __restrict__ dy, int planes, int h, int w,
                                                       float* __restrict__ dx) {
    long t = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= (long)planes * h * w) return;
    long p = t / (h * w);
    int e = (int)(t % (h * w));
    int y = e / w, xx = e % w;
    const float* g = dy + p * 4 * h * w;
    long r0 = (long)(2 * y) * 2 * w + 2 * xx, r1 = r0 + 2 * w;
    float s = g[r0];
    s = __fadd_rn(s, g[r0 + 1]);
    s = __fadd_rn(s, g[r1]);
    s = __fadd_rn(s, g[r1 + 1]);
    dx[t] = s;
}
