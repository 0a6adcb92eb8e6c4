// The GEMM tile walk shared by gemm.cu and linear.cu (mirrors
// crates/kernels/src/cpu/gemm.rs). A block of 256 threads (16 × 16) owns a
// BM × BN tile of C = A·B; thread (ty, tx) owns TM × TN outputs: rows
// ty·4 + (i mod 4) + 64·(i div 4), columns tx·4 + (j mod 4) + 64·(j div 4).
// Two shapes: 64 × 64 (TM = TN = 4, k tiles of 16) for grids that would
// otherwise be too small to fill the device, 128 × 128 (TM = TN = 8, k
// tiles of 8) for large products.
//
// The order of operations is the specification's whatever the shape: k
// tiles are walked in order and k ascends inside a tile, so every output is
// one fma chain over the kept k of 0..K-1 (B's loader may leave some out)
// continuing from the value its accumulator starts with. No split-K, no atomics, no tensor cores.
//
// Operands come through loaders, so a transposed view or an operand
// computed on the fly (the FF local gradient) costs no extra pass over
// memory. A loader gives element (r, c) with `at`, and says whether four
// consecutive elements along c (`inner4`) or along r (`outer4`) can be read
// as one aligned float4; each thread then moves four values per k tile with
// one vector load where the layout and the bounds allow, else four scalar
// loads.
#pragma once

// A strided view: element (r, c) at p[r·rs + c·cs].
struct ffwd_strided {
    const float* __restrict__ p;
    long rs, cs;
    FFWD_DEV float at(int r, int c) const { return p[(long)r * rs + (long)c * cs]; }
    FFWD_DEV bool aligned() const { return ((unsigned long long)p & 15ull) == 0; }
    // (r, c..c+3) as one float4: unit column stride, rows 16-byte aligned.
    FFWD_DEV bool inner4() const { return cs == 1 && rs % 4 == 0 && aligned(); }
    FFWD_DEV bool outer4() const { return rs == 1 && cs % 4 == 0 && aligned(); }
    FFWD_DEV float4 at4_inner(int r, int c) const { return *(const float4*)(p + (long)r * rs + c); }
    FFWD_DEV float4 at4_outer(int r, int c) const { return *(const float4*)(p + (long)c * cs + r); }
    // Every k takes part in the product (see ffwd_local_grad_src::keep).
    FFWD_DEV bool keep(int) const { return true; }
};

// Four values of operand `x` starting at (r, c), along c (`inner`) or along
// r: one float4 when allowed and in bounds, else guarded scalar loads (zero
// outside rows × cols).
template <class L>
FFWD_DEV void ffwd_load4(const L& x, int r, int c, bool inner, bool vec, int rows, int cols, float v[4]) {
    if (inner) {
        if (vec && r < rows && c + 3 < cols && (c & 3) == 0) {
            float4 q = x.at4_inner(r, c);
            v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
        } else {
            for (int i = 0; i < 4; ++i) v[i] = (r < rows && c + i < cols) ? x.at(r, c + i) : 0.0f;
        }
    } else {
        if (vec && r + 3 < rows && c < cols && (r & 3) == 0) {
            float4 q = x.at4_outer(r, c);
            v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
        } else {
            for (int i = 0; i < 4; ++i) v[i] = (r + i < rows && c < cols) ? x.at(r + i, c) : 0.0f;
        }
    }
}

// The output (r, c) a thread's acc[i][j] holds.
FFWD_DEV int ffwd_tile_row(int row0, int i) { return row0 + (int)(threadIdx.x / 16) * 4 + (i & 3) + 64 * (i >> 2); }
FFWD_DEV int ffwd_tile_col(int col0, int j) { return col0 + (int)(threadIdx.x % 16) * 4 + (j & 3) + 64 * (j >> 2); }

// Run the k loop of the block's tile into acc (initialised by the caller).
template <int TM, int TN, int BK, class LA, class LB>
FFWD_DEV void ffwd_gemm_tile(const LA& a, const LB& b, int M, int N, int K, int row0, int col0, float acc[TM][TN]) {
    constexpr int BM = 16 * TM, BN = 16 * TN;
    static_assert(BM * BK == 1024 && BN * BK == 1024, "each thread moves 4 values of A and 4 of B per k tile");
    __shared__ __align__(16) float As[BK][BM];
    __shared__ __align__(16) float Bs[BK][BN];
    const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    // A (r, k): four consecutive k of one row when k is the contiguous index,
    // else four consecutive rows of one k. B (k, c): four consecutive columns
    // of one k when c is contiguous, else four consecutive k of one column.
    const bool a_k4 = a.inner4() || !a.outer4();
    const bool a_vec = a.inner4() || a.outer4();
    const bool b_c4 = b.inner4() || !b.outer4();
    const bool b_vec = b.inner4() || b.outer4();
    for (int k0 = 0; k0 < K; k0 += BK) {
        float v[4];
        if (a_k4) {
            const int r = tid / (BK / 4), kq = (tid % (BK / 4)) * 4;
            ffwd_load4(a, row0 + r, k0 + kq, true, a_vec, M, K, v);
            for (int i = 0; i < 4; ++i) As[kq + i][r] = v[i];
        } else {
            const int k = tid / (BM / 4), rq = (tid % (BM / 4)) * 4;
            ffwd_load4(a, row0 + rq, k0 + k, false, a_vec, M, K, v);
            for (int i = 0; i < 4; ++i) As[k][rq + i] = v[i];
        }
        if (b_c4) {
            const int k = tid / (BN / 4), cq = (tid % (BN / 4)) * 4;
            ffwd_load4(b, k0 + k, col0 + cq, true, b_vec, K, N, v);
            for (int i = 0; i < 4; ++i) Bs[k][cq + i] = v[i];
        } else {
            const int c = tid / (BK / 4), kq = (tid % (BK / 4)) * 4;
            ffwd_load4(b, k0 + kq, col0 + c, false, b_vec, K, N, v);
            for (int i = 0; i < 4; ++i) Bs[kq + i][c] = v[i];
        }
        __syncthreads();
        const int kmax = min(BK, K - k0);
        for (int kk = 0; kk < kmax; ++kk) {
            // A k that B's loader leaves out (an FF row with dL/dG = 0) is
            // skipped by the whole block: its fmas would add zeros.
            if (!b.keep(k0 + kk)) continue;
            float av[TM], bv[TN];
            for (int h = 0; h < TM / 4; ++h) {
                float4 q = *(const float4*)&As[kk][ty * 4 + 64 * h];
                av[4 * h] = q.x, av[4 * h + 1] = q.y, av[4 * h + 2] = q.z, av[4 * h + 3] = q.w;
            }
            for (int h = 0; h < TN / 4; ++h) {
                float4 q = *(const float4*)&Bs[kk][tx * 4 + 64 * h];
                bv[4 * h] = q.x, bv[4 * h + 1] = q.y, bv[4 * h + 2] = q.z, bv[4 * h + 3] = q.w;
            }
            for (int i = 0; i < TM; ++i)
                for (int j = 0; j < TN; ++j) acc[i][j] = __fmaf_rn(av[i], bv[j], acc[i][j]);
        }
        __syncthreads();
    }
}
