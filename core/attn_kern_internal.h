// The fused transformer's attention kernels for one vector width, included by
// core/transformer.c once per instantiation (no include guard on purpose).
// The includer defines: KW (lanes), KATTR (target attribute), K(name) (this
// instantiation's prefix), FMV(name) (core/fastmath.h's prefix), VF / VI
// (float / int32 vectors), KIOTA, KMASK / KMK(w) (a lane mask for lanes
// [0, w)), KLDU / KSTU (full), KLDM / KSTM (masked), KBC (broadcast a
// float), KFMA; x8_transpose and attn_geom must exist. All are undefined at
// the end.

#define KNT (2 * KW) // columns of C per micro-tile

// Lanes [0, w) of p (w <= KW), zero beyond; stores only lanes [0, w).
KATTR static inline VF K(ld)(const float *p, int64_t w) { return w == KW ? KLDU(p) : KLDM(p, KMK(w)); }
KATTR static inline void K(st)(float *p, VF v, int64_t w) {
    if (w == KW) KSTU(p, v);
    else KSTM(p, v, KMK(w));
}
// all-ones in lanes [0, w), for FMV(sel)
KATTR static inline VI K(imask)(int64_t w) { return KIOTA < (VI){0} + (int32_t)w; }

// C[i, j] (+)= alpha * sum_p A(i, p) B(p, j) for a block of MR rows x KNT (or
// nr < KNT, masked) columns. A(i, p) = A[i*ars + p*acs]; B(p, j) = B[p*brs + j];
// C(i, j) = C[i*crs + j].
#define K_KERNEL(MR)                                                                                         \
    KATTR static void K(kern##MR)(int64_t nr, int64_t k, float alpha, const float *A, int64_t ars, int64_t acs, \
                                  const float *B, int64_t brs, float *C, int64_t crs, int acc) {               \
        VF c0[MR], c1[MR];                                                                                   \
        for (int r = 0; r < MR; r++) c0[r] = c1[r] = (VF){0};                                                \
        if (nr == KNT) {                                                                                     \
            for (int64_t p = 0; p < k; p++) {                                                                \
                VF b0 = KLDU(B + p * brs), b1 = KLDU(B + p * brs + KW);                                      \
                for (int r = 0; r < MR; r++) {                                                               \
                    VF a = KBC(A + r * ars + p * acs);                                                       \
                    c0[r] = KFMA(a, b0, c0[r]);                                                              \
                    c1[r] = KFMA(a, b1, c1[r]);                                                              \
                }                                                                                            \
            }                                                                                                \
        } else if (nr <= KW) {                                                                               \
            KMASK m0 = KMK(nr);                                                                              \
            for (int64_t p = 0; p < k; p++) {                                                                \
                VF b0 = KLDM(B + p * brs, m0);                                                               \
                for (int r = 0; r < MR; r++) c0[r] = KFMA(KBC(A + r * ars + p * acs), b0, c0[r]);            \
            }                                                                                                \
        } else {                                                                                             \
            KMASK m1 = KMK(nr - KW);                                                                         \
            for (int64_t p = 0; p < k; p++) {                                                                \
                VF b0 = KLDU(B + p * brs), b1 = KLDM(B + p * brs + KW, m1);                                  \
                for (int r = 0; r < MR; r++) {                                                               \
                    VF a = KBC(A + r * ars + p * acs);                                                       \
                    c0[r] = KFMA(a, b0, c0[r]);                                                              \
                    c1[r] = KFMA(a, b1, c1[r]);                                                              \
                }                                                                                            \
            }                                                                                                \
        }                                                                                                    \
        VF al = (VF){0} + alpha;                                                                             \
        int64_t w0 = nr < KW ? nr : KW, w1 = nr - KW;                                                        \
        for (int r = 0; r < MR; r++) {                                                                       \
            float *cr = C + r * crs;                                                                         \
            VF v0 = al * c0[r], v1 = al * c1[r];                                                             \
            if (acc) v0 += K(ld)(cr, w0);                                                                    \
            K(st)(cr, v0, w0);                                                                               \
            if (w1 > 0) {                                                                                    \
                if (acc) v1 += K(ld)(cr + KW, w1);                                                           \
                K(st)(cr + KW, v1, w1);                                                                      \
            }                                                                                                \
        }                                                                                                    \
    }
K_KERNEL(4)
K_KERNEL(1)
#undef K_KERNEL

// C[m x n] (+)= alpha * A B with the layouts of the kernels above.
KATTR static void K(gemm)(int64_t m, int64_t n, int64_t k, float alpha, const float *A, int64_t ars, int64_t acs,
                          const float *B, int64_t brs, float *C, int64_t crs, int acc) {
    for (int64_t j = 0; j < n; j += KNT) {
        int64_t nr = n - j < KNT ? n - j : KNT, i = 0;
        for (; i + 4 <= m; i += 4) K(kern4)(nr, k, alpha, A + i * ars, ars, acs, B + j, brs, C + i * crs + j, crs, acc);
        for (; i < m; i++) K(kern1)(nr, k, alpha, A + i * ars, ars, acs, B + j, brs, C + i * crs + j, crs, acc);
    }
}

