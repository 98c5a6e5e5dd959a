/* Fused selective scan for CPU, the way mamba_ssm's CUDA kernel works: the (batch, d_inner, L, d_state)
 * states are never materialised, and the D skip and the silu(z) gate are applied in the same pass.
 *
 *   dt = softplus(delta + bias[d])            (bias and softplus optional)
 *   x_t = exp(dt_t A[d]) * x_{t-1} + dt_t u_t B[b,t]     (a d_state-wide state per (b, d) row)
 *   out_t = (sum_n C[b,t,n] x_t[n] + D[d] u_t) * silu(z_t)   (D and z optional)
 *
 * Vectorisation: one SIMD lane per state index n. A row's state is NV = NP / W vectors (NP: d_state padded
 * with zeros to a multiple of the width W; 1 vector for d_state 16 on AVX-512), so every step is a few
 * independent vector operations with no gather and no transpose: the inputs stay (batch, d_inner, L),
 * their t-contiguous rows are read as broadcast scalars, and the per-t sums over n (the output, and in
 * backward the gradients wrt dt*u and dt) are taken W time steps at a time by one transposing reduction
 * (vsum_lanes) that turns W vectors into one vector of their W sums, stored contiguously in t. Sums over d
 * (gB, gC) need no reduction: with lanes over n they are plain vector adds. Channels go through the
 * recurrences in groups of 4 that share each step's loads of B and C and updates of gB and gC.
 *
 * Backward recomputes a group's states into a per-thread buffer (2 L NP floats per row: 64 KiB at L=512,
 * d_state=16, L2-resident) and runs the adjoint recurrence in reverse; with a gate, it recomputes the output
 * too (for the gate's gradient) rather than keep a (batch, d_inner, L) tensor from forward.
 *
 * Layouts (contiguous float32): u, delta, z, out and their gradients: (batch, d_inner, L); A: (d_inner, NP);
 * Bt, Ct: (batch, L, NP), time-major; bias, D: (d_inner,) or NULL. Every function handles d in [d0, d1), so
 * Python runs disjoint ranges on several threads (ctypes releases the GIL). Outputs indexed by d are written
 * by one range only; gB and gC (sums over d) go to a per-range partial buffer, added up by scan_sum_partials.
 *
 * The width comes from the compiler's target (-march=native): AVX-512 (W=16), AVX2+FMA (W=8), or plain C
 * (W=1); -mno-avx512f and -DSCAN_SCALAR force the narrower ones, so tests can check every path on one machine. exp is our own (2^y: a degree-6 polynomial for the fraction
 * and an exponent scale, about 1 ulp) so that it inlines into the loops and keeps the state in registers.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#define INLINE static inline __attribute__((always_inline))

/* 2^f on [0, 1) ~ 1 + f (EXP2_C1 + f (EXP2_C2 + ... f EXP2_C6)): relative error 2e-9 (fitted for this file by
 * reweighted least squares), so with float rounding exp is within about 1 ulp. */
#define EXP2_C1 0.6931470632553101f
#define EXP2_C2 0.2402293086051941f
#define EXP2_C3 0.055485282093286514f
#define EXP2_C4 0.009675451554358006f
#define EXP2_C5 0.0012467845808714628f
#define EXP2_C6 0.0002161291631637141f
#define LOG2E 1.44269504088896341f

#if defined(__AVX512F__) && !defined(SCAN_SCALAR)
#include <immintrin.h>
#define W 16
typedef __m512 vf;
INLINE vf vzero(void) { return _mm512_setzero_ps(); }
INLINE vf vset(float a) { return _mm512_set1_ps(a); }
INLINE vf vload(const float *p) { return _mm512_loadu_ps(p); }
INLINE void vstore(float *p, vf a) { _mm512_storeu_ps(p, a); }
INLINE vf vadd(vf a, vf b) { return _mm512_add_ps(a, b); }
INLINE vf vsub(vf a, vf b) { return _mm512_sub_ps(a, b); }
INLINE vf vmul(vf a, vf b) { return _mm512_mul_ps(a, b); }
INLINE vf vdiv(vf a, vf b) { return _mm512_div_ps(a, b); }
INLINE vf vfma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }
INLINE vf vmax(vf a, vf b) { return _mm512_max_ps(a, b); }
INLINE vf vmin(vf a, vf b) { return _mm512_min_ps(a, b); }
INLINE float vsum(vf a) { return _mm512_reduce_add_ps(a); }
/* x >= 0 ? a : b */
INLINE vf vselect_nonneg(vf x, vf a, vf b) { return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, vzero(), _CMP_GE_OQ), b, a); }

/* p 2^floor(n): scalef floors its exponent itself and produces 0, subnormals and inf exactly where the
 * product is */
#define VLDEXP_FLOORS 1
INLINE vf vldexp(vf p, vf n) { return _mm512_scalef_ps(p, n); }
INLINE vf vfloor(vf y) { return _mm512_roundscale_ps(y, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); }
/* y - floor(y), exactly, in one instruction */
INLINE vf vfraction(vf y) { return _mm512_reduce_ps(y, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); }

/* 1 / x: the 14-bit estimate and one Newton step (error about 2^-28), a few times cheaper than a divide. */
INLINE vf vrcp(vf x)
{
    const vf r = _mm512_rcp14_ps(x);
    return vmul(r, _mm512_fnmadd_ps(x, r, vset(2.0f)));
}

