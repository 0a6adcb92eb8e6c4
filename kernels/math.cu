// Elementwise transcendentals (mirrors crates/kernels/src/cpu/math.rs).
#define FFWD_UNARY(name, fn)                                                        \
    extern "C" __global__ void name(const float* __restrict__ x, float* __restrict__ y, long n) { \
        long i = (long)blockIdx.x * blockDim.x + threadIdx.x;                      \
        if (i < n) y[i] = fn(x[i]);                                                 \
    }
FFWD_UNARY(ffwd_exp_f32, ffwd_exp)
FFWD_UNARY(ffwd_log1p_f32, ffwd_log1p)
FFWD_UNARY(ffwd_ln_f32, ffwd_ln)
FFWD_UNARY(ffwd_softplus_f32, ffwd_softplus)
FFWD_UNARY(ffwd_sigmoid_f32, ffwd_sigmoid)
