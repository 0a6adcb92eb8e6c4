// ffwd device numerics: the same operation sequences as
// crates/kernels/src/numerics.rs, written with explicit round-to-nearest
// intrinsics. The FFWD_* constants come from the generated prelude
// (ffwd_kernels::numerics::cuda_prelude), so they cannot drift from Rust.
// Compiled with --fmad=false --ftz=false --prec-div=true --prec-sqrt=true.
#pragma once
#define FFWD_DEV __device__ __forceinline__

FFWD_DEV float ffwd_relu(float x) { return x > 0.0f ? x : 0.0f; }
FFWD_DEV float ffwd_nan() { return __int_as_float(0x7FC00000); }
FFWD_DEV float ffwd_abs(float x) { return __int_as_float(__float_as_int(x) & 0x7FFFFFFF); }
FFWD_DEV float ffwd_pow2i(int k) { return __int_as_float((k + 127) << 23); }

FFWD_DEV float ffwd_exp(float x) {
    float xc = x > FFWD_EXP_HI ? FFWD_EXP_HI : x;
    xc = xc < FFWD_EXP_LO ? FFWD_EXP_LO : xc;
    xc = (x == x) ? xc : 0.0f;
    float kf = rintf(__fmul_rn(xc, FFWD_LOG2E));
    float r = __fmaf_rn(-kf, FFWD_LN2_HI, xc);
    r = __fmaf_rn(-kf, FFWD_LN2_LO, r);
    float p = FFWD_EXP_POLY0;
    p = __fmaf_rn(p, r, FFWD_EXP_POLY1);
    p = __fmaf_rn(p, r, FFWD_EXP_POLY2);
    p = __fmaf_rn(p, r, FFWD_EXP_POLY3);
    p = __fmaf_rn(p, r, FFWD_EXP_POLY4);
    p = __fmaf_rn(p, r, FFWD_EXP_POLY5);
    p = __fmaf_rn(p, r, FFWD_EXP_POLY6);
    p = __fmaf_rn(p, r, FFWD_EXP_POLY7);
    int k = (int)kf;  // exact: |kf| <= 151
    int k1 = k >> 1;
    int k2 = k - k1;
    float y = __fmul_rn(__fmul_rn(p, ffwd_pow2i(k1)), ffwd_pow2i(k2));
    y = x < FFWD_EXP_LO ? 0.0f : y;
    return (x == x) ? y : x;
}

FFWD_DEV float ffwd_log_mantissa(float m) {
    float f = __fsub_rn(m, 1.0f);
    float s = __fdiv_rn(f, __fadd_rn(2.0f, f));
    float z = __fmul_rn(s, s);
    float p = FFWD_LOG_POLY0;
    p = __fmaf_rn(p, z, FFWD_LOG_POLY1);
    p = __fmaf_rn(p, z, FFWD_LOG_POLY2);
    p = __fmaf_rn(p, z, FFWD_LOG_POLY3);
    p = __fmaf_rn(p, z, FFWD_LOG_POLY4);
    return __fadd_rn(__fadd_rn(s, s), __fmul_rn(__fmul_rn(s, z), p));
}

// u = 2^e * m with m in [sqrt2/2, sqrt2); e returned as float.
FFWD_DEV float ffwd_split_exponent(float u, float* m_out) {
    unsigned bits = __float_as_uint(u);
    int e = (int)((bits >> 23) & 0xffu) - 127;
    float m = __uint_as_float((bits & 0x007FFFFFu) | 0x3F800000u);
    bool big = m > FFWD_SQRT2;
    m = big ? __fmul_rn(m, 0.5f) : m;
    e = big ? e + 1 : e;
    *m_out = m;
    return (float)e;
}

FFWD_DEV float ffwd_log1p(float x) {
    float u = __fadd_rn(1.0f, x);
    float m;
    float e = ffwd_split_exponent(u, &m);
    float cr = __fdiv_rn(__fsub_rn(x, __fsub_rn(u, 1.0f)), u);
    float y = __fmaf_rn(e, FFWD_LN2_HI, __fmaf_rn(e, FFWD_LN2_LO, __fadd_rn(ffwd_log_mantissa(m), cr)));
    y = (u == __int_as_float(0x7F800000)) ? __int_as_float(0x7F800000) : y;
    y = (x == -1.0f) ? __int_as_float(0xFF800000) : y;
    y = (x < -1.0f) ? ffwd_nan() : y;
    return (x == x) ? y : x;
}

FFWD_DEV float ffwd_ln(float x) {
    bool tiny = x < FFWD_MIN_NORMAL;
    float xs = tiny ? __fmul_rn(x, 16777216.0f) : x;
    float m;
    float e = ffwd_split_exponent(xs, &m);
    e = tiny ? __fsub_rn(e, 24.0f) : e;
    float y = __fmaf_rn(e, FFWD_LN2_HI, __fmaf_rn(e, FFWD_LN2_LO, ffwd_log_mantissa(m)));
    y = (x == __int_as_float(0x7F800000)) ? __int_as_float(0x7F800000) : y;
    y = (x == 0.0f) ? __int_as_float(0xFF800000) : y;
    y = (x < 0.0f) ? ffwd_nan() : y;
    return (x == x) ? y : x;
}

FFWD_DEV float ffwd_softplus(float x) {
    float pos = x > 0.0f ? x : 0.0f;
    return __fadd_rn(pos, ffwd_log1p(ffwd_exp(-ffwd_abs(x))));
}

FFWD_DEV float ffwd_sigmoid(float x) {
    float e = ffwd_exp(-ffwd_abs(x));
    float d = __fadd_rn(1.0f, e);
    return x >= 0.0f ? __fdiv_rn(1.0f, d) : __fdiv_rn(e, d);
}

// The L32 tree across a warp: offsets 16, 8, 4, 2, 1. Every lane ends with
// the value lane 0 holds in the scalar spec (IEEE addition commutes).
FFWD_DEV float ffwd_l32_tree(float v) {
    for (int off = 16; off >= 1; off >>= 1) {
        v = __fadd_rn(v, __shfl_xor_sync(0xffffffffu, v, off));
    }
    return v;
}
