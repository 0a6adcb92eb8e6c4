// One optimiser update of one element (mirrors adam_one and sgd_one in
// crates/kernels/src/cpu/optim.rs), shared by optim.cu and the fused passes
// of linear.cu. The scalars (1 - beta, bias corrections, decay) are computed
// once on the host, so both sides use the same f32 values.
#pragma once

// Field order and types match cuda::optim::OptimParams (repr(C)).
struct ffwd_optim {
    int kind;  // 0 Adam/AdamW, 1 SGD
    int flag;  // Adam: decoupled decay (AdamW); SGD: Nesterov
    float lr, b1, b2, omb1, omb2, step, c2, eps, wd, decay, momentum;  // step = lr / (1 - b1^t), c2 = 1 / sqrt(1 - b2^t)
};

FFWD_DEV void ffwd_adam_one(const ffwd_optim& s, float* w, float gi, float* m, float* v) {
    float p = *w;
    if (s.wd != 0.0f) {
        if (s.flag) p = __fmul_rn(p, s.decay);
        else gi = __fmaf_rn(s.wd, p, gi);
    }
    float mi = __fmaf_rn(s.b1, *m, __fmul_rn(s.omb1, gi));
    float vi = __fmaf_rn(s.b2, *v, __fmul_rn(__fmul_rn(s.omb2, gi), gi));
    float d = __fmaf_rn(__fsqrt_rn(vi), s.c2, s.eps);
    *w = __fmaf_rn(-s.step, __fdiv_rn(mi, d), p);
    *m = mi;
    *v = vi;
}

FFWD_DEV void ffwd_sgd_one(const ffwd_optim& s, float* w, float gi, float* buf) {
    if (s.wd != 0.0f) gi = __fmaf_rn(s.wd, *w, gi);
    if (s.momentum != 0.0f) {
        float b = __fmaf_rn(s.momentum, *buf, gi);
        *buf = b;
        gi = s.flag ? __fmaf_rn(s.momentum, b, gi) : b;
    }
    *w = __fsub_rn(*w, __fmul_rn(s.lr, gi));
}

// The update the parameters select; `v` is unused by SGD.
FFWD_DEV void ffwd_optim_one(const ffwd_optim& s, float* w, float g, float* a, float* v) {
    if (s.kind == 0) ffwd_adam_one(s, w, g, a, v);
    else ffwd_sgd_one(s, w, g, a);
}
