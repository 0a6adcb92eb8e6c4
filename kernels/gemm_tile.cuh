// The GEMM tile walk shared by gemm.cu and linear.cu (mirrors
// crates/kernels/src/cpu/gemm.rs). A block of 256 threads (16 × 16) owns a
// BM × BN tile of C = A·B; thread (ty, tx) owns TM × TN outputs: rows
// ty·4 + (i mod 4) + 64·(i div 4), columns tx·4 + (j mod 4) + 64·(j div 4).
// Three shapes, all with k tiles of 16: 128 × 128 (TM = TN = 8) for large
// products, 128 × 64 (TM = 8, TN = 4) and 64 × 64 (TM = TN = 4) for grids
// that would otherwise leave multiprocessors idle.
//
// The order of operations is the specification's whatever the shape: k
// tiles are walked in order and k ascends inside a tile, so every output is
// one fma chain over the kept k of 0..K-1 (B's loader may leave some out)
// continuing from the value its accumulator starts with. No split-K, no
// atomics, no tensor cores.
//
// Operands come through loaders, so a transposed view or an operand
// computed on the fly (the FF local gradient) costs no extra pass over
// memory. A loader gives element (r, c) with `at`, and says whether four
// consecutive elements along c (`inner4`) or along r (`outer4`) can be read
// as one aligned float4; each thread then moves four values per k tile with
// one vector load where the layout and the bounds allow, else four scalar
// loads.
#pragma once

// The tile shapes the GEMM-based kernels are built in, one entry point per
// shape: X(suffix, TM, TN, blocks per multiprocessor). The host picks an
// entry by its suffix (crates/kernels/src/cuda/gemm.rs, Tile). Every shape
// takes k tiles of FFWD_TILE_K; the 128-row ones are held to 128 registers
// so that two blocks share a multiprocessor.
#define FFWD_TILE_K 16
#define FFWD_TILES(X) X(, 4, 4, 4) X(_128x64, 8, 4, 2) X(_128, 8, 8, 2)

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
    static constexpr bool keeps_all = true;
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

// One thread's share of a k tile: G groups of four values of the R × C
// block at (r0, c0) of an operand with `rows` × `cols` elements (A: the
// BM × BK block at (row0, k0); B: the BK × BN block at (k0, col0)). Group
// g of thread t is the (t + 256·g)-th group of four in the block, counted
// along the operand's contiguous index (`along`: columns, i.e. k for A and
// c for B) when its loader reads four values along it, else down the rows.
template <int R, int C, int G, class L>
FFWD_DEV void ffwd_load_block(const L& x, bool along, bool vec, int rows, int cols, int r0, int c0, float v[G][4]) {
#pragma unroll
    for (int g = 0; g < G; ++g) {
        const int q = threadIdx.x + 256 * g;
        if (along) ffwd_load4(x, r0 + q / (C / 4), c0 + (q % (C / 4)) * 4, true, vec, rows, cols, v[g]);
        else ffwd_load4(x, r0 + (q % (R / 4)) * 4, c0 + q / (R / 4), false, vec, rows, cols, v[g]);
    }
}

// A's share into the shared tile, stored k-major: As[k][r].
template <int BM, int BK, int G, int LD>
FFWD_DEV void ffwd_store_a(float (*As)[LD], bool along, const float v[G][4]) {
#pragma unroll
    for (int g = 0; g < G; ++g) {
        const int q = threadIdx.x + 256 * g;
        if (along) {
            const int r = q / (BK / 4), kq = (q % (BK / 4)) * 4;
#pragma unroll
            for (int i = 0; i < 4; ++i) As[kq + i][r] = v[g][i];
        } else {
            *(float4*)&As[q / (BM / 4)][(q % (BM / 4)) * 4] = make_float4(v[g][0], v[g][1], v[g][2], v[g][3]);
        }
    }
}

// B's share into the shared tile: Bs[k][c].
template <int BN, int BK, int G, int LD>
FFWD_DEV void ffwd_store_b(float (*Bs)[LD], bool along, const float v[G][4]) {
#pragma unroll
    for (int g = 0; g < G; ++g) {
        const int q = threadIdx.x + 256 * g;
        if (along) {
            *(float4*)&Bs[q / (BN / 4)][(q % (BN / 4)) * 4] = make_float4(v[g][0], v[g][1], v[g][2], v[g][3]);
        } else {
            const int c = q / (BK / 4), kq = (q % (BK / 4)) * 4;
#pragma unroll
            for (int i = 0; i < 4; ++i) Bs[kq + i][c] = v[g][i];
        }
    }
}