/* vsum_lanes(p): lane j of the result is the sum of p[j]'s lanes, for W vectors p[0..W-1] (W time steps).
 * Each level of the tree halves the number of vectors: a blend keeps one half of a pair's lanes, a two-source
 * permute brings the other halves next to them, one add sums them: 15 adds for 16 sums instead of 16
 * horizontal reductions. The tree leaves the sum of its input k in lane bitreverse(k), so it reads its
 * input k from p[TREE_INPUT(k)], TREE_INPUT(k) = bitreverse(k). */
#define TREE_INPUT(k) ((((k) & 1) << 3) | (((k) & 2) << 1) | (((k) & 4) >> 1) | (((k) & 8) >> 3))
INLINE vf pair_halves(vf a, vf b, __mmask16 keep_a, __m512i other)
{
    return vadd(_mm512_mask_blend_ps(keep_a, b, a), _mm512_permutex2var_ps(a, other, b));
}
INLINE vf vsum_lanes(const vf *p)
{
    /* indices 0-15 pick from a, 16-31 from b; _mm512_set_epi32 lists lane 15 first */
    const __m512i i1 = _mm512_set_epi32(23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8);
    const __m512i i2 = _mm512_set_epi32(27, 26, 25, 24, 15, 14, 13, 12, 19, 18, 17, 16, 7, 6, 5, 4);
    const __m512i i3 = _mm512_set_epi32(29, 28, 15, 14, 25, 24, 11, 10, 21, 20, 7, 6, 17, 16, 3, 2);
    const __m512i i4 = _mm512_set_epi32(30, 15, 28, 13, 26, 11, 24, 9, 22, 7, 20, 5, 18, 3, 16, 1);
    vf s1[8], s2[4], s3[2];
    /* 256-bit halves, then 128-bit quarters within them, then lane pairs, then single lanes */
    for (int i = 0; i < 8; i++) s1[i] = pair_halves(p[TREE_INPUT(2 * i)], p[TREE_INPUT(2 * i + 1)], 0x00FF, i1);
    for (int i = 0; i < 4; i++) s2[i] = pair_halves(s1[2 * i], s1[2 * i + 1], 0x0F0F, i2);
    for (int i = 0; i < 2; i++) s3[i] = pair_halves(s2[2 * i], s2[2 * i + 1], 0x3333, i3);
    return pair_halves(s3[0], s3[1], 0x5555, i4);
}

/* out[4 t + g] = r[g][t] for W steps t of 4 rows (4 vectors): pairs of rows interleaved, then the pairs. */
INLINE void vstore_interleaved4(float *out, const vf *r)
{
    const __m512i lo = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const __m512i hi = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
    const __m512i pairs_lo = _mm512_set_epi32(23, 22, 7, 6, 21, 20, 5, 4, 19, 18, 3, 2, 17, 16, 1, 0);
    const __m512i pairs_hi = _mm512_set_epi32(31, 30, 15, 14, 29, 28, 13, 12, 27, 26, 11, 10, 25, 24, 9, 8);
    const vf a_lo = _mm512_permutex2var_ps(r[0], lo, r[1]), a_hi = _mm512_permutex2var_ps(r[0], hi, r[1]);
    const vf b_lo = _mm512_permutex2var_ps(r[2], lo, r[3]), b_hi = _mm512_permutex2var_ps(r[2], hi, r[3]);
    vstore(out, _mm512_permutex2var_ps(a_lo, pairs_lo, b_lo));
    vstore(out + 16, _mm512_permutex2var_ps(a_lo, pairs_hi, b_lo));
    vstore(out + 32, _mm512_permutex2var_ps(a_hi, pairs_lo, b_hi));
    vstore(out + 48, _mm512_permutex2var_ps(a_hi, pairs_hi, b_hi));
}

#elif defined(__AVX2__) && defined(__FMA__) && !defined(SCAN_SCALAR)
#include <immintrin.h>
#define W 8
typedef __m256 vf;
INLINE vf vzero(void) { return _mm256_setzero_ps(); }
INLINE vf vset(float a) { return _mm256_set1_ps(a); }
INLINE vf vload(const float *p) { return _mm256_loadu_ps(p); }
INLINE void vstore(float *p, vf a) { _mm256_storeu_ps(p, a); }
INLINE vf vadd(vf a, vf b) { return _mm256_add_ps(a, b); }
INLINE vf vsub(vf a, vf b) { return _mm256_sub_ps(a, b); }
INLINE vf vmul(vf a, vf b) { return _mm256_mul_ps(a, b); }
INLINE vf vdiv(vf a, vf b) { return _mm256_div_ps(a, b); }
INLINE vf vfma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
INLINE vf vmax(vf a, vf b) { return _mm256_max_ps(a, b); }
INLINE vf vmin(vf a, vf b) { return _mm256_min_ps(a, b); }
INLINE float vsum(vf a)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}
INLINE vf vselect_nonneg(vf x, vf a, vf b) { return _mm256_blendv_ps(b, a, _mm256_cmp_ps(x, vzero(), _CMP_GE_OQ)); }

/* p 2^n for integral n, with 2^n built in the exponent bits: exact for n in [-126, 127]; below, 0 (where the
 * product would be subnormal or 0: flushed), above, inf. */
INLINE vf vldexp(vf p, vf n)
{
    const vf under = _mm256_cmp_ps(n, vset(-126.0f), _CMP_LT_OQ), over = _mm256_cmp_ps(n, vset(127.0f), _CMP_GT_OQ);
    n = _mm256_min_ps(vset(127.0f), _mm256_max_ps(vset(-126.0f), n));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    const vf r = _mm256_andnot_ps(under, vmul(p, _mm256_castsi256_ps(e)));
    return _mm256_blendv_ps(r, vset(INFINITY), over);
}
INLINE vf vfloor(vf y) { return _mm256_floor_ps(y); }
INLINE vf vfraction(vf y) { return vsub(y, vfloor(y)); }

