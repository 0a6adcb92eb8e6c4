// Goodness losses and the softmax cross-entropy (mirrors
// crates/kernels/src/cpu/loss.rs). Sums over rows are L32 sums: lane l of
// one warp adds rows l, l+32, ... in ascending order from +0.0, then the
// warp tree.

// The FF loss of 2n goodness values g (n positives, then n negatives).
// kind 0: threshold (param = theta); kind 1: SymBa (param = alpha).
// mean_form: the goodness is g / d. Writes dL/dG (2n) and the mean loss.
// Launch: one block of FFWD_LOSS_THREADS threads. The loss terms (a
// softplus each) and dL/dG are computed by the whole block, a chunk of
// rows at a time, into shared memory; warp 0 then adds the chunk's terms
// in the L32 order (lane l takes the terms l, l + 32, ... in turn), so the
// sum is that of one warp walking all rows.
#define FFWD_LOSS_THREADS 256
#define FFWD_LOSS_CHUNK 2048
extern "C" __global__ void __launch_bounds__(FFWD_LOSS_THREADS)
ffwd_ff_loss_f32(const float* __restrict__ g, int n, int d, int kind, float param, int mean_form,
                 float* __restrict__ dldg, float* __restrict__ loss) {
    __shared__ float terms[FFWD_LOSS_CHUNK];
    const int t = threadIdx.x, lane = t & 31;
    float w = __fdiv_rn(1.0f, (float)n);
    float df = (float)d;
    int rows = kind == 0 ? 2 * n : n;
    float acc = 0.0f;
    for (int c0 = 0; c0 < rows; c0 += FFWD_LOSS_CHUNK) {
        const int cn = min(FFWD_LOSS_CHUNK, rows - c0);
        for (int r = t; r < cn; r += blockDim.x) {
            const int i = c0 + r;
            float s;
            if (kind == 0) {
                float gm = mean_form ? __fdiv_rn(g[i], df) : g[i];
                s = i < n ? __fsub_rn(param, gm) : __fsub_rn(gm, param);
            } else {
                float gp = mean_form ? __fdiv_rn(g[i], df) : g[i];
                float gn = mean_form ? __fdiv_rn(g[n + i], df) : g[n + i];
                s = __fmul_rn(-param, __fsub_rn(gp, gn));
            }
            terms[r] = ffwd_softplus(s);
            float sg = ffwd_sigmoid(s);
            if (kind == 0) {
                float u = __fmul_rn(sg, w);
                float v = i < n ? -u : u;
                dldg[i] = mean_form ? __fdiv_rn(v, df) : v;
            } else {
                float u = __fmul_rn(__fmul_rn(param, sg), w);
                dldg[i] = mean_form ? __fdiv_rn(-u, df) : -u;
                dldg[n + i] = mean_form ? __fdiv_rn(u, df) : u;
            }
        }
        __syncthreads();
        // FFWD_LOSS_CHUNK is a multiple of 32: term r is row c0 + r of lane r mod 32
        if (t < 32)
            for (int r = lane; r < cn; r += 32) acc = __fadd_rn(acc, terms[r]);
        __syncthreads();
    }
    if (t < 32) {
        float total = ffwd_l32_tree(acc);
        if (lane == 0) loss[0] = n == 0 ? 0.0f : __fmul_rn(total, w);
    }
}

// For one warp on a row of c logits: mx = the first maximum (by >), and the
// L32 sum of exp(z - mx).
FFWD_DEV float ffwd_softmax_sum(const float* row, int c, int lane, float* mx_out) {
    float mx = row[0];
    for (int j = 1; j < c; ++j)
        if (row[j] > mx) mx = row[j];
    float acc = 0.0f;
    for (int j = lane; j < c; j += 32) acc = __fadd_rn(acc, ffwd_exp(__fsub_rn(row[j], mx)));
    *mx_out = mx;
    return ffwd_l32_tree(acc);
}

// Softmax of each row of c logits, one warp per row: e = exp(z - mx),
// out = e / (L32 sum of e).
extern "C" __global__ void ffwd_softmax_rows_f32(const float* __restrict__ z, int m, int c, float* __restrict__ out) {
    int r = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x & 31;
    if (r >= m) return;
    const float* row = z + (long)r * c;
    float mx;
    float s = ffwd_softmax_sum(row, c, lane, &mx);
    for (int j = lane; j < c; j += 32) out[(long)r * c + j] = __fdiv_rn(ffwd_exp(__fsub_rn(row[j], mx)), s);
}

