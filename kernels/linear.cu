// The FF layer's backward (mirrors crates/kernels/src/cpu/linear.rs and
// CpuBackend::linear_backward_update): the local gradient through ReLU,
// the bias gradient, and the fused passes that never write dz or dW out.
//
// Spec: dz[i,j] = h[i,j] * (dldg[i] + dldg[i]); dW = xnᵀ·dz (GEMM order);
// db[j] = sum over rows of dz[i,j], sequential from +0.0; then the optimiser
// on every element. In the fused passes, rows with dldg = 0 are left out of
// dW and db (their dz row is zero), as on the CPU.
//
// Peer normalisation (optional): p[c] is added to dz[k, c] of a positive
// row (k < npos), on or off (straight through the ReLU), and those rows
// are kept whatever their dldg; npos = 0 means no peer term (p is then
// never read).

FFWD_DEV float ffwd_local_grad(float h, float g) { return __fmul_rn(h, __fadd_rn(g, g)); }

FFWD_DEV float ffwd_local_grad_peer(float h, float g, int k, int c, const float* peer, int npos) {
    float z = ffwd_local_grad(h, g);
    return k < npos ? __fadd_rn(z, peer[c]) : z;
}

FFWD_DEV bool ffwd_row_kept(const float* dldg, int k, int npos) { return dldg[k] != 0.0f || k < npos; }

extern "C" __global__ void ffwd_local_grad_f32(const float* __restrict__ h, const float* __restrict__ dldg, int rows, int d,
                                               float* __restrict__ dz) {
    long t = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= (long)rows * d) return;
    dz[t] = ffwd_local_grad(h[t], dldg[t / d]);
}

extern "C" __global__ void ffwd_bias_grad_f32(const float* __restrict__ dz, int m, int n, float* __restrict__ db) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= n) return;
    float acc = 0.0f;
    for (int i = 0; i < m; ++i) acc = __fadd_rn(acc, dz[(long)i * n + j]);
    db[j] = acc;
}

// dz computed while the GEMM loads its B operand: element (k, c) of dz.
struct ffwd_local_grad_src {
    const float* __restrict__ h;
    const float* __restrict__ dldg;
    long ld;
    const float* __restrict__ peer;
    int npos;
    FFWD_DEV float at(int k, int c) const { return ffwd_local_grad_peer(h[(long)k * ld + c], dldg[k], k, c, peer, npos); }
    FFWD_DEV bool inner4() const { return ld % 4 == 0 && ((unsigned long long)h & 15ull) == 0; }
    FFWD_DEV bool outer4() const { return false; }
    FFWD_DEV float4 at4_inner(int k, int c) const {
        float4 q = *(const float4*)(h + (long)k * ld + c);
        float g = dldg[k];
        return make_float4(ffwd_local_grad_peer(q.x, g, k, c, peer, npos), ffwd_local_grad_peer(q.y, g, k, c + 1, peer, npos),
                           ffwd_local_grad_peer(q.z, g, k, c + 2, peer, npos), ffwd_local_grad_peer(q.w, g, k, c + 3, peer, npos));
    }
    FFWD_DEV float4 at4_outer(int, int) const { return make_float4(0.0f, 0.0f, 0.0f, 0.0f); }
    // Rows with dL/dG = 0 are left out of dW (their dz row is zero).
    static constexpr bool keeps_all = false;
    FFWD_DEV bool keep(int k) const { return ffwd_row_kept(dldg, k, npos); }
};

// dW = xnᵀ·dz over the kept rows (dz built while the tile loads it), each
// element handed to `out(e, dW[e])` (e = r·dout + c) the moment its fma
// chain ends.
template <int TM, int TN, int BK, class Out>
FFWD_DEV void ffwd_linear_dw(const float* __restrict__ xn, const float* __restrict__ h,
                             const float* __restrict__ dldg, int rows, int din, int dout, const float* __restrict__ peer,
                             int npos, Out out) {
    const int row0 = blockIdx.y * 16 * TM, col0 = blockIdx.x * 16 * TN;
    float acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = 0.0f;
    // A = xnᵀ: element (r, k) = xn[k, r].
    ffwd_gemm_tile<TM, TN, BK>(ffwd_strided{xn, 1, din}, ffwd_local_grad_src{h, dldg, dout, peer, npos}, din, dout, rows, row0,
                               col0, acc);
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        int r = ffwd_tile_row(row0, i);
        if (r >= din) continue;
#pragma unroll
        for (int j = 0; j < TN; ++j) {
            int c = ffwd_tile_col(col0, j);
            if (c >= dout) continue;
            out((long)r * dout + c, acc[i][j]);
        }
    }
}

// W (din × dout, row-major) and its state a, b take one optimiser step.
struct ffwd_dw_update {
    float* __restrict__ w;
    float* __restrict__ a;
    float* __restrict__ b;
    ffwd_optim s;
    FFWD_DEV void operator()(long e, float g) const { ffwd_optim_one(s, w + e, g, a + e, b + e); }
};