INLINE vf vrcp(vf x) { return vdiv(vset(1.0f), x); }

/* As the AVX-512 version; this tree leaves the sum of its input k in lane 4 (k mod 2) + k / 2. */
#define TREE_INPUT(k) ((((k) & 1) << 2) | ((k) >> 1))
INLINE vf vsum_lanes(const vf *p)
{
    vf s1[4], s2[2];
    for (int i = 0; i < 4; i++)  /* 128-bit halves: (a.lo + a.hi | b.lo + b.hi) */
    {
        const vf a = p[TREE_INPUT(2 * i)], b = p[TREE_INPUT(2 * i + 1)];
        s1[i] = vadd(_mm256_blend_ps(a, b, 0xF0), _mm256_permute2f128_ps(a, b, 0x21));
    }
    for (int i = 0; i < 2; i++)  /* pairs of lanes within each half */
        s2[i] = vadd(_mm256_blend_ps(s1[2 * i], s1[2 * i + 1], 0xCC), _mm256_shuffle_ps(s1[2 * i], s1[2 * i + 1], 0x4E));
    return vadd(_mm256_shuffle_ps(s2[0], s2[1], 0x88), _mm256_shuffle_ps(s2[0], s2[1], 0xDD));
}

/* out[4 t + g] = r[g][t] for W steps t of 4 rows: the classic 4 x 8 transpose. */
INLINE void vstore_interleaved4(float *out, const vf *r)
{
    const vf a_lo = _mm256_unpacklo_ps(r[0], r[1]), a_hi = _mm256_unpackhi_ps(r[0], r[1]);
    const vf b_lo = _mm256_unpacklo_ps(r[2], r[3]), b_hi = _mm256_unpackhi_ps(r[2], r[3]);
    const vf t04 = _mm256_shuffle_ps(a_lo, b_lo, 0x44), t15 = _mm256_shuffle_ps(a_lo, b_lo, 0xEE);
    const vf t26 = _mm256_shuffle_ps(a_hi, b_hi, 0x44), t37 = _mm256_shuffle_ps(a_hi, b_hi, 0xEE);
    vstore(out, _mm256_permute2f128_ps(t04, t15, 0x20));
    vstore(out + 8, _mm256_permute2f128_ps(t26, t37, 0x20));
    vstore(out + 16, _mm256_permute2f128_ps(t04, t15, 0x31));
    vstore(out + 24, _mm256_permute2f128_ps(t26, t37, 0x31));
}

#else
#define W 1
typedef float vf;
INLINE vf vzero(void) { return 0.0f; }
INLINE vf vset(float a) { return a; }
INLINE vf vload(const float *p) { return *p; }
INLINE void vstore(float *p, vf a) { *p = a; }
INLINE vf vadd(vf a, vf b) { return a + b; }
INLINE vf vsub(vf a, vf b) { return a - b; }
INLINE vf vmul(vf a, vf b) { return a * b; }
INLINE vf vdiv(vf a, vf b) { return a / b; }
INLINE vf vfma(vf a, vf b, vf c) { return a * b + c; }
INLINE vf vmax(vf a, vf b) { return a > b ? a : b; }
INLINE vf vmin(vf a, vf b) { return a < b ? a : b; }
INLINE float vsum(vf a) { return a; }
INLINE vf vselect_nonneg(vf x, vf a, vf b) { return x >= 0.0f ? a : b; }
/* beyond +-300 the result is 0 or inf anyway; the clamp keeps the conversion to int defined */
INLINE vf vldexp(vf p, vf n) { return ldexpf(p, (int)fmaxf(-300.0f, fminf(300.0f, n))); }
INLINE vf vfloor(vf y) { return floorf(y); }
INLINE vf vfraction(vf y) { return y - floorf(y); }
INLINE vf vrcp(vf x) { return 1.0f / x; }
INLINE vf vsum_lanes(const vf *p) { return p[0]; }
INLINE void vstore_interleaved4(float *out, const vf *r)
{
    for (int g = 0; g < 4; g++) out[g] = r[g];
}
#endif

INLINE vf vexp2_fraction(vf f)  /* 2^f for f in [0, 1) */
{
    vf p = vfma(vset(EXP2_C6), f, vset(EXP2_C5));
    p = vfma(p, f, vset(EXP2_C4));
    p = vfma(p, f, vset(EXP2_C3));
    p = vfma(p, f, vset(EXP2_C2));
    p = vfma(p, f, vset(EXP2_C1));
    return vfma(p, f, vset(1.0f));
}

/* 2^y for any finite y (|y| >= 2^23 is integral: fraction 0). The hot loops take exp(dt A) as
 * 2^(dt * (A log2 e)): that exponent carries a relative rounding error of about 2^-23, so the result is within
 * |dt A| 2^-23 (relative) of exp of the exact product, the same order as rounding dt * A itself (what the
 * reference does before its exp), and it saves the range reduction. */
INLINE vf vexp2(vf y)
{
#ifdef VLDEXP_FLOORS
    return vldexp(vexp2_fraction(vfraction(y)), y);
#else
    const vf n = vfloor(y);
    return vldexp(vexp2_fraction(vsub(y, n)), n);
#endif
}

/* exp(x) to about 1 ulp for the elementwise parts: floor(x log2 e) and the remainder with ln 2 in two parts
 * (LN2_HI has few bits, so n LN2_HI is exact); clamped where exp is 0 or inf in float anyway (and where the
 * remainder would lose accuracy); NaN passes (max and min return their second operand on NaN). */