// Softmax cross-entropy, one warp per row of c logits: sh = z - (first max),
// e = exp(sh), s = L32 sum of e, grad = (e/s - [j == y]) * w with w = 1/m;
// row_loss = ln(s) - sh[y].
extern "C" __global__ void ffwd_softmax_xent_rows_f32(const float* __restrict__ z, const unsigned* __restrict__ labels, int m,
                                                      int c, float* __restrict__ grad, float* __restrict__ row_loss) {
    int r = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x & 31;
    if (r >= m) return;
    const float* row = z + (long)r * c;
    float mx;
    float s = ffwd_softmax_sum(row, c, lane, &mx);
    float w = __fdiv_rn(1.0f, (float)m);
    int y = (int)labels[r];
    for (int j = lane; j < c; j += 32) {
        float p = __fdiv_rn(ffwd_exp(__fsub_rn(row[j], mx)), s);
        float t = j == y ? __fsub_rn(p, 1.0f) : p;
        grad[(long)r * c + j] = __fmul_rn(t, w);
    }
    if (lane == 0) row_loss[r] = __fsub_rn(ffwd_ln(s), __fsub_rn(row[y], mx));
}

// The mean of m row losses: L32 sum times 1/m. One block of 32 threads.
extern "C" __global__ void ffwd_mean_l32_f32(const float* __restrict__ v, int m, float* __restrict__ out) {
    int lane = threadIdx.x & 31;
    if (threadIdx.x >= 32) return;
    float acc = 0.0f;
    for (int i = lane; i < m; i += 32) acc = __fadd_rn(acc, v[i]);
    float total = ffwd_l32_tree(acc);
    if (lane == 0) out[0] = m == 0 ? 0.0f : __fmul_rn(total, __fdiv_rn(1.0f, (float)m));
}

// Cosine-embedding loss (target +1) of rows of a against constant rows of b,
// one warp per row: dot, |a|^2, |b|^2 are L32 sums of plain products;
// den = max(|a|, eps) * max(|b|, eps); cos = dot / den; row term 1 - cos;
// grad = -(w * (b / den - k * a)) with k = cos / |a|^2 where |a| > eps, else 0.
extern "C" __global__ void ffwd_cosine_rows_f32(const float* __restrict__ a, const float* __restrict__ b, int m, int d,
                                                float eps, float* __restrict__ grad, float* __restrict__ row_loss) {
    int r = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x & 31;
    if (r >= m) return;
    const float* ar = a + (long)r * d;
    const float* br = b + (long)r * d;
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f;
    for (int j = lane; j < d; j += 32) {
        s0 = __fadd_rn(s0, __fmul_rn(ar[j], br[j]));
        s1 = __fadd_rn(s1, __fmul_rn(ar[j], ar[j]));
        s2 = __fadd_rn(s2, __fmul_rn(br[j], br[j]));
    }
    float dot = ffwd_l32_tree(s0), na2 = ffwd_l32_tree(s1), nb2 = ffwd_l32_tree(s2);
    float na = __fsqrt_rn(na2), nb = __fsqrt_rn(nb2);
    float den = __fmul_rn(fmaxf(na, eps), fmaxf(nb, eps));
    float cs = __fdiv_rn(dot, den);
    float k = na > eps ? __fdiv_rn(cs, na2) : 0.0f;
    float w = __fdiv_rn(1.0f, (float)m);
    for (int j = lane; j < d; j += 32)
        grad[(long)r * d + j] = -__fmul_rn(w, __fsub_rn(__fdiv_rn(br[j], den), __fmul_rn(k, ar[j])));
    if (lane == 0) row_loss[r] = __fsub_rn(1.0f, cs);
}

// Binary cross-entropy of softmax rows against one-hot labels, one warp per
// row of c logits; w = 1 / (m c). p = e / s, q = (s - e) / s; the terms
// -(t max(ln p, -100) + (1 - t) max(ln q, -100)) go to terms (m c, for the
// mean); g = w (p - t) / max(p q, 1e-12); grad = p (g - L32 sum of p g).
extern "C" __global__ void ffwd_softmax_bce_rows_f32(const float* __restrict__ z, const unsigned* __restrict__ labels, int m,
                                                     int c, float* __restrict__ grad, float* __restrict__ terms) {
    int r = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x & 31;
    if (r >= m) return;
    const float* row = z + (long)r * c;
    float mx;
    float s = ffwd_softmax_sum(row, c, lane, &mx);
    float w = __fdiv_rn(1.0f, (float)((long)m * c));
    int y = (int)labels[r];
    float pg = 0.0f;
    for (int j = lane; j < c; j += 32) {
        float e = ffwd_exp(__fsub_rn(row[j], mx));
        float p = __fdiv_rn(e, s), q = __fdiv_rn(__fsub_rn(s, e), s);
        float t = j == y ? 1.0f : 0.0f;
        float lp = fmaxf(ffwd_ln(p), -100.0f), lq = fmaxf(ffwd_ln(q), -100.0f);
        terms[(long)r * c + j] = -__fadd_rn(__fmul_rn(t, lp), __fmul_rn(__fsub_rn(1.0f, t), lq));
        float g = __fdiv_rn(__fmul_rn(w, __fsub_rn(p, t)), fmaxf(__fmul_rn(p, q), 1e-12f));
        grad[(long)r * c + j] = g;
        pg = __fadd_rn(pg, __fmul_rn(p, g));
    }
    float dot = ffwd_l32_tree(pg);
    for (int j = lane; j < c; j += 32) {
        float e = ffwd_exp(__fsub_rn(row[j], mx));
        float p = __fdiv_rn(e, s);
        grad[(long)r * c + j] = __fmul_rn(p, __fsub_rn(grad[(long)r * c + j], dot));
    }
}