// Softmax of r[0, n) on valid keys (vm[j] != 0; vm NULL: all), zero up to T;
// returns the log-sum-exp, INFINITY when no key is valid (row zeroed).
KATTR static float K(softmax_row)(float *r, int64_t n, int64_t T, const float *vm) {
    VF vmx = FMV(set)(-INFINITY), ninf = vmx;
    for (int64_t j = 0; j < n; j += KW) {
        int64_t w = n - j < KW ? n - j : KW;
        VF v = w == KW ? K(ld)(r + j, w) : FMV(sel)(K(imask)(w), K(ld)(r + j, w), ninf);
        if (vm) v = FMV(sel)(K(ld)(vm + j, w) != 0.0f, v, ninf);
        vmx = FMV(max)(vmx, v);
    }
    float mx = FMV(hmax)(vmx);
    if (mx == -INFINITY) {
        memset(r, 0, sizeof(float) * (size_t)T);
        return INFINITY;
    }
    VF vs = FMV(set)(0);
    for (int64_t j = 0; j < n; j += KW) {
        int64_t w = n - j < KW ? n - j : KW;
        VF e = FMV(exp)(K(ld)(r + j, w) - mx);
        if (vm) e = e * K(ld)(vm + j, w);
        if (w < KW) e = FMV(sel)(K(imask)(w), e, FMV(set)(0));
        K(st)(r + j, e, w);
        vs += e;
    }
    float sum = FMV(hsum)(vs);
    VF inv = FMV(set)(1.0f / sum);
    for (int64_t j = 0; j < n; j += KW) {
        int64_t w = n - j < KW ? n - j : KW;
        K(st)(r + j, K(ld)(r + j, w) * inv, w);
    }
    for (int64_t j = n; j < T; j++) r[j] = 0;
    return mx + logf(sum);
}

KATTR static void K(prob_row)(float *r, int64_t n, int64_t T, const float *vm, float lse) {
    if (isinf(lse)) {
        memset(r, 0, sizeof(float) * (size_t)T);
        return;
    }
    for (int64_t j = 0; j < n; j += KW) {
        int64_t w = n - j < KW ? n - j : KW;
        VF e = FMV(exp)(K(ld)(r + j, w) - lse);
        if (vm) e = e * K(ld)(vm + j, w);
        K(st)(r + j, e, w);
    }
    for (int64_t j = n; j < T; j++) r[j] = 0;
}

// pbuf: per thread T*T (+ D*T for K^T), see attn_fwd.
KATTR static void K(attn_fwd_head)(const attn_geom *g, const float *qkv, float *att, float *lse, float *S, float *kT,
                                   int64_t b, int64_t h) {
    int64_t T = g->T, C = g->C, H = g->H, D = g->D;
    float scale = 1.0f / sqrtf((float)D);
    const float *q = qkv + b * T * 3 * C + h * D, *k = q + C, *v = q + 2 * C;
    x8_transpose(kT, k, T, D, 3 * C);
    K(gemm)(T, T, D, scale, q, 3 * C, 1, kT, T, S, T, 0); // S = q k^T / sqrt D
    const float *vm = g->vmask ? g->vmask + b * T : NULL;
    float *l = lse + (b * H + h) * T;
    for (int64_t i = 0; i < T; i++) l[i] = K(softmax_row)(S + i * T, g->causal ? i + 1 : T, T, vm);
    K(gemm)(T, D, T, 1.0f, S, T, 1, v, 3 * C, att + b * T * C + h * D, C, 0); // O = P v
}

// dS = P * (dP - rowsum(P * dP)) / sqrt D over m rows of length T (in place in dP).
KATTR static void K(dsoftmax)(const float *P, float *dP, int64_t m, int64_t T, float scale) {
    for (int64_t i = 0; i < m; i++) {
        const float *pr = P + i * T;
        float *dr = dP + i * T;
        VF vd = FMV(set)(0);
        for (int64_t j = 0; j < T; j += KW) {
            int64_t w = T - j < KW ? T - j : KW;
            vd += K(ld)(pr + j, w) * K(ld)(dr + j, w);
        }
        float dot = FMV(hsum)(vd);
        for (int64_t j = 0; j < T; j += KW) {
            int64_t w = T - j < KW ? T - j : KW;
            K(st)(dr + j, K(ld)(pr + j, w) * (K(ld)(dr + j, w) - dot) * scale, w);
        }
    }
}

