// Optimiser updates (mirrors crates/kernels/src/cpu/optim.rs). The scalars
// (1 - beta, bias corrections, decay) are computed once on the host and
// passed in, so both sides use the same f32 values.

extern "C" __global__ void ffwd_adam_f32(float* __restrict__ w, const float* __restrict__ g, float* __restrict__ m,
                                         float* __restrict__ v, long n, float lr, float b1, float b2, float omb1,
                                         float omb2, float bc1, float bc2, float eps, float wd, float decay,
                                         int decoupled) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float gi = g[i];
    float p = w[i];
    if (wd != 0.0f) {
        if (decoupled) p = __fmul_rn(p, decay);
        else gi = __fmaf_rn(wd, p, gi);
    }
    float mi = __fmaf_rn(b1, m[i], __fmul_rn(omb1, gi));
    float vi = __fmaf_rn(b2, v[i], __fmul_rn(__fmul_rn(omb2, gi), gi));
    float mh = __fdiv_rn(mi, bc1);
    float vh = __fdiv_rn(vi, bc2);
    w[i] = __fsub_rn(p, __fmul_rn(lr, __fdiv_rn(mh, __fadd_rn(__fsqrt_rn(vh), eps))));
    m[i] = mi;
    v[i] = vi;
}

extern "C" __global__ void ffwd_sgd_f32(float* __restrict__ w, const float* __restrict__ g, float* __restrict__ buf, long n,
                                        float lr, float momentum, float wd, int nesterov) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float gi = g[i];
    if (wd != 0.0f) gi = __fmaf_rn(wd, w[i], gi);
    if (momentum != 0.0f) {
        float b = __fmaf_rn(momentum, buf[i], gi);
        buf[i] = b;
        gi = nesterov ? __fmaf_rn(momentum, b, gi) : b;
    }
    w[i] = __fsub_rn(w[i], __fmul_rn(lr, gi));
}
