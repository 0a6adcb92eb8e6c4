// Philox4x32-10 on the device (mirrors crates/tensor/src/philox.rs; the
// constants are checked against the Rust ones by crates/kernels/tests/ptx.rs).
// Key = the 64-bit seed as two words; counter = [block_lo, block_hi,
// stream_lo, stream_hi]. Integer arithmetic only.

#define FFWD_PHILOX_M0 0xD2511F53u
#define FFWD_PHILOX_M1 0xCD9E8D57u
#define FFWD_PHILOX_W0 0x9E3779B9u
#define FFWD_PHILOX_W1 0xBB67AE85u

FFWD_DEV uint4 ffwd_philox_block(unsigned long long block, unsigned long long stream, unsigned k0, unsigned k1) {
    unsigned c0 = (unsigned)block, c1 = (unsigned)(block >> 32), c2 = (unsigned)stream, c3 = (unsigned)(stream >> 32);
    for (int round = 0; round < 10; ++round) {
        if (round > 0) {
            k0 += FFWD_PHILOX_W0;
            k1 += FFWD_PHILOX_W1;
        }
        unsigned hi0 = __umulhi(FFWD_PHILOX_M0, c0), lo0 = FFWD_PHILOX_M0 * c0;
        unsigned hi1 = __umulhi(FFWD_PHILOX_M1, c2), lo1 = FFWD_PHILOX_M1 * c2;
        unsigned n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
        c0 = n0;
        c1 = lo1;
        c2 = n2;
        c3 = lo0;
    }
    return make_uint4(c0, c1, c2, c3);
}

FFWD_DEV unsigned ffwd_philox_word(unsigned long long i, unsigned long long stream, unsigned k0, unsigned k1) {
    uint4 b = ffwd_philox_block(i / 4, stream, k0, k1);
    unsigned w = i % 4;
    return w == 0 ? b.x : (w == 1 ? b.y : (w == 2 ? b.z : b.w));
}

// out[i] = word i of the stream (Philox::fill_u32).
extern "C" __global__ void ffwd_philox_u32(unsigned long long seed, unsigned long long stream, long n,
                                           unsigned* __restrict__ out) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    out[i] = ffwd_philox_word((unsigned long long)i, stream, (unsigned)seed, (unsigned)(seed >> 32));
}

// out[i] = fma(u, hi - lo, lo) with u = (word i >> 8) * 2^-24
// (Philox::fill_uniform).
extern "C" __global__ void ffwd_philox_uniform_f32(unsigned long long seed, unsigned long long stream, long n, float lo,
                                                   float hi, float* __restrict__ out) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    unsigned w = ffwd_philox_word((unsigned long long)i, stream, (unsigned)seed, (unsigned)(seed >> 32));
    float u = __fmul_rn((float)(w >> 8), 5.9604644775390625e-8f);
    out[i] = __fmaf_rn(u, __fsub_rn(hi, lo), lo);
}

// A uniform in [0, 1) from the top 24 bits of a word (exact).
FFWD_DEV float ffwd_uniform24(unsigned x) { return __fmul_rn((float)(x >> 8), 5.9604644775390625e-8f); }

// The Irwin-Hall Gaussian of one block: ((u0 + u1) + (u2 + u3) - 2) * sqrt(3).
FFWD_DEV float ffwd_gauss(uint4 w) {
    float s = __fadd_rn(__fadd_rn(ffwd_uniform24(w.x), ffwd_uniform24(w.y)),
                        __fadd_rn(ffwd_uniform24(w.z), ffwd_uniform24(w.w)));
    return __fmul_rn(__fsub_rn(s, 2.0f), __int_as_float(0x3fddb3d7));  // 1.7320508f
}

// Value j of row i draws block 4((first + i) d + j) + part.
FFWD_DEV unsigned long long ffwd_value_block(unsigned long long first, long t, int d, int part) {
    long i = t / d, j = t % d;
    return ((first + (unsigned long long)i) * (unsigned long long)d + (unsigned long long)j) * 4ull +
           (unsigned long long)part;
}

// out[i, j] = the Gaussian of value (i, j)'s block of `part`.
extern "C" __global__ void ffwd_gaussian_f32(unsigned long long seed, unsigned long long stream,
                                             unsigned long long first, long n, int d, int part, float* __restrict__ out) {
    long t = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n) return;
    uint4 w = ffwd_philox_block(ffwd_value_block(first, t, d, part), stream, (unsigned)seed, (unsigned)(seed >> 32));
    out[t] = ffwd_gauss(w);
}

// The DAE's corruption: out = (x if u >= p else 0) + sd * g, with g the
// Gaussian of part 0 and u the uniform of word 0 of part 2.
extern "C" __global__ void ffwd_dae_corrupt_f32(const float* __restrict__ x, unsigned long long seed,
                                                unsigned long long stream, unsigned long long first, long n, int d,
                                                float p, float sd, float* __restrict__ out) {
    long t = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n) return;
    unsigned k0 = (unsigned)seed, k1 = (unsigned)(seed >> 32);
    float g = ffwd_gauss(ffwd_philox_block(ffwd_value_block(first, t, d, 0), stream, k0, k1));
    float u = ffwd_uniform24(ffwd_philox_block(ffwd_value_block(first, t, d, 2), stream, k0, k1).x);
    float v = u >= p ? x[t] : 0.0f;
    out[t] = __fadd_rn(v, __fmul_rn(sd, g));
}