#define LN2_HI 0.693359375f
#define LN2_LO (-2.12194440e-4f)
INLINE vf vexp(vf x)
{
    x = vmin(vset(89.0f), vmax(vset(-104.0f), x));
    const vf n = vfloor(vmul(x, vset(LOG2E)));
    vf r = vfma(n, vset(-LN2_HI), x);
    r = vfma(n, vset(-LN2_LO), r);
    return vldexp(vexp2_fraction(vmul(r, vset(LOG2E))), n);
}

/* Row buffers are padded to a multiple of 16 floats (the widest W), which keeps every row 64-byte aligned. */
#define PAD16(n) (((n) + 15) / 16 * 16)

INLINE vf vload_part(const float *p, int64_t n)
{
    if (n >= W) return vload(p);
    float tmp[W] = {0};
    memcpy(tmp, p, (size_t)n * sizeof(float));
    return vload(tmp);
}

INLINE void vstore_part(float *p, vf a, int64_t n)
{
    if (n >= W) {
        vstore(p, a);
        return;
    }
    float tmp[W];
    vstore(tmp, a);
    memcpy(p, tmp, (size_t)n * sizeof(float));
}

/* log(1 + e) for e in [0, 1]: 2 atanh(s) with s = e / (2 + e) <= 1/3, whose odd series converges by 1/9 a
 * term; exact in relative terms for tiny e, where forming 1 + e would lose e's digits. */
INLINE vf vlog1p_unit(vf e)
{
    const vf s = vmul(e, vrcp(vadd(vset(2.0f), e))), s2 = vmul(s, s);
    vf p = vfma(vset(1.0f / 15), s2, vset(1.0f / 13));
    p = vfma(p, s2, vset(1.0f / 11));
    p = vfma(p, s2, vset(1.0f / 9));
    p = vfma(p, s2, vset(1.0f / 7));
    p = vfma(p, s2, vset(1.0f / 5));
    p = vfma(p, s2, vset(1.0f / 3));
    p = vfma(p, s2, vset(1.0f));
    return vmul(vadd(s, s), p);
}

/* 1 / (1 + exp(-x)) without overflow: e = exp(-|x|) <= 1 on both sides. */
INLINE vf vsigmoid(vf x)
{
    const vf e = vexp(vmin(x, vsub(vzero(), x)));
    return vmul(vselect_nonneg(x, vset(1.0f), e), vrcp(vadd(vset(1.0f), e)));
}

/* Channels go through the recurrences in groups of G = GROUP (or single ones for the rest of a range): the
 * group shares each step's loads of B, C and its read-modify-write of gB, gC, which otherwise make the
 * backward pass wait on L2, and its G independent chains keep the vector pipes busy. */
#define GROUP 4
_Static_assert(GROUP == 4, "vstore_group interleaves groups of 4");

/* out[t G + g] = r[g][t] for W steps t of the G rows: the group's per-step scalars next to each other, so that
 * the recurrences reach all of them from one pointer. */
INLINE void vstore_group(float *out, const vf *r, const int G)
{
    if (G == 4)
        vstore_interleaved4(out, r);
    else
        vstore(out, r[0]);
}

/* The per-step inputs of a group of G rows (row g at offset row0 + g L of delta, u, z, g), a block of W steps of
 * all rows at a time (their exp chains side by side). For the recurrences, interleaved [t G + g]: dt, dt * u
 * and, in backward (gyg not NULL), gy = g silu(z) (g itself without a gate). For backward's epilogue, per row:
 * dt, softplus' derivative (sigmoid of its argument), sigmoid(z) and gy. */
INLINE void group_prologue(const int G, const float *delta, const float *u, const float *z, const float *g,
                           const float *bias, int softplus, int64_t L, int64_t row0, float *dtg, float *dtug,
                           float *gyg, float *const *dt, float *const *dsp, float *const *sz, float *const *gy)
{
    for (int64_t t = 0; t < L; t += W) {
        const int64_t n = L - t;
        vf vdt[GROUP], vdtu[GROUP], vgy[GROUP];
        for (int i = 0; i < G; i++) {
            const int64_t at = row0 + i * L + t;
            const vf pre = vadd(vload_part(delta + at, n), vset(bias ? bias[i] : 0.0f));
            vf d = pre, s = vset(1.0f);
            if (softplus) {  /* softplus(x) = max(x, 0) + log(1 + exp(-|x|)), its derivative sigmoid(x) */
                const vf e = vexp(vmin(pre, vsub(vzero(), pre)));
                d = vadd(vmax(pre, vzero()), vlog1p_unit(e));
                if (gyg) s = vmul(vselect_nonneg(pre, vset(1.0f), e), vrcp(vadd(vset(1.0f), e)));
            }
            vdt[i] = d;
            vdtu[i] = vmul(d, vload_part(u + at, n));
            if (gyg) {
                vstore(dt[i] + t, d);
                vstore(dsp[i] + t, s);
                vgy[i] = vload_part(g + at, n);
                if (z) {
                    const vf zz = vload_part(z + at, n), sig = vsigmoid(zz);
                    vstore(sz[i] + t, sig);
                    vgy[i] = vmul(vgy[i], vmul(zz, sig));
                }
                vstore(gy[i] + t, vgy[i]);
            }
        }
        vstore_group(dtg + t * G, vdt, G);
        vstore_group(dtug + t * G, vdtu, G);
        if (gyg) vstore_group(gyg + t * G, vgy, G);
    }
}

