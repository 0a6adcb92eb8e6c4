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

// x = relu(x) in place: x if x > 0, else +0.
extern "C" __global__ void ffwd_relu_f32(float* __restrict__ x, long n) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] = ffwd_relu(x[i]);
}

// dx = dy where y > 0, else +0 (the ReLU's mask from its output).
extern "C" __global__ void ffwd_relu_backward_f32(const float* __restrict__ y, const float* __restrict__ dy,
                                                  float* __restrict__ dx, long n) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}

// acc = acc + x.
extern "C" __global__ void ffwd_add_f32(float* __restrict__ acc, const float* __restrict__ x, long n) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) acc[i] = __fadd_rn(acc[i], x[i]);
}
