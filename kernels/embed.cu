// The label-embedding channel of convolutional FF (mirrors
// crates/kernels/src/cpu/embed.rs).

// chan[b, p] = emb[labels[b], p]; one thread per channel value.
extern "C" __global__ void ffwd_label_channel_f32(const float* __restrict__ emb, int hw, const unsigned* __restrict__ labels,
                                                  int n, float* __restrict__ chan) {
    long t = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= (long)n * hw) return;
    int b = (int)(t / hw), p = (int)(t % hw);
    chan[t] = emb[(long)labels[b] * hw + p];
}

// demb[l, p] = sum over b ascending with labels[b] == l of dchan[b, p],
// from +0.0; one thread per embedding value.
extern "C" __global__ void ffwd_label_channel_grad_f32(const float* __restrict__ dchan, int hw,
                                                       const unsigned* __restrict__ labels, int n, int classes,
                                                       float* __restrict__ demb) {
    long t = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= (long)classes * hw) return;
    int l = (int)(t / hw), p = (int)(t % hw);
    float acc = 0.0f;
    for (int b = 0; b < n; ++b)
        if ((int)labels[b] == l) acc = __fadd_rn(acc, dchan[(long)b * hw + p]);
    demb[t] = acc;
}