// The mean goodness of the positives (g[0..n]) and of the negatives
// (g[n..2n]) into out[0], out[1]. mode 0: the L32 sum / n in f32 (0 when n
// = 0); mode 1: the f64 sum in row order, from -0.0 (Rust's neutral
// element of a float sum), / max(n, 1) / d, rounded to f32. One warp.
extern "C" __global__ void ffwd_goodness_means_f32(const float* __restrict__ g, int n, int mode, int d,
                                                   float* __restrict__ out) {
    int lane = threadIdx.x & 31;
    if (threadIdx.x >= 32) return;
    if (mode == 0) {
        float p = 0.0f, q = 0.0f;
        for (int i = lane; i < n; i += 32) {
            p = __fadd_rn(p, g[i]);
            q = __fadd_rn(q, g[n + i]);
        }
        p = ffwd_l32_tree(p);
        q = ffwd_l32_tree(q);
        if (lane == 0) {
            out[0] = n == 0 ? 0.0f : __fdiv_rn(p, (float)n);
            out[1] = n == 0 ? 0.0f : __fdiv_rn(q, (float)n);
        }
    } else if (lane == 0) {
        double p = -0.0, q = -0.0;
        for (int i = 0; i < n; ++i) {
            p = __dadd_rn(p, (double)g[i]);
            q = __dadd_rn(q, (double)g[n + i]);
        }
        double den = (double)(n > 0 ? n : 1), dd = (double)d;
        out[0] = __double2float_rn(__ddiv_rn(__ddiv_rn(p, den), dd));
        out[1] = __double2float_rn(__ddiv_rn(__ddiv_rn(q, den), dd));
    }
}

// delta = a - b.
extern "C" __global__ void ffwd_sub_f32(const float* __restrict__ a, const float* __restrict__ b, long n,
                                        float* __restrict__ out) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = __fsub_rn(a[i], b[i]);
}

// out[0] = the L32 sum of squares of v, divided by max(n, 1). One warp.
extern "C" __global__ void ffwd_mean_sumsq_f32(const float* __restrict__ v, long n, float* __restrict__ out) {
    int lane = threadIdx.x & 31;
    if (threadIdx.x >= 32) return;
    float acc = 0.0f;
    for (long i = lane; i < n; i += 32) acc = __fmaf_rn(v[i], v[i], acc);
    float total = ffwd_l32_tree(acc);
    if (lane == 0) out[0] = __fdiv_rn(total, (float)(n > 0 ? n : 1));
}

// v = v * s.
extern "C" __global__ void ffwd_scale_f32(float* __restrict__ v, long n, float s) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) v[i] = __fmul_rn(v[i], s);
}

// The non-saturating GAN loss of `rows` logits, the first n of them real
// (t = -z: softplus(t) and dL/dz = -(sigmoid(t) w)), the rest fake (t = z:
// dL/dz = sigmoid(t) w), w = 1/n. out[0] = (L32 sum of the real terms +
// L32 sum of the fake terms) * w; without fakes, the real sum * w. One warp.
extern "C" __global__ void ffwd_gan_loss_f32(const float* __restrict__ z, int n, int rows,
                                             float* __restrict__ grad, float* __restrict__ out) {
    int lane = threadIdx.x & 31;
    if (threadIdx.x >= 32) return;
    float w = __fdiv_rn(1.0f, (float)n);
    float real = 0.0f, fake = 0.0f;
    for (int i = lane; i < n; i += 32) {
        float t = __fmul_rn(-1.0f, z[i]);
        real = __fadd_rn(real, ffwd_softplus(t));
        grad[i] = -__fmul_rn(ffwd_sigmoid(t), w);
    }
    for (int i = lane; n + i < rows; i += 32) {
        float t = __fmul_rn(1.0f, z[n + i]);
        fake = __fadd_rn(fake, ffwd_softplus(t));
        grad[n + i] = __fmul_rn(ffwd_sigmoid(t), w);
    }
    real = ffwd_l32_tree(real);
    fake = ffwd_l32_tree(fake);
    if (lane == 0) out[0] = n == 0 ? 0.0f : (rows > n ? __fmul_rn(__fadd_rn(real, fake), w) : __fmul_rn(real, w));
}
