// Optimiser updates over whole tensors (mirrors crates/kernels/src/cpu/optim.rs);
// the per-element arithmetic is in optim.cuh.

extern "C" __global__ void ffwd_optim_f32(float* __restrict__ w, const float* __restrict__ g, float* __restrict__ a,
                                          float* __restrict__ b, long n, ffwd_optim s) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    ffwd_optim_one(s, w + i, g[i], a + i, b + i);
}