/* The (batch, d_inner, L) rows a group reads and writes are read in short bursts between long compute loops,
 * too short for the hardware prefetchers to run ahead, so the compute loops fetch them into L2 ahead of time
 * instead, one cache line per step: the next group's input rows and this group's output rows. Consecutive
 * channels' rows are contiguous, so a group's rows of one tensor are one block. */
#define PREFETCH_BLOCKS 8
typedef struct {
    const char *start[PREFETCH_BLOCKS];
    int64_t bytes[PREFETCH_BLOCKS];
    int write[PREFETCH_BLOCKS];
    int n, block;          /* blocks listed; the block being fetched */
    int64_t offset;        /* within it */
} prefetcher;

static void prefetch_add(prefetcher *pf, const float *start, int64_t floats, int write)
{
    if (!start || floats <= 0 || pf->n == PREFETCH_BLOCKS) return;
    pf->start[pf->n] = (const char *)start;
    pf->bytes[pf->n] = floats * (int64_t)sizeof(float);
    pf->write[pf->n++] = write;
}

INLINE void prefetch_line(prefetcher *pf)
{
    if (pf->block >= pf->n) return;
    const char *line = pf->start[pf->block] + pf->offset;
    if (pf->write[pf->block])
        __builtin_prefetch(line, 1, 2);
    else
        __builtin_prefetch(line, 0, 2);
    pf->offset += 64;
    if (pf->offset >= pf->bytes[pf->block]) {
        pf->offset = 0;
        pf->block++;
    }
}

/* Fixed-size local arrays (no variable-length ones: GCC would keep those on the stack even where inlining
 * makes their size constant) hold the states of up to NV_LOCAL vectors per row; wider states use scratch. */
#define NV_LOCAL 2

/* The recurrence over G rows of one batch. Per-step inputs are interleaved, [t][g]: dt and dtu (dt * u) at
 * [t G + g]; a2: G x NV vectors of A[d] log2(e) (see vexp2); Bt, Ct: this batch's (L, NP).
 * want_y (a constant): writes y[g], the core output sum_n C x, per row. backward (a constant): writes, per
 * step and row (NP floats at [(t G + g) NP]), the decay dAs = exp(dt A) and ws = dAs x_{t-1} (what the adjoint
 * needs of the state), and adds x_t gy_t (gy at [t G + g]), summed over the group, into gC.
 * p: G x W vectors of scratch; wide: G x NV more when NV > NV_LOCAL. */
INLINE void group_states(const int G, const int NV, const int want_y, const int backward, const vf *a2,
                         const float *dtg, const float *dtug, const float *Bt, const float *Ct, int64_t L,
                         float *const *y, float *ws, float *dAs, const float *gyg, float *gC, vf *p, vf *wide,
                         prefetcher *pf)
{
    const int64_t NP = (int64_t)NV * W;
    vf x_local[GROUP * NV_LOCAL];
    vf *x = NV <= NV_LOCAL ? x_local : wide;
    for (int i = 0; i < G * NV; i++) x[i] = vzero();
    for (int64_t t0 = 0; t0 < L; t0 += W) {
        const int T = L - t0 < W ? (int)(L - t0) : W;
        for (int j = 0; j < T; j++) {
            const int64_t t = t0 + j;
            prefetch_line(pf);
            vf acc[GROUP];
            for (int g = 0; g < G; g++) acc[g] = vzero();
            for (int k = 0; k < NV; k++) {
                const int64_t o = t * NP + k * W, og = t * G * NP + k * W;
                const vf Bk = vload(Bt + o);
                vf gCk = backward ? vload(gC + o) : vzero();
                for (int g = 0; g < G; g++) {
                    const int i = g * NV + k;
                    const vf dA = vexp2(vmul(vset(dtg[t * G + g]), a2[i])), w = vmul(dA, x[i]);
                    x[i] = vfma(vset(dtug[t * G + g]), Bk, w);
                    if (want_y) acc[g] = vfma(vload(Ct + o), x[i], acc[g]);
                    if (backward) {
                        vstore(ws + og + g * NP, w);
                        vstore(dAs + og + g * NP, dA);
                        gCk = vfma(x[i], vset(gyg[t * G + g]), gCk);
                    }
                }
                if (backward) vstore(gC + o, gCk);
            }
            if (want_y)
                for (int g = 0; g < G; g++) p[g * W + j] = acc[g];
        }
        if (want_y)
            for (int g = 0; g < G; g++) {
                for (int j = T; j < W; j++) p[g * W + j] = vzero();
                vstore(y[g] + t0, vsum_lanes(p + g * W));  /* y is padded: lanes past L land in the padding */
            }
    }
}

/* The adjoint recurrence h_t = C_t gy_t + exp(dt_{t+1} A) h_{t+1} over G rows, in reverse, on what
 * group_states stored (ws, dAs; dt, dtu, gy interleaved as there). Adds into gB (this batch's (L, NP)) and
 * ga_out (G x NV vectors of gA[d]); writes per row the per-t gradients wrt dt * u (g_dtu) and wrt dt through
 * the decay (g_dt). pu, pt: G x W vectors of scratch each; wide: 3 G NV more when NV > NV_LOCAL. */
