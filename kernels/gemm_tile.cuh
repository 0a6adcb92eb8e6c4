// The GEMM tile walk shared by gemm.cu and linear.cu (mirrors
// crates/kernels/src/cpu/gemm.rs): one 64×64 tile of C = A·B per block of
// 256 threads, 4×4 outputs per thread, k tiles of 16 walked in order and k
// ascending inside a tile, so every output is one fma chain over
// k = 0..K-1 continuing from the value its accumulator starts with. No
// split-K, no atomics, no tensor cores. Operands come through loaders
// (`at(row, col)`), so a transposed view or an operand computed on the fly
// (the FF local gradient) costs no extra pass over memory.
#pragma once
#define FFWD_BM 64
#define FFWD_BN 64
#define FFWD_BK 16

// A strided view: element (r, c) at p[r·rs + c·cs].
struct ffwd_strided {
    const float* __restrict__ p;
    long rs, cs;
    FFWD_DEV float at(int r, int c) const { return p[(long)r * rs + (long)c * cs]; }
};

// Run the k loop of the block's tile into acc (initialised by the caller).
template <class LA, class LB>
FFWD_DEV void ffwd_gemm_tile(const LA& a, const LB& b, int M, int N, int K, int row0, int col0, float acc[4][4]) {
    __shared__ float As[FFWD_BK][FFWD_BM];
    __shared__ float Bs[FFWD_BK][FFWD_BN];
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    for (int k0 = 0; k0 < K; k0 += FFWD_BK) {
        for (int t = threadIdx.x; t < FFWD_BM * FFWD_BK; t += 256) {
            int kk = t / FFWD_BM, mm = t % FFWD_BM;
            int r = row0 + mm, k = k0 + kk;
            As[kk][mm] = (r < M && k < K) ? a.at(r, k) : 0.0f;
        }
        for (int t = threadIdx.x; t < FFWD_BN * FFWD_BK; t += 256) {
            int kk = t / FFWD_BN, nn = t % FFWD_BN;
            int c = col0 + nn, k = k0 + kk;
            Bs[kk][nn] = (c < N && k < K) ? b.at(k, c) : 0.0f;
        }
        __syncthreads();
        const int kmax = min(FFWD_BK, K - k0);
        for (int kk = 0; kk < kmax; ++kk) {
            float av[4], bv[4];
            for (int i = 0; i < 4; ++i) av[i] = As[kk][ty * 4 + i];
            for (int j = 0; j < 4; ++j) bv[j] = Bs[kk][tx * 4 + j];
            for (int i = 0; i < 4; ++i)
                for (int j = 0; j < 4; ++j) acc[i][j] = __fmaf_rn(av[i], bv[j], acc[i][j]);
        }
        __syncthreads();
    }
}

// The output (r, c) a thread's acc[i][j] holds.
FFWD_DEV int ffwd_tile_row(int row0, int i) { return row0 + (int)(threadIdx.x / 16) * 4 + i; }
FFWD_DEV int ffwd_tile_col(int col0, int j) { return col0 + (int)(threadIdx.x % 16) * 4 + j; }