// dW written out (the unfused spec's values).
struct ffwd_dw_store {
    float* __restrict__ dw;
    FFWD_DEV void operator()(long e, float g) const { dw[e] = g; }
};

#define FFWD_BACKWARD_UPDATE_ENTRY(suffix, TM, TN, BLOCKS)                                                         \
    extern "C" __global__ void __launch_bounds__(256, BLOCKS) ffwd_linear_backward_update##suffix##_f32(               \
        const float* __restrict__ xn, const float* __restrict__ h, const float* __restrict__ dldg, int rows, int din,  \
        int dout, const float* __restrict__ peer, int npos, float* __restrict__ w, float* __restrict__ a,              \
        float* __restrict__ b, ffwd_optim s) {                                                                         \
        ffwd_linear_dw<TM, TN, FFWD_TILE_K>(xn, h, dldg, rows, din, dout, peer, npos, ffwd_dw_update{w, a, b, s});     \
    }
FFWD_TILES(FFWD_BACKWARD_UPDATE_ENTRY)

#define FFWD_LINEAR_GRADS_ENTRY(suffix, TM, TN, BLOCKS)                                                            \
    extern "C" __global__ void __launch_bounds__(256, BLOCKS) ffwd_linear_grads##suffix##_f32(                         \
        const float* __restrict__ xn, const float* __restrict__ h, const float* __restrict__ dldg, int rows, int din,  \
        int dout, const float* __restrict__ peer, int npos, float* __restrict__ dw) {                                  \
        ffwd_linear_dw<TM, TN, FFWD_TILE_K>(xn, h, dldg, rows, din, dout, peer, npos, ffwd_dw_store{dw});              \
    }
FFWD_TILES(FFWD_LINEAR_GRADS_ENTRY)

// db[j]: the sum over the kept rows, in row order from +0.0, of the local
// gradient h[i, j] * (2 dL/dG_i) (plus the peer term).
FFWD_DEV float ffwd_bias_sum_kept(const float* __restrict__ h, const float* __restrict__ dldg, int rows, int dout,
                                  const float* __restrict__ peer, int npos, int j) {
    float acc = 0.0f;
    for (int i = 0; i < rows; ++i)
        if (ffwd_row_kept(dldg, i, npos))
            acc = __fadd_rn(acc, ffwd_local_grad_peer(h[(long)i * dout + j], dldg[i], i, j, peer, npos));
    return acc;
}

// The bias gradient of the kept rows, written out.
extern "C" __global__ void ffwd_bias_grad_kept_f32(const float* __restrict__ h, const float* __restrict__ dldg, int rows,
                                                   int dout, const float* __restrict__ peer, int npos,
                                                   float* __restrict__ db) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= dout) return;
    db[j] = ffwd_bias_sum_kept(h, dldg, rows, dout, peer, npos, j);
}

// The bias: db[j] summed from dz on the fly, then its optimiser step.
extern "C" __global__ void ffwd_bias_backward_update_f32(const float* __restrict__ h, const float* __restrict__ dldg,
                                                         int rows, int dout, const float* __restrict__ peer, int npos,
                                                         float* __restrict__ bias, float* __restrict__ a,
                                                         float* __restrict__ b, ffwd_optim s) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= dout) return;
    ffwd_optim_one(s, bias + j, ffwd_bias_sum_kept(h, dldg, rows, dout, peer, npos, j), a + j, b + j);
}

// Peer normalisation's step (mirrors LinearOps::peer_grad). First the
// running means: one thread per unit sums its column over the n positive
// rows in row order from +0.0.
extern "C" __global__ void ffwd_peer_means_f32(const float* __restrict__ h, int n, int d, float mu, float omu,
                                               float* __restrict__ means) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= d) return;
    float s = 0.0f;
    for (int i = 0; i < n; ++i) s = __fadd_rn(s, h[(long)i * d + j]);
    float mean = __fdiv_rn(s, (float)n);
    means[j] = __fadd_rn(__fmul_rn(mu, means[j]), __fmul_rn(omu, mean));
}

// Then p[j] = (lambda * (m_j - mbar)) * w: each block's first warp sums the
// means in the L32 order (every block the same bits).
extern "C" __global__ void ffwd_peer_grad_f32(const float* __restrict__ means, int d, float lambda, float w,
                                              float* __restrict__ p) {
    __shared__ float mbar;
    if (threadIdx.x < 32) {
        float acc = 0.0f;
        for (int j = threadIdx.x; j < d; j += 32) acc = __fadd_rn(acc, means[j]);
        float s = ffwd_l32_tree(acc);
        if (threadIdx.x == 0) mbar = __fdiv_rn(s, (float)d);
    }
    __syncthreads();
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= d) return;
    p[j] = __fmul_rn(__fmul_rn(lambda, __fsub_rn(means[j], mbar)), w);
}