INLINE void group_adjoint(const int G, const int NV, const vf *a, const float *dtg, const float *dtug,
                          const float *gyg, const float *Bt, const float *Ct, const float *ws, const float *dAs,
                          int64_t L, float *gB, vf *ga_out, float *const *g_dtu, float *const *g_dt, vf *pu, vf *pt,
                          vf *wide, prefetcher *pf)
{
    const int64_t NP = (int64_t)NV * W;
    vf h_local[GROUP * NV_LOCAL], dA_next_local[GROUP * NV_LOCAL], ga_local[GROUP * NV_LOCAL];
    const int local = NV <= NV_LOCAL;
    vf *h = local ? h_local : wide, *dA_next = local ? dA_next_local : wide + G * NV;
    vf *ga = local ? ga_local : wide + 2 * G * NV;  /* accumulated here, added to ga_out at the end */
    for (int i = 0; i < G * NV; i++) h[i] = dA_next[i] = ga[i] = vzero();
    for (int64_t t0 = (L - 1) / W * W; t0 >= 0; t0 -= W) {
        const int T = L - t0 < W ? (int)(L - t0) : W;
        for (int g = 0; g < G; g++)
            for (int j = T; j < W; j++) pu[g * W + j] = pt[g * W + j] = vzero();
        for (int j = T - 1; j >= 0; j--) {
            const int64_t t = t0 + j;
            prefetch_line(pf);
            vf su[GROUP], st[GROUP];
            for (int g = 0; g < G; g++) su[g] = st[g] = vzero();
            for (int k = 0; k < NV; k++) {
                const int64_t o = t * NP + k * W, og = t * G * NP + k * W;
                const vf Bk = vload(Bt + o), Ck = vload(Ct + o);
                vf gBk = vload(gB + o);
                for (int g = 0; g < G; g++) {
                    const int i = g * NV + k;
                    const vf dA = vload(dAs + og + g * NP);
                    h[i] = vfma(dA_next[i], h[i], vmul(Ck, vset(gyg[t * G + g])));
                    gBk = vfma(h[i], vset(dtug[t * G + g]), gBk);
                    su[g] = vfma(h[i], Bk, su[g]);
                    /* q = h_t exp(dt_t A) x_{t-1}: the gradient wrt dt_t * A */
                    const vf q = vmul(h[i], vload(ws + og + g * NP));
                    st[g] = vfma(q, a[i], st[g]);
                    ga[i] = vfma(q, vset(dtg[t * G + g]), ga[i]);
                    dA_next[i] = dA;
                }
                vstore(gB + o, gBk);
            }
            for (int g = 0; g < G; g++) {
                pu[g * W + j] = su[g];
                pt[g * W + j] = st[g];
            }
        }
        for (int g = 0; g < G; g++) {
            vstore(g_dtu[g] + t0, vsum_lanes(pu + g * W));
            vstore(g_dt[g] + t0, vsum_lanes(pt + g * W));
        }
    }
    for (int i = 0; i < G * NV; i++) ga_out[i] = vadd(ga_out[i], ga[i]);
}

/* Constant group size and NV for the common cases, so that the states live in registers. */
#define DISPATCH(G, NV, call) \
    do { \
        if ((G) == GROUP && (NV) == 1) { const int g_ = GROUP, nv_ = 1; call; } \
        else if ((G) == GROUP && (NV) == 2) { const int g_ = GROUP, nv_ = 2; call; } \
        else if ((G) == GROUP) { const int g_ = GROUP, nv_ = (int)(NV); call; } \
        else if ((NV) == 1) { const int g_ = 1, nv_ = 1; call; } \
        else { const int g_ = 1, nv_ = (int)(NV); call; } \
    } while (0)

/* Per-row scratch: backward's dt, softplus', gy, sigmoid(z), g_dtu, g_dt, y (L floats each, padded; forward
 * uses the first for y); then for the group: dt, dt * u, gy interleaved (GROUP L each, padded) and ws, the
 * decays (GROUP L NP each). */
#define ROW_BUFFERS 7
static int64_t group_work(int64_t L, int64_t NP) { return GROUP * (ROW_BUFFERS + 3) * PAD16(L) + 2 * GROUP * L * NP; }

int64_t scan_lanes(void) { return W; }

int64_t scan_group(void) { return GROUP; }

/* Then the trees' inputs (2 x GROUP x W vectors) and the states of wide rows (3 x GROUP x NV vectors). */
int64_t scan_forward_work(int64_t L, int64_t NP) { return group_work(L, NP) + (2 * GROUP * W + 3 * GROUP * NP / W) * W; }

int64_t scan_backward_work(int64_t L, int64_t NP) { return scan_forward_work(L, NP); }

/* Where the next group after (b, dg, G rows) in [d0, d1) starts, and its size (0 after the last one). */
static void next_group(int64_t b, int64_t dg, int G, int64_t batch, int64_t d_inner, int64_t L, int64_t d0,
                       int64_t d1, int64_t *start, int64_t *floats)
{
    const int same_batch = dg + G < d1;
    const int64_t nb = same_batch ? b : b + 1, nd = same_batch ? dg + G : d0;
    *start = (nb * d_inner + nd) * L;
    *floats = nb < batch ? (d1 - nd >= GROUP ? GROUP : 1) * L : 0;
}