// Which k of the tile at k0 take part: bit kk for k0 + kk (below K, kept by
// B's loader). Uniform across the block.
template <int BK, class LB>
FFWD_DEV unsigned ffwd_keep_mask(const LB& b, int k0, int K) {
    unsigned m = 0;
#pragma unroll
    for (int kk = 0; kk < BK; ++kk)
        if (k0 + kk < K && (LB::keeps_all || b.keep(k0 + kk))) m |= 1u << kk;
    return m;
}

// One k of the tile: every output's chain takes its next fma.
template <int TM, int TN>
FFWD_DEV void ffwd_tile_step(const float* As, const float* Bs, float acc[TM][TN]) {
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    float av[TM], bv[TN];
#pragma unroll
    for (int h = 0; h < TM / 4; ++h) {
        float4 q = *(const float4*)&As[ty * 4 + 64 * h];
        av[4 * h] = q.x, av[4 * h + 1] = q.y, av[4 * h + 2] = q.z, av[4 * h + 3] = q.w;
    }
#pragma unroll
    for (int h = 0; h < TN / 4; ++h) {
        float4 q = *(const float4*)&Bs[tx * 4 + 64 * h];
        bv[4 * h] = q.x, bv[4 * h + 1] = q.y, bv[4 * h + 2] = q.z, bv[4 * h + 3] = q.w;
    }
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = __fmaf_rn(av[i], bv[j], acc[i][j]);
}

// Run the k loop of the block's tile into acc (initialised by the caller).
// The shared tiles are double-buffered: the next k tile is read from global
// memory into registers while the current one is multiplied, then stored to
// the other buffer, so each k tile costs one barrier.
template <int TM, int TN, int BK, class LA, class LB>
FFWD_DEV void ffwd_gemm_tile(const LA& a, const LB& b, int M, int N, int K, int row0, int col0, float acc[TM][TN]) {
    constexpr int BM = 16 * TM, BN = 16 * TN, GA = BM * BK / 1024, GB = BN * BK / 1024;
    static_assert(GA >= 1 && GA * 1024 == BM * BK && GB >= 1 && GB * 1024 == BN * BK && BK < 32,
                  "each thread moves whole groups of four values of A and of B per k tile");
    // Rows padded by four floats: the transposed stores spread over banks,
    // the float4 reads stay aligned.
    constexpr int LDA = BM + 4, LDB = BN + 4;
    __shared__ __align__(16) float As[2][BK][LDA];
    __shared__ __align__(16) float Bs[2][BK][LDB];
    if (K <= 0) return;
    // A (r, k): four consecutive k of one row when k is the contiguous index,
    // else four consecutive rows of one k. B (k, c): four consecutive columns
    // of one k when c is contiguous, else four consecutive k of one column.
    const bool a_k4 = a.inner4() || !a.outer4();
    const bool a_vec = a.inner4() || a.outer4();
    const bool b_c4 = b.inner4() || !b.outer4();
    const bool b_vec = b.inner4() || b.outer4();
    float va[GA][4], vb[GB][4];
    ffwd_load_block<BM, BK, GA>(a, a_k4, a_vec, M, K, row0, 0, va);
    ffwd_load_block<BK, BN, GB>(b, b_c4, b_vec, K, N, 0, col0, vb);
    unsigned keep = ffwd_keep_mask<BK>(b, 0, K);
    ffwd_store_a<BM, BK, GA>(As[0], a_k4, va);
    ffwd_store_b<BN, BK, GB>(Bs[0], b_c4, vb);
    __syncthreads();
    int buf = 0;
    for (int k0 = 0; k0 < K; k0 += BK) {
        const bool next = k0 + BK < K;
        unsigned keep_next = 0;
        if (next) {
            ffwd_load_block<BM, BK, GA>(a, a_k4, a_vec, M, K, row0, k0 + BK, va);
            ffwd_load_block<BK, BN, GB>(b, b_c4, b_vec, K, N, k0 + BK, col0, vb);
            keep_next = ffwd_keep_mask<BK>(b, k0 + BK, K);
        }
        // A k that is past K or that B's loader leaves out (an FF row with
        // dL/dG = 0) is skipped by the whole block: its fmas would add zeros.
        if (keep == (1u << BK) - 1u) {
#pragma unroll
            for (int kk = 0; kk < BK; ++kk) ffwd_tile_step<TM, TN>(As[buf][kk], Bs[buf][kk], acc);
        } else {
            for (int kk = 0; kk < BK; ++kk)
                if (keep >> kk & 1u) ffwd_tile_step<TM, TN>(As[buf][kk], Bs[buf][kk], acc);
        }
        if (next) {
            ffwd_store_a<BM, BK, GA>(As[buf ^ 1], a_k4, va);
            ffwd_store_b<BN, BK, GB>(Bs[buf ^ 1], b_c4, vb);
        }
        __syncthreads();
        buf ^= 1;
        keep = keep_next;
    }
}
