// Local gradient through ReLU and the bias gradient (mirrors
// crates/kernels/src/cpu/linear.rs).

// dz[i,j] = h[i,j] * (dldg[i] + dldg[i])
extern "C" __global__ void ffwd_local_grad_f32(const float* __restrict__ h, const float* __restrict__ dldg, int rows, int d,
                                               float* __restrict__ dz) {
    long t = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= (long)rows * d) return;
    int i = (int)(t / d);
    float c = __fadd_rn(dldg[i], dldg[i]);
    dz[t] = __fmul_rn(h[t], c);
}

// db[j] = sum over rows i = 0..m-1 of dz[i,j], sequential from +0.0.
extern "C" __global__ void ffwd_bias_grad_f32(const float* __restrict__ dz, int m, int n, float* __restrict__ db) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= n) return;
    float acc = 0.0f;
    for (int i = 0; i < m; ++i) acc = __fadd_rn(acc, dz[(long)i * n + j]);
    db[j] = acc;
}
