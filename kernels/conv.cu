// 3x3 convolution (pad 1, stride 1, no bias) on CNHW blocks as im2col + the
// GEMM (mirrors crates/kernels/src/cpu/conv.rs). On the device the whole
// batch is one chunk: the CPU's chunking never changes a bit (the forward
// and dX write disjoint columns per chunk, dW continues each chain).

// col[(ci*9 + ky*3 + kx), b*hw + oy*w + ox] = x[ci, b, oy+ky-1, ox+kx-1], 0 outside.
extern "C" __global__ void ffwd_im2col_f32(const float* __restrict__ x, int c, int n, int h, int w,
                                           float* __restrict__ col) {
    long hw = (long)h * w, cols = (long)n * hw;
    long t = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= (long)c * 9 * cols) return;
    int r = (int)(t / cols);
    long j = t % cols;
    int ci = r / 9, ky = (r % 9) / 3, kx = r % 3;
    int b = (int)(j / hw), p = (int)(j % hw);
    int iy = p / w + ky - 1, ix = p % w + kx - 1;
    col[t] = (iy < 0 || ix < 0 || iy >= h || ix >= w) ? 0.0f : x[((long)ci * n + b) * hw + (long)iy * w + ix];
}

// dx[ci, b, iy, ix] = sum over (ky, kx) ascending, where (oy, ox) =
// (iy-ky+1, ix-kx+1) lies inside the image, of dcol[(ci,ky,kx), (b,oy,ox)],
// from +0.0 with plain adds.
extern "C" __global__ void ffwd_col2im_f32(const float* __restrict__ dcol, int c, int n, int h, int w,
                                           float* __restrict__ dx) {
    long hw = (long)h * w, cols = (long)n * hw;
    long t = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= (long)c * cols) return;
    int ci = (int)(t / cols);
    long j = t % cols;
    int b = (int)(j / hw), p = (int)(j % hw);
    int iy = p / w, ix = p % w;
    float acc = 0.0f;
    for (int ky = 0; ky < 3; ++ky) {
        int oy = iy + 1 - ky;
        if (oy < 0 || oy >= h) continue;
        for (int kx = 0; kx < 3; ++kx) {
            int ox = ix + 1 - kx;
            if (ox < 0 || ox >= w) continue;
            acc = __fadd_rn(acc, dcol[(long)(ci * 9 + ky * 3 + kx) * cols + (long)b * hw + (long)oy * w + ox]);
        }
    }
    dx[t] = acc;
}
