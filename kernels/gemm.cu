// GEMM, C = epilogue(A·B), mirrors crates/kernels/src/cpu/gemm.rs (the tile
// walk and its order are in gemm_tile.cuh). Operands are strided views
// (a_rs, a_cs), (b_rs, b_cs), so transposes are free.
// epi: 0 none, 1 bias, 2 bias + ReLU, 3 accumulate (each chain starts from
// the value already in C, so C += A·B continues a split reduction).

extern "C" __global__ void __launch_bounds__(256)
ffwd_gemm_f32(const float* __restrict__ A, long a_rs, long a_cs, const float* __restrict__ B, long b_rs, long b_cs,
              float* __restrict__ C, long ldc, int M, int N, int K, const float* __restrict__ bias, int epi) {
    const int row0 = blockIdx.y * FFWD_BM, col0 = blockIdx.x * FFWD_BN;
    float acc[4][4];
    for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) {
            int r = ffwd_tile_row(row0, i), c = ffwd_tile_col(col0, j);
            acc[i][j] = (epi == 3 && r < M && c < N) ? C[(long)r * ldc + c] : 0.0f;
        }
    ffwd_gemm_tile(ffwd_strided{A, a_rs, a_cs}, ffwd_strided{B, b_rs, b_cs}, M, N, K, row0, col0, acc);
    for (int i = 0; i < 4; ++i) {
        int r = ffwd_tile_row(row0, i);
        if (r >= M) continue;
        for (int j = 0; j < 4; ++j) {
            int c = ffwd_tile_col(col0, j);
            if (c >= N) continue;
            float z = acc[i][j];
            if (epi == 1 || epi == 2) z = __fadd_rn(z, bias[c]);
            if (epi == 2) z = ffwd_relu(z);
            C[(long)r * ldc + c] = z;
        }
    }
}