/* out: (batch, d_inner, L). work: scan_forward_work floats, 64-byte aligned. */
void scan_forward(const float *u, const float *delta, const float *bias, int64_t softplus, const float *A,
                  const float *Bt, const float *Ct, const float *D, const float *z, float *out, float *work,
                  int64_t batch, int64_t d_inner, int64_t L, int64_t NP, int64_t d0, int64_t d1)
{
    if (L == 0) return;
    const int64_t Lp = PAD16(L), NV = NP / W;
    float *y[GROUP];
    for (int g = 0; g < GROUP; g++) y[g] = work + g * ROW_BUFFERS * Lp;
    float *dtg = work + GROUP * ROW_BUFFERS * Lp, *dtug = dtg + GROUP * Lp;
    vf *p = (vf *)(work + group_work(L, NP)), *wide = p + 2 * GROUP * W;
    vf a2[GROUP * NV];
    for (int64_t b = 0; b < batch; b++) {
        const float *Bb = Bt + b * L * NP, *Cb = Ct + b * L * NP;
        for (int64_t dg = d0; dg < d1;) {
            const int G = d1 - dg >= GROUP ? GROUP : 1;
            for (int g = 0; g < G; g++)
                for (int64_t k = 0; k < NV; k++) a2[g * NV + k] = vmul(vload(A + (dg + g) * NP + k * W), vset(LOG2E));
            const int64_t row0 = (b * d_inner + dg) * L;
            const float *bias_g = bias ? bias + dg : NULL;
            if (G == GROUP)
                group_prologue(GROUP, delta, u, NULL, NULL, bias_g, (int)softplus, L, row0, dtg, dtug, NULL, NULL, NULL, NULL, NULL);
            else
                group_prologue(1, delta, u, NULL, NULL, bias_g, (int)softplus, L, row0, dtg, dtug, NULL, NULL, NULL, NULL, NULL);
            /* fetched ahead: this group's gate and output rows, the next group's inputs */
            prefetcher pf = {0};
            int64_t here = (b * d_inner + dg) * L, next, next_n;
            next_group(b, dg, G, batch, d_inner, L, d0, d1, &next, &next_n);
            prefetch_add(&pf, z ? z + here : NULL, G * L, 0);
            prefetch_add(&pf, out + here, G * L, 1);
            prefetch_add(&pf, delta + next, next_n, 0);
            prefetch_add(&pf, u + next, next_n, 0);
            DISPATCH(G, NV, group_states(g_, nv_, 1, 0, a2, dtg, dtug, Bb, Cb, L, y, NULL, NULL, NULL, NULL, p, wide, &pf));
            for (int g = 0; g < G; g++) {
                const int64_t d = dg + g, row = (b * d_inner + d) * L;
                const vf Dd = vset(D ? D[d] : 0.0f);
                for (int64_t t = 0; t < L; t += W) {
                    vf o = vfma(Dd, vload_part(u + row + t, L - t), vload(y[g] + t));
                    if (z) {
                        const vf zz = vload_part(z + row + t, L - t);
                        o = vmul(o, vmul(zz, vsigmoid(zz)));
                    }
                    vstore_part(out + row + t, o, L - t);
                }
            }
            dg += G;
        }
    }
}

/* g: gradient wrt out. Writes gu, gdelta (batch, d_inner, L), gA (d_inner, NP) and, when not NULL, gbias,
 * gD (d_inner,) and gz (batch, d_inner, L; needs z) for d in [d0, d1), and gB, gC (batch, L, NP): this range's
 * partial sums over its channels (scan_sum_partials adds the ranges up). work: scan_backward_work floats,
 * 64-byte aligned. */
