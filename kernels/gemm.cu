// GEMM, C = epilogue(A·B), mirrors crates/kernels/src/cpu/gemm.rs: every
// output is one fma chain over k = 0..K-1 in ascending order from +0.0,
// whatever the tiling (k tiles are walked in order, and within a tile k
// ascends). No split-K, no atomics, no tensor cores.
// Operands are strided views (a_rs, a_cs), (b_rs, b_cs), so transposes are
// free. Block tile 64×64, k tile 16, 256 threads, 4×4 outputs per thread.
// epi: 0 none, 1 bias, 2 bias + ReLU, 3 accumulate (each chain starts from
// the value already in C, so C += A·B continues a split reduction).
#define FFWD_BM 64
#define FFWD_BN 64
#define FFWD_BK 16

extern "C" __global__ void __launch_bounds__(256)
ffwd_gemm_f32(const float* __restrict__ A, long a_rs, long a_cs, const float* __restrict__ B, long b_rs, long b_cs,
              float* __restrict__ C, long ldc, int M, int N, int K, const float* __restrict__ bias, int epi) {
    __shared__ float As[FFWD_BK][FFWD_BM];
    __shared__ float Bs[FFWD_BK][FFWD_BN];
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    const int row0 = blockIdx.y * FFWD_BM, col0 = blockIdx.x * FFWD_BN;
    float acc[4][4];
    for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) {
            int r = row0 + ty * 4 + i, c = col0 + tx * 4 + j;
            acc[i][j] = (epi == 3 && r < M && c < N) ? C[(long)r * ldc + c] : 0.0f;
        }
    for (int k0 = 0; k0 < K; k0 += FFWD_BK) {
        for (int t = threadIdx.x; t < FFWD_BM * FFWD_BK; t += 256) {
            int kk = t / FFWD_BM, mm = t % FFWD_BM;
            int r = row0 + mm, k = k0 + kk;
            As[kk][mm] = (r < M && k < K) ? A[r * a_rs + k * a_cs] : 0.0f;
        }
        for (int t = threadIdx.x; t < FFWD_BN * FFWD_BK; t += 256) {
            int kk = t / FFWD_BN, nn = t % FFWD_BN;
            int c = col0 + nn, k = k0 + kk;
            Bs[kk][nn] = (c < N && k < K) ? B[k * b_rs + c * b_cs] : 0.0f;
        }
        __syncthreads();
        const int kmax = min(FFWD_BK, K - k0);
        for (int kk = 0; kk < kmax; ++kk) {
            float a[4], b[4];
            for (int i = 0; i < 4; ++i) a[i] = As[kk][ty * 4 + i];
            for (int j = 0; j < 4; ++j) b[j] = Bs[kk][tx * 4 + j];
            for (int i = 0; i < 4; ++i)
                for (int j = 0; j < 4; ++j) acc[i][j] = __fmaf_rn(a[i], b[j], acc[i][j]);
        }
        __syncthreads();
    }
    for (int i = 0; i < 4; ++i) {
        int r = row0 + ty * 4 + i;
        if (r >= M) continue;
        for (int j = 0; j < 4; ++j) {
            int c = col0 + tx * 4 + j;
            if (c >= N) continue;
            float z = acc[i][j];
            if (epi == 1 || epi == 2) z = __fadd_rn(z, bias[c]);
            if (epi == 2) z = ffwd_relu(z);
            C[(long)r * ldc + c] = z;
        }
    }
}
