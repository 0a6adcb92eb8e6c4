// GEMM, C = epilogue(A·B), mirrors crates/kernels/src/cpu/gemm.rs (the tile
// walk and its order are in gemm_tile.cuh). Operands are strided views
// (a_rs, a_cs), (b_rs, b_cs), so transposes are free.
// epi: 0 none, 1 bias, 2 bias + ReLU, 3 accumulate (each chain starts from
// the value already in C, so C += A·B continues a split reduction).
// Three entry points, one per tile shape (64 × 64, 128 × 64 and 128 × 128,
// rows × columns of C); the host picks by grid size. All give the same bits.

template <int TM, int TN, int BK>
FFWD_DEV void ffwd_gemm(const float* __restrict__ A, long a_rs, long a_cs, const float* __restrict__ B, long b_rs,
                        long b_cs, float* __restrict__ C, long ldc, int M, int N, int K,
                        const float* __restrict__ bias, int epi) {
    const int row0 = blockIdx.y * 16 * TM, col0 = blockIdx.x * 16 * TN;
    float acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) {
            int r = ffwd_tile_row(row0, i), c = ffwd_tile_col(col0, j);
            acc[i][j] = (epi == 3 && r < M && c < N) ? C[(long)r * ldc + c] : 0.0f;
        }
    ffwd_gemm_tile<TM, TN, BK>(ffwd_strided{A, a_rs, a_cs}, ffwd_strided{B, b_rs, b_cs}, M, N, K, row0, col0, acc);
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        int r = ffwd_tile_row(row0, i);
        if (r >= M) continue;
#pragma unroll
        for (int j = 0; j < TN; ++j) {
            int c = ffwd_tile_col(col0, j);
            if (c >= N) continue;
            float z = acc[i][j];
            if (epi == 1 || epi == 2) z = __fadd_rn(z, bias[c]);
            if (epi == 2) z = ffwd_relu(z);
            C[(long)r * ldc + c] = z;
        }
    }
}

#define FFWD_GEMM_ENTRY(suffix, TM, TN, BLOCKS)                                                                    \
    extern "C" __global__ void __launch_bounds__(256, BLOCKS) ffwd_gemm##suffix##_f32(                                 \
        const float* __restrict__ A, long a_rs, long a_cs, const float* __restrict__ B, long b_rs, long b_cs,          \
        float* __restrict__ C, long ldc, int M, int N, int K, const float* __restrict__ bias, int epi) {               \
        ffwd_gemm<TM, TN, FFWD_TILE_K>(A, a_rs, a_cs, B, b_rs, b_cs, C, ldc, M, N, K, bias, epi);                      \
    }
FFWD_TILES(FFWD_GEMM_ENTRY)