void scan_backward(const float *u, const float *delta, const float *bias, int64_t softplus, const float *A,
                   const float *Bt, const float *Ct, const float *D, const float *z, const float *g,
                   float *gu, float *gdelta, float *gA, float *gbias, float *gD, float *gz, float *gB, float *gC,
                   float *work, int64_t batch, int64_t d_inner, int64_t L, int64_t NP, int64_t d0, int64_t d1)
{
    if (L == 0) return;
    const int64_t Lp = PAD16(L), NV = NP / W;
    float *dt[GROUP], *dsp[GROUP], *gy[GROUP], *sz[GROUP], *g_dtu[GROUP], *g_dt[GROUP], *y[GROUP];
    for (int i = 0; i < GROUP; i++) {
        float *r = work + i * ROW_BUFFERS * Lp;
        dt[i] = r, dsp[i] = r + Lp, gy[i] = r + 2 * Lp, sz[i] = r + 3 * Lp;
        g_dtu[i] = r + 4 * Lp, g_dt[i] = r + 5 * Lp, y[i] = r + 6 * Lp;
    }
    float *dtg = work + GROUP * ROW_BUFFERS * Lp, *dtug = dtg + GROUP * Lp, *gyg = dtug + GROUP * Lp;
    float *ws = gyg + GROUP * Lp, *dAs = ws + GROUP * L * NP;
    vf *pu = (vf *)(work + group_work(L, NP)), *pt = pu + GROUP * W, *wide = pt + GROUP * W;
    vf a[GROUP * NV], a2[GROUP * NV], ga[GROUP * NV];
    memset(gA + d0 * NP, 0, (size_t)((d1 - d0) * NP) * sizeof(float));
    memset(gB, 0, (size_t)(batch * L * NP) * sizeof(float));  /* this range's partial sums, zeroed by its own thread */
    memset(gC, 0, (size_t)(batch * L * NP) * sizeof(float));
    for (int64_t d = d0; d < d1; d++) {
        if (gbias) gbias[d] = 0.0f;
        if (gD) gD[d] = 0.0f;
    }
    for (int64_t b = 0; b < batch; b++) {
        const float *Bb = Bt + b * L * NP, *Cb = Ct + b * L * NP;
        float *gBb = gB + b * L * NP, *gCb = gC + b * L * NP;
        for (int64_t dg = d0; dg < d1;) {
            const int G = d1 - dg >= GROUP ? GROUP : 1;
            for (int i = 0; i < G; i++)
                for (int64_t k = 0; k < NV; k++) {
                    const int64_t d = dg + i;
                    a[i * NV + k] = vload(A + d * NP + k * W);
                    a2[i * NV + k] = vmul(a[i * NV + k], vset(LOG2E));
                    ga[i * NV + k] = vload(gA + d * NP + k * W);
                }
            const int64_t row0 = (b * d_inner + dg) * L;
            const float *bias_g = bias ? bias + dg : NULL;
            if (G == GROUP)
                group_prologue(GROUP, delta, u, z, g, bias_g, (int)softplus, L, row0, dtg, dtug, gyg, dt, dsp, sz, gy);
            else
                group_prologue(1, delta, u, z, g, bias_g, (int)softplus, L, row0, dtg, dtug, gyg, dt, dsp, sz, gy);
            /* fetched ahead: this group's output rows, the next group's inputs */
            prefetcher pf = {0};
            int64_t here = (b * d_inner + dg) * L, next, next_n;
            next_group(b, dg, G, batch, d_inner, L, d0, d1, &next, &next_n);
            prefetch_add(&pf, gu + here, G * L, 1);
            prefetch_add(&pf, gdelta + here, G * L, 1);
            prefetch_add(&pf, gz ? gz + here : NULL, G * L, 1);
            prefetch_add(&pf, delta + next, next_n, 0);
            prefetch_add(&pf, u + next, next_n, 0);
            prefetch_add(&pf, g + next, next_n, 0);
            prefetch_add(&pf, z ? z + next : NULL, next_n, 0);
            if (gz)  /* the core output, needed only for the gate's gradient */
                DISPATCH(G, NV, group_states(g_, nv_, 1, 1, a2, dtg, dtug, Bb, Cb, L, y, ws, dAs, gyg, gCb, pu, wide, &pf));
            else
                DISPATCH(G, NV, group_states(g_, nv_, 0, 1, a2, dtg, dtug, Bb, Cb, L, y, ws, dAs, gyg, gCb, pu, wide, &pf));
            DISPATCH(G, NV, group_adjoint(g_, nv_, a, dtg, dtug, gyg, Bb, Cb, ws, dAs, L, gBb, ga, g_dtu, g_dt, pu, pt,
                                          wide, &pf));
            for (int i = 0; i < G; i++) {
                const int64_t d = dg + i, row = (b * d_inner + d) * L;
                for (int64_t k = 0; k < NV; k++) vstore(gA + d * NP + k * W, ga[i * NV + k]);
                const vf Dd = vset(D ? D[d] : 0.0f);
                vf sum_gd = vzero(), sum_gyu = vzero();
                for (int64_t t = 0; t < L; t += W) {
                    const int64_t n = L - t;
                    /* the padded rows are zero past L (u, g loaded as zeros there), so the sums need no mask */
                    const vf uu = vload_part(u + row + t, n), gyt = vload(gy[i] + t), gdtu = vload(g_dtu[i] + t);
                    const vf gd = vmul(vfma(gdtu, uu, vload(g_dt[i] + t)), vload(dsp[i] + t));
                    vstore_part(gdelta + row + t, gd, n);
                    vstore_part(gu + row + t, vfma(gdtu, vload(dt[i] + t), vmul(gyt, Dd)), n);
                    sum_gd = vadd(sum_gd, gd);
                    sum_gyu = vfma(gyt, uu, sum_gyu);
                    if (gz) {  /* g (y + D u) d silu/dz, d silu/dz = sigmoid(z) (1 + z (1 - sigmoid(z))) */
                        const vf zz = vload_part(z + row + t, n), s = vload(sz[i] + t);
                        const vf dsilu = vmul(s, vfma(zz, vsub(vset(1.0f), s), vset(1.0f)));
                        const vf full = vfma(Dd, uu, vload(y[i] + t));
                        vstore_part(gz + row + t, vmul(vmul(vload_part(g + row + t, n), full), dsilu), n);
                    }
                }
                if (gbias) gbias[d] += vsum(sum_gd);
                if (gD) gD[d] += vsum(sum_gyu);
            }
            dg += G;
        }
    }
}

/* out (batch, N, L), contiguous = the sum of parts (nparts, batch, L, NP) over parts, d_state back in its place
 * and without the padding: the gradients wrt B or C from the ranges' partial sums. */
void scan_sum_partials(const float *parts, int64_t nparts, int64_t batch, int64_t L, int64_t NP, int64_t N, float *out)
{
    const int64_t part = batch * L * NP;
    for (int64_t b = 0; b < batch; b++)
        for (int64_t n = 0; n < N; n++)
            for (int64_t t = 0; t < L; t++) {
                float sum = 0.0f;
                for (int64_t p = 0; p < nparts; p++) sum += parts[p * part + (b * L + t) * NP + n];
                out[(b * N + n) * L + t] = sum;
            }
}

/* Throughput probes for parity.bench.scanbound, compiled exactly like the kernel. */

/* reps passes over x[0, n) into y of exp as the recurrences compute exp(dt A): 2^(x * log2 e), one multiply
 * and vexp2. */
void bench_exp(const float *x, float *y, int64_t n, int64_t reps)
{
    for (int64_t r = 0; r < reps; r++)
        for (int64_t i = 0; i + W <= n; i += W) vstore(y + i, vexp2(vmul(vload(x + i), vset(LOG2E))));
}

/* iters rounds of 12 independent vector FMA chains (enough to fill two FMA pipes of latency 4 to 6):
 * iters * 12 * W fused multiply-adds. Returns a sum so the work is not optimised away. */
float bench_fma(int64_t iters)
{
    vf acc[12];
    for (int i = 0; i < 12; i++) acc[i] = vset(0.001f * (float)i);
    const vf m = vset(0.999999f), c = vset(1e-7f);
    for (int64_t r = 0; r < iters; r++)
        for (int i = 0; i < 12; i++) acc[i] = vfma(acc[i], m, c);
    vf s = vzero();
    for (int i = 0; i < 12; i++) s = vadd(s, acc[i]);
    return vsum(s);
}