// Backward of one head when only the nr query rows `rows` have a nonzero
// output gradient (the others contribute nothing): the work shrinks to nr rows.
// sc: 2 * D * T floats.
KATTR static void K(attn_bwd_head_rows)(const attn_geom *g, const float *qkv, const float *datt, const float *lse,
                                        float *dqkv, float *P, float *dP, float *kT, float *sc, const int32_t *rows,
                                        int64_t nr, int64_t b, int64_t h) {
    int64_t T = g->T, C = g->C, H = g->H, D = g->D;
    float scale = 1.0f / sqrtf((float)D);
    const float *q = qkv + b * T * 3 * C + h * D, *k = q + C, *v = q + 2 * C;
    float *dq = dqkv + b * T * 3 * C + h * D, *dk = dq + C, *dv = dq + 2 * C;
    const float *dO = datt + b * T * C + h * D;
    float *qk = sc, *dok = sc + D * T; // the rows' q and dO, compact [nr, D]
    for (int64_t t = 0; t < T; t++) memset(dq + t * 3 * C, 0, sizeof(float) * (size_t)D);
    if (nr == 0) {
        for (int64_t t = 0; t < T; t++) {
            memset(dk + t * 3 * C, 0, sizeof(float) * (size_t)D);
            memset(dv + t * 3 * C, 0, sizeof(float) * (size_t)D);
        }
        return;
    }
    for (int64_t r = 0; r < nr; r++) {
        memcpy(qk + r * D, q + (int64_t)rows[r] * 3 * C, sizeof(float) * (size_t)D);
        memcpy(dok + r * D, dO + (int64_t)rows[r] * C, sizeof(float) * (size_t)D);
    }
    x8_transpose(kT, k, T, D, 3 * C);
    K(gemm)(nr, T, D, scale, qk, D, 1, kT, T, P, T, 0);
    const float *vm = g->vmask ? g->vmask + b * T : NULL;
    const float *l = lse + (b * H + h) * T;
    for (int64_t r = 0; r < nr; r++) K(prob_row)(P + r * T, g->causal ? rows[r] + 1 : T, T, vm, l[rows[r]]);
    K(gemm)(T, D, nr, 1.0f, P, 1, T, dok, D, dv, 3 * C, 0); // dV = P^T dO
    x8_transpose(kT, v, T, D, 3 * C);                       // V^T
    K(gemm)(nr, T, D, 1.0f, dok, D, 1, kT, T, dP, T, 0);    // dP = dO V^T
    K(dsoftmax)(P, dP, nr, T, scale);
    K(gemm)(nr, D, T, 1.0f, dP, T, 1, k, 3 * C, dok, D, 0); // dQ = dS K (compact, reusing dok)
    for (int64_t r = 0; r < nr; r++) memcpy(dq + (int64_t)rows[r] * 3 * C, dok + r * D, sizeof(float) * (size_t)D);
    K(gemm)(T, D, nr, 1.0f, dP, 1, T, qk, D, dk, 3 * C, 0); // dK = dS^T Q
}

KATTR static void K(attn_bwd_head)(const attn_geom *g, const float *qkv, const float *datt, const float *lse,
                                   float *dqkv, float *P, float *dP, float *kT, int64_t b, int64_t h) {
    int64_t T = g->T, C = g->C, H = g->H, D = g->D;
    float scale = 1.0f / sqrtf((float)D);
    const float *q = qkv + b * T * 3 * C + h * D, *k = q + C, *v = q + 2 * C;
    float *dq = dqkv + b * T * 3 * C + h * D, *dk = dq + C, *dv = dq + 2 * C;
    const float *dO = datt + b * T * C + h * D;
    x8_transpose(kT, k, T, D, 3 * C);
    K(gemm)(T, T, D, scale, q, 3 * C, 1, kT, T, P, T, 0);
    const float *vm = g->vmask ? g->vmask + b * T : NULL;
    const float *l = lse + (b * H + h) * T;
    for (int64_t i = 0; i < T; i++) K(prob_row)(P + i * T, g->causal ? i + 1 : T, T, vm, l[i]);
    K(gemm)(T, D, T, 1.0f, P, 1, T, dO, C, dv, 3 * C, 0); // dV = P^T dO
    x8_transpose(kT, v, T, D, 3 * C);                      // V^T
    K(gemm)(T, T, D, 1.0f, dO, C, 1, kT, T, dP, T, 0);     // dP = dO V^T
    K(dsoftmax)(P, dP, T, T, scale);
    K(gemm)(T, D, T, 1.0f, dP, T, 1, k, 3 * C, dq, 3 * C, 0); // dQ = dS K
    K(gemm)(T, D, T, 1.0f, dP, 1, T, q, 3 * C, dk, 3 * C, 0); // dK = dS^T Q
}

#undef KNT
#undef KW
#undef KATTR
#undef K
#undef FMV
#undef VF
#undef VI
#undef KIOTA
#undef KMASK
#undef KMK
#undef KLDU
#undef KSTU
#undef KLDM
#undef KSTM
#undef KBC
#undef KFMA
