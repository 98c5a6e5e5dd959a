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
 * Layouts (float32): u, delta, z and their gradients share one row layout (scan_shape: row (b, d) at
 * b row_sb + d row_sd, its L steps contiguous), so they can be (batch, d_inner, L) tensors or channel blocks of
 * the (d, batch L) matmul results the mixer makes. out (forward) and g (backward) have their own: rows
 * (out_st == 1) or time-major (out_sd == 1: (batch, L, d_inner), what out_proj reads), written and read sixteen
 * channels at a time through a 16 x 16 transpose on AVX-512 (see STAGE), else four at a time through a 4 x W
 * one. A: (d_inner, NP); Bt, Ct: step t of batch b at
 * (b L + t) bc_st, NP floats from there (padded copies, or the mixer's x_proj output in place); bias, D:
 * (d_inner,) or NULL. Threads split the channels (whole groups; see simd.h): outputs indexed by d are written by
 * one thread only; gB and gC (sums over d) go to a per-thread partial buffer, which the threads add up once all
 * are done (scan_backward).
 *
 * The width comes from the compiler's target (-march=native): AVX-512 (W=16), AVX2+FMA (W=8), or plain C
 * (W=1), see simd.h; -mno-avx512f and -DSCAN_SCALAR force the narrower ones, so tests can check every path on one
 * machine. exp is our own (2^y: a degree-6 polynomial for the fraction and an exponent scale, about 1 ulp) so
 * that it inlines into the loops and keeps the state in registers.
 */
#ifdef SCAN_PHASES
#define _POSIX_C_SOURCE 200809L /* clock_gettime under -std=c11 */
#include <time.h>
#endif
#include "simd.h"

/* Per-phase timers, built only into the "phases" kernel variant (-DSCAN_PHASES; read by
 * parity.bench.scan.bench_scan_phases):
 * the seconds each thread spends in each phase of a group, added up over threads and calls until
 * scan_phase_seconds reads them. A clock read costs some 20 ns, a few per group of channels: noise next to the
 * microseconds a group takes, and nothing at all in the other builds. */
enum { PH_FW_PROLOGUE, PH_FW_RECURRENCE, PH_FW_EPILOGUE, PH_BW_PROLOGUE, PH_BW_STATES, PH_BW_ADJOINT, PH_BW_EPILOGUE,
       PHASES };
#ifdef SCAN_PHASES
static double phase_total[PHASES];
INLINE double phase_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
#define PHASES_START double phase_t = phase_now(), phase_acc[PHASES] = {0}
#define PHASE_DONE(k) do { const double now_ = phase_now(); phase_acc[k] += now_ - phase_t; phase_t = now_; } while (0)
#define PHASES_END \
    do { \
        for (int k_ = 0; k_ < PHASES; k_++) { \
            _Pragma("omp atomic") phase_total[k_] += phase_acc[k_]; \
        } \
    } while (0)
#else
#define PHASES_START do { } while (0)
#define PHASE_DONE(k) do { } while (0)
#define PHASES_END do { } while (0)
#endif

/* out[k] <- the seconds summed in phase k (PHASES of them, in the enum's order) since the last read, which
 * starts them again from zero. Returns 1 where the timers are built in, 0 (and zeros) elsewhere. */
int64_t scan_phase_seconds(double *out)
{
#ifdef SCAN_PHASES
    for (int k = 0; k < PHASES; k++) {
        out[k] = phase_total[k];
        phase_total[k] = 0.0;
    }
    return 1;
#else
    for (int k = 0; k < PHASES; k++) out[k] = 0.0;
    return 0;
#endif
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

/* Sizes and strides (in floats) of one call; see the layouts at the top. */
typedef struct {
    int64_t batch, d_inner, L, NP;
    int64_t row_sb, row_sd;          /* u, delta, z, gu, gdelta, gz: row (b, d) at b row_sb + d row_sd */
    int64_t bc_st;                   /* Bt, Ct: step t of batch b at (b L + t) bc_st */
    int64_t out_sb, out_sd, out_st;  /* out, g: (b, d, t) at b out_sb + d out_sd + t out_st (out_st may be < 0) */
    int64_t z_rev;                   /* z and gz rows run backwards in time (a mixer on the reversed sequence) */
    float out_scale;                 /* out = scale x the scan's output (g is scaled alike in backward) */
    /* delta from its low-rank projection instead of a delta tensor, when dt_low is not NULL: delta[b, d, t] =
     * sum_r dt_weight[d, r] dt_low[r, b L + t] (dt_low's rows dt_low_st apart), the Mamba mixer's dt_proj
     * computed where it is used instead of written out and read back */
    const float *dt_low, *dt_weight;
    int64_t dt_rank, dt_low_st;
} scan_shape;

/* The group's G rows: row g of u, delta, z (and their gradients) at rows[g]; out or g at orows[g] (rows layout)
 * or, time-major, from obase (channel dg, step 0) with step out_st. */
typedef struct {
    int64_t rows[GROUP], orows[GROUP], obase;
    int64_t b, dg;  /* the batch and the group's first channel */
} group_rows;

/* Time-major out (forward) and g (backward) go through a staging buffer of STAGE rows, 16 channels at a time, where
 * the width allows (AVX-512): each step's 16 channels are one whole 64-byte line, written or read once. Four groups
 * each storing or loading their own 16 bytes of every line (vstore_tmajor) touch L lines d_inner floats apart, which
 * share a few cache sets and leave L1 between one group and the next: measured at the original's shape, that cost
 * forward's epilogue 4 ms and backward's prologue 2 ms more than rows did; staged and fetched ahead (see
 * prefetcher), forward + backward take 4 ms less (33.6 against 37.9 ms). Blocks start at the thread's first channel,
 * so a whole block is 4 whole groups; the rest of a range (under 16 channels) goes group by group. */
#define STAGE 16
_Static_assert(STAGE == 4 * GROUP, "a staged block is four groups");

/* The first channel of dg's block of STAGE in [d0, d1), or -1 where that block goes group by group: rows layout,
 * a width without whole-line transposes, or fewer than STAGE channels left in the range. */
INLINE int64_t staged_block(const scan_shape *sh, int64_t dg, int64_t d0, int64_t d1)
{
#ifdef HAVE_TMAJOR16
    const int64_t s0 = d0 + (dg - d0) / STAGE * STAGE;
    if (sh->out_st != 1 && d1 - s0 >= STAGE) return s0;
#else
    (void)sh, (void)dg, (void)d0, (void)d1;
#endif
    return -1;
}

/* z's W values from step t of the row at z + row (backwards in time when z_rev), n of them left */
INLINE vf load_z(const float *z, int64_t row, int64_t t, int64_t n, const scan_shape *sh)
{
    return sh->z_rev ? vload_rev(z + row, sh->L, t, n) : vload_part(z + row + t, n);
}

/* ez <- exp(-|z|) over the gate's row, the exps of its sigmoid in a loop of their own (see group_prologue) */
INLINE void gate_exps(const float *z, int64_t row, const scan_shape *sh, float *ez)
{
    for (int64_t t = 0; t < sh->L; t += W) vstore(ez + t, vexp_neg_abs(load_z(z, row, t, sh->L - t, sh)));
}

/* The per-step inputs of a group of G rows. For the recurrences, interleaved [t G + g]: dt, dt * u and, in backward
 * (gyg not NULL), gy = g silu(z) (g itself without a gate). For backward's epilogue, per row: dt, softplus' derivative
 * (sigmoid of its argument), gy and, with a gate, gds = g silu'(z). scr: two padded rows of scratch per row. g comes
 * from gstage where that is not NULL: the group's rows of its staged block (see STAGE), else from its own layout.
 *
 * In stages, each a loop of short independent bodies over a row: the softplus' exp, its log, the gate's exp each
 * get their own loop. One body doing all of them per step is a dependency chain of some 130 cycles that fills the
 * scheduler long before the vector pipes are busy (measured: about a quarter of their throughput). */
INLINE void group_prologue(const int G, const float *delta, const float *u, const float *z, const float *g,
                           const float *gstage, const float *bias, int softplus, const scan_shape *sh, const group_rows *gr,
                           float *dtg, float *dtug, float *gyg, float *const *dt, float *const *dsp,
                           float *const *gds, float *const *gy, float *const *scr)
{
    const int64_t L = sh->L, Lp = PAD16(L), out_st = sh->out_st;
    const float *rows_dt[GROUP], *rows_dtu[GROUP];
    if (sh->dt_low)  /* the G rows' projections side by side: each step of dt_proj's input loaded once */
        for (int64_t t = 0; t < L; t += W) {
            const int64_t n = L - t;
            const float *w = sh->dt_weight + gr->dg * sh->dt_rank, *low = sh->dt_low + gr->b * L + t;
            vf x[GROUP];
            for (int i = 0; i < G; i++) x[i] = vzero();
            for (int64_t r = 0; r < sh->dt_rank; r++) {
                const vf lr = vload_part(low + r * sh->dt_low_st, n);
                for (int i = 0; i < G; i++) x[i] = vfma(vset(w[i * sh->dt_rank + r]), lr, x[i]);
            }
            for (int i = 0; i < G; i++) vstore(scr[i] + t, vadd(x[i], vset(bias ? bias[i] : 0.0f)));
        }
    for (int i = 0; i < G; i++) {
        const int64_t row = gr->rows[i];
        float *pre = scr[i], *e = scr[i] + Lp;  /* then dt (forward) and dt * u */
        const vf b = vset(bias ? bias[i] : 0.0f);
        if (!sh->dt_low)
            for (int64_t t = 0; t < L; t += W) vstore(pre + t, vadd(vload_part(delta + row + t, L - t), b));
        /* softplus(x) = max(x, 0) + log(1 + exp(-|x|)), its derivative sigmoid(x) */
        if (softplus)
            for (int64_t t = 0; t < L; t += W) {
                const vf x = vload(pre + t);
                vstore(e + t, vexp_neg_abs(x));
            }
        float *dt_row = dt ? dt[i] : pre;
        for (int64_t t = 0; t < L; t += W) {
            const vf x = vload(pre + t);
            vf d = x;
            if (softplus) {
                const vf ex = vload(e + t);
                d = vadd(vmax(x, vzero()), vlog1p_unit(ex));
                if (dsp) vstore(dsp[i] + t, vsigmoid_of(x, ex));
            } else if (dsp) {
                vstore(dsp[i] + t, vset(1.0f));
            }
            vstore(dt_row + t, d);
            vstore(e + t, vmul(d, vload_part(u + row + t, L - t)));
        }
        rows_dt[i] = dt_row;
        rows_dtu[i] = e;
    }
    if (gyg) {
        const vf scale = vset(sh->out_scale);
        if (gstage)  /* this group's rows of the staged block (STAGE rows of Lp floats) */
            for (int i = 0; i < G; i++)
                for (int64_t t = 0; t < L; t += W) vstore(gy[i] + t, vmul(vload(gstage + i * Lp + t), scale));
        else if (out_st != 1)
            for (int64_t t = 0; t < L; t += W) {
                vf vg[GROUP];
                vload_tmajor(g + gr->obase + t * out_st, out_st, L - t, G, vg);
                for (int i = 0; i < G; i++) vstore(gy[i] + t, vmul(vg[i], scale));
            }
        else
            for (int i = 0; i < G; i++)
                for (int64_t t = 0; t < L; t += W) vstore(gy[i] + t, vmul(vload_part(g + gr->orows[i] + t, L - t), scale));
        if (z)  /* silu(z) = z sigmoid(z), silu'(z) = sigmoid(z) (1 + z (1 - sigmoid(z))) */
            for (int i = 0; i < G; i++) {
                float *ez = scr[i];  /* free: backward's dt is in dt[i] */
                gate_exps(z, gr->rows[i], sh, ez);
                for (int64_t t = 0; t < L; t += W) {
                    const vf zz = load_z(z, gr->rows[i], t, L - t, sh), ex = vload(ez + t), gi = vload(gy[i] + t);
                    const vf sig = vsigmoid_of(zz, ex);
                    vstore(gds[i] + t, vmul(gi, vmul(sig, vfma(zz, vsub(vset(1.0f), sig), vset(1.0f)))));
                    vstore(gy[i] + t, vmul(gi, vmul(zz, sig)));
                }
            }
    }
    for (int64_t t = 0; t < L; t += W) {
        vf r[GROUP];
        for (int i = 0; i < G; i++) r[i] = vload(rows_dt[i] + t);
        vstore_group(dtg + t * G, r, G);
        for (int i = 0; i < G; i++) r[i] = vload(rows_dtu[i] + t);
        vstore_group(dtug + t * G, r, G);
        if (gyg) {
            for (int i = 0; i < G; i++) r[i] = vload(gy[i] + t);
            vstore_group(gyg + t * G, r, G);
        }
    }
}

/* The rows a group reads and writes are read in short bursts between long compute loops, too short for the
 * hardware prefetchers to run ahead, so the compute loops fetch them into L2 ahead of time instead, one cache
 * line per step: the next group's input rows and this group's output rows, and a quarter of a staged block's
 * time-major lines (see STAGE; a line per step d_inner floats apart, two to a page, which the hardware does not
 * follow). Time-major rows outside staged blocks are left to the hardware. */
#define PREFETCH_BLOCKS 32
typedef struct {
    const char *start[PREFETCH_BLOCKS];
    int64_t lines[PREFETCH_BLOCKS], stride[PREFETCH_BLOCKS];  /* 64-byte lines, stride bytes apart */
    int write[PREFETCH_BLOCKS];
    int n, block;          /* blocks listed; the block being fetched */
    int64_t line;          /* within it */
} prefetcher;

/* lines cache lines from start, stride bytes apart (start NULL: nothing) */
static void prefetch_strided(prefetcher *pf, const float *start, int64_t lines, int64_t stride, int write)
{
    if (!start || lines <= 0 || pf->n == PREFETCH_BLOCKS) return;
    pf->start[pf->n] = (const char *)start;
    pf->lines[pf->n] = lines;
    pf->stride[pf->n] = stride;
    pf->write[pf->n++] = write;
}

static void prefetch_add(prefetcher *pf, const float *start, int64_t floats, int write)
{
    prefetch_strided(pf, start, (floats * (int64_t)sizeof(float) + 63) / 64, 64, write);
}

/* G rows of L floats each, at base + offsets[g] (base NULL: nothing). */
static void prefetch_rows(prefetcher *pf, const float *base, const int64_t *offsets, int G, int64_t L, int write)
{
    if (!base) return;
    for (int g = 0; g < G; g++) prefetch_add(pf, base + offsets[g], L, write);
}

/* The group from dg's quarter of a staged block's time-major lines (see STAGE), for reading: steps [k L / 4,
 * (k + 1) L / 4) from base (the block's first channel at step 0), k the group's place in its block. */
static void prefetch_block_quarter(prefetcher *pf, const float *base, int64_t st, int64_t L, int64_t dg, int64_t s0)
{
    const int64_t k = (dg - s0) / GROUP, t0 = k * L / 4, t1 = (k + 1) * L / 4;
    prefetch_strided(pf, base + t0 * st, t1 - t0, st * (int64_t)sizeof(float), 0);
}

INLINE void prefetch_line(prefetcher *pf)
{
    if (pf->block >= pf->n) return;
    const char *line = pf->start[pf->block] + pf->line * pf->stride[pf->block];
    if (pf->write[pf->block])
        __builtin_prefetch(line, 1, 2);
    else
        __builtin_prefetch(line, 0, 2);
    if (++pf->line >= pf->lines[pf->block]) {
        pf->line = 0;
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
 * needs of the state), and adds x_t gy_t (gy at [t G + g]), summed over the group, into gC ((L, NP)).
 * Step t of Bt, Ct at t bc_st. In forward, dAs is scratch for one block's decays (W G NP floats).
 * p: G x W vectors of scratch; wide: G x NV more when NV > NV_LOCAL. */
INLINE void group_states(const int G, const int NV, const int want_y, const int backward, const vf *a2,
                         const float *dtg, const float *dtug, const float *Bt, const float *Ct, int64_t bc_st,
                         int64_t L, float *const *y, float *ws, float *dAs, const float *gyg, float *gC, vf *p,
                         vf *wide, prefetcher *pf)
{
    const int64_t NP = (int64_t)NV * W;
    vf x_local[GROUP * NV_LOCAL];
    vf *x = NV <= NV_LOCAL ? x_local : wide;
    for (int i = 0; i < G * NV; i++) x[i] = vzero();
    for (int64_t t0 = 0; t0 < L; t0 += W) {
        const int T = L - t0 < W ? (int)(L - t0) : W;
        /* The block's decays first: T G NV independent exps, a loop the vector pipes run at their throughput.
         * Inside the recurrence each exp's latency (some 40 cycles of dependent operations) would sit in
         * front of the state update that needs it and leave the pipes idle. */
        float *dAb = backward ? dAs + t0 * G * NP : dAs;
        for (int j = 0; j < T; j++)
            for (int g = 0; g < G; g++)
                for (int k = 0; k < NV; k++)
                    vstore(dAb + (j * G + g) * NP + k * W, vexp2(vmul(vset(dtg[(t0 + j) * G + g]), a2[g * NV + k])));
        for (int j = 0; j < T; j++) {
            const int64_t t = t0 + j;
            prefetch_line(pf);
            vf acc[GROUP];
            for (int g = 0; g < G; g++) acc[g] = vzero();
            for (int k = 0; k < NV; k++) {
                const int64_t o = t * NP + k * W, ob = t * bc_st + k * W, og = t * G * NP + k * W;
                const vf Bk = vload(Bt + ob);
                vf gCk = backward ? vload(gC + o) : vzero();
                for (int g = 0; g < G; g++) {
                    const int i = g * NV + k;
                    const vf dA = vload(dAb + (j * G + g) * NP + k * W), w = vmul(dA, x[i]);
                    x[i] = vfma(vset(dtug[t * G + g]), Bk, w);
                    if (want_y) acc[g] = vfma(vload(Ct + ob), x[i], acc[g]);
                    if (backward) {
                        vstore(ws + og + g * NP, w);
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
 * group_states stored (ws, dAs; dt, dtu, gy interleaved as there; Bt, Ct as there). Adds into gB (this batch's (L, NP)) and
 * ga_out (G x NV vectors of gA[d]); writes per row the per-t gradients wrt dt * u (g_dtu) and wrt dt through
 * the decay (g_dt). pu, pt: G x W vectors of scratch each; wide: 3 G NV more when NV > NV_LOCAL. */
INLINE void group_adjoint(const int G, const int NV, const vf *a, const float *dtg, const float *dtug,
                          const float *gyg, const float *Bt, const float *Ct, int64_t bc_st, const float *ws,
                          const float *dAs, int64_t L, float *gB, vf *ga_out, float *const *g_dtu, float *const *g_dt, vf *pu, vf *pt,
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
                const int64_t o = t * NP + k * W, ob = t * bc_st + k * W, og = t * G * NP + k * W;
                const vf Bk = vload(Bt + ob), Ck = vload(Ct + ob);
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

/* Per-row scratch: backward's dt, softplus', gy, g silu'(z), g_dtu, g_dt, y (L floats each, padded; forward
 * uses the first for y); then for the group: dt, dt * u, gy interleaved (GROUP L each, padded) and ws, the
 * decays (GROUP L NP each); then the staged block's STAGE rows (padded; see STAGE). */
#define ROW_BUFFERS 7
static int64_t stage_offset(int64_t L, int64_t NP) { return GROUP * (ROW_BUFFERS + 3) * PAD16(L) + 2 * GROUP * L * NP; }
static int64_t group_work(int64_t L, int64_t NP) { return stage_offset(L, NP) + STAGE * PAD16(L); }

int64_t scan_lanes(void) { return W; }

int64_t scan_group(void) { return GROUP; }

/* Then the trees' inputs (2 x GROUP x W vectors) and the states of wide rows (3 x GROUP x NV vectors). */
int64_t scan_forward_work(int64_t L, int64_t NP) { return group_work(L, NP) + (2 * GROUP * W + 3 * GROUP * NP / W) * W; }

int64_t scan_backward_work(int64_t L, int64_t NP) { return scan_forward_work(L, NP); }

/* The rows of the G channels from dg in batch b. */
static group_rows rows_of(const scan_shape *sh, int64_t b, int64_t dg, int G)
{
    group_rows gr;
    for (int g = 0; g < G; g++) {
        gr.rows[g] = b * sh->row_sb + (dg + g) * sh->row_sd;
        gr.orows[g] = b * sh->out_sb + (dg + g) * sh->out_sd;
    }
    gr.obase = b * sh->out_sb + dg * sh->out_sd;
    gr.b = b;
    gr.dg = dg;
    return gr;
}

/* The group after (b, dg, G rows) in [d0, d1): its rows and size (0 after the last one). */
static int next_group(const scan_shape *sh, int64_t b, int64_t dg, int G, int64_t d0, int64_t d1, group_rows *next)
{
    const int same_batch = dg + G < d1;
    const int64_t nb = same_batch ? b : b + 1, nd = same_batch ? dg + G : d0;
    if (nb >= sh->batch) return 0;
    const int n = d1 - nd >= GROUP ? GROUP : 1;
    *next = rows_of(sh, nb, nd, n);
    return n;
}

/* out: see scan_shape. work: scan_forward_work floats, 64-byte aligned. */
static void scan_forward_range(const float *u, const float *delta, const float *bias, int64_t softplus, const float *A,
                  const float *Bt, const float *Ct, const float *D, const float *z, float *out, float *work,
                  const scan_shape *sh, int64_t d0, int64_t d1)
{
    const int64_t L = sh->L, NP = sh->NP, out_st = sh->out_st;
    if (L == 0) return;
    const int64_t Lp = PAD16(L), NV = NP / W;
    float *y[GROUP], *scr[GROUP];
    for (int g = 0; g < GROUP; g++) {
        y[g] = work + g * ROW_BUFFERS * Lp;
        scr[g] = y[g] + 4 * Lp;
    }
    float *dtg = work + GROUP * ROW_BUFFERS * Lp, *dtug = dtg + GROUP * Lp;
    float *dAb = dtug + 2 * GROUP * Lp;  /* a block's decays, where backward keeps its ws */
    float *stage = work + stage_offset(L, NP);
    vf *p = (vf *)(work + group_work(L, NP)), *wide = p + 2 * GROUP * W;
    vf a2[GROUP * NV];
    PHASES_START;
    for (int64_t b = 0; b < sh->batch; b++) {
        const float *Bb = Bt + b * L * sh->bc_st, *Cb = Ct + b * L * sh->bc_st;
        for (int64_t dg = d0; dg < d1;) {
            const int G = d1 - dg >= GROUP ? GROUP : 1;
            for (int g = 0; g < G; g++)
                for (int64_t k = 0; k < NV; k++) a2[g * NV + k] = vmul(vload(A + (dg + g) * NP + k * W), vset(LOG2E));
            const group_rows gr = rows_of(sh, b, dg, G);
            const float *bias_g = bias ? bias + dg : NULL;
            const int64_t s0 = staged_block(sh, dg, d0, d1);
            if (G == GROUP)
                group_prologue(GROUP, delta, u, NULL, NULL, NULL, bias_g, (int)softplus, sh, &gr, dtg, dtug, NULL, NULL,
                               NULL, NULL, NULL, scr);
            else
                group_prologue(1, delta, u, NULL, NULL, NULL, bias_g, (int)softplus, sh, &gr, dtg, dtug, NULL, NULL, NULL,
                               NULL, NULL, scr);
            PHASE_DONE(PH_FW_PROLOGUE);
            /* fetched ahead: this group's gate and output rows, the next group's inputs */
            prefetcher pf = {0};
            group_rows next;
            const int next_n = next_group(sh, b, dg, G, d0, d1, &next);
            prefetch_rows(&pf, z, gr.rows, G, L, 0);
            if (out_st == 1) prefetch_rows(&pf, out, gr.orows, G, L, 1);
            prefetch_rows(&pf, delta, next.rows, next_n, L, 0);
            prefetch_rows(&pf, u, next.rows, next_n, L, 0);
            /* written when the block's last group is done; fetched for reading, which measured faster than for
             * writing (forward 11.4 against 12.2 ms at the original's shape, 12.7 without either) */
            if (s0 >= 0) prefetch_block_quarter(&pf, out + b * sh->out_sb + s0 * sh->out_sd, out_st, L, dg, s0);
            DISPATCH(G, NV, group_states(g_, nv_, 1, 0, a2, dtg, dtug, Bb, Cb, sh->bc_st, L, y, NULL, dAb, NULL, NULL, p,
                                         wide, &pf));
            PHASE_DONE(PH_FW_RECURRENCE);
            if (z)
                for (int g = 0; g < G; g++) gate_exps(z, gr.rows[g], sh, scr[g]);
            for (int64_t t = 0; t < L; t += W) {
                const int64_t n = L - t;
                vf o[GROUP];
                for (int g = 0; g < G; g++) {
                    const int64_t at = gr.rows[g] + t;
                    o[g] = vfma(vset(D ? D[dg + g] : 0.0f), vload_part(u + at, n), vload(y[g] + t));
                    if (z) {  /* silu(z) = z sigmoid(z), from exp(-|z|) */
                        const vf zz = load_z(z, gr.rows[g], t, n, sh), ex = vload(scr[g] + t);
                        const vf sig = vsigmoid_of(zz, ex);
                        o[g] = vmul(o[g], vmul(zz, sig));
                    }
                    o[g] = vmul(o[g], vset(sh->out_scale));
                    if (s0 >= 0)
                        vstore(stage + (dg - s0 + g) * Lp + t, o[g]);
                    else if (out_st == 1)
                        vstore_part(out + gr.orows[g] + t, o[g], n);
                }
                if (s0 < 0 && out_st != 1) vstore_tmajor(out + gr.obase + t * out_st, out_st, n, G, o);
            }
#ifdef HAVE_TMAJOR16
            if (s0 >= 0 && dg + G == s0 + STAGE)  /* the block's last group: all of its lines at once */
                for (int64_t t = 0; t < L; t += 16)
                    vstore_tmajor16(out + b * sh->out_sb + s0 * sh->out_sd + t * out_st, out_st, L - t, stage + t, Lp);
#endif
            PHASE_DONE(PH_FW_EPILOGUE);
            dg += G;
        }
    }
    PHASES_END;
}

/* g: gradient wrt out (out's layout). Writes gu, gdelta (rows layout), gA (d_inner, NP) and, when not NULL,
 * gbias, gD (d_inner,) and gz (rows layout; needs z) for d in [d0, d1), and gB, gC (batch, L, NP): this range's
 * partial sums over its channels (scan_backward adds the ranges up). work: scan_backward_work floats,
 * 64-byte aligned. */
static void scan_backward_range(const float *u, const float *delta, const float *bias, int64_t softplus,
                                const float *A, const float *Bt, const float *Ct, const float *D, const float *z,
                                const float *g, float *gu, float *gdelta, float *gA, float *gbias, float *gD,
                                float *gz, float *gB, float *gC, float *work, const scan_shape *sh, int64_t d0,
                                int64_t d1)
{
    const int64_t L = sh->L, NP = sh->NP, batch = sh->batch;
    if (L == 0) return;
    const int64_t Lp = PAD16(L), NV = NP / W;
    float *dt[GROUP], *dsp[GROUP], *gy[GROUP], *gds[GROUP], *g_dtu[GROUP], *g_dt[GROUP], *y[GROUP];
    for (int i = 0; i < GROUP; i++) {
        float *r = work + i * ROW_BUFFERS * Lp;
        dt[i] = r, dsp[i] = r + Lp, gy[i] = r + 2 * Lp, gds[i] = r + 3 * Lp;
        g_dtu[i] = r + 4 * Lp, g_dt[i] = r + 5 * Lp, y[i] = r + 6 * Lp;
    }
    float *dtg = work + GROUP * ROW_BUFFERS * Lp, *dtug = dtg + GROUP * Lp, *gyg = dtug + GROUP * Lp;
    float *ws = gyg + GROUP * Lp, *dAs = ws + GROUP * L * NP;
    float *stage = work + stage_offset(L, NP);
    vf *pu = (vf *)(work + group_work(L, NP)), *pt = pu + GROUP * W, *wide = pt + GROUP * W;
    vf a[GROUP * NV], a2[GROUP * NV], ga[GROUP * NV];
    PHASES_START;
    memset(gA + d0 * NP, 0, (size_t)((d1 - d0) * NP) * sizeof(float));
    memset(gB, 0, (size_t)(batch * L * NP) * sizeof(float));  /* this range's partial sums, zeroed by its own thread */
    memset(gC, 0, (size_t)(batch * L * NP) * sizeof(float));
    for (int64_t d = d0; d < d1; d++) {
        if (gbias) gbias[d] = 0.0f;
        if (gD) gD[d] = 0.0f;
    }
    for (int64_t b = 0; b < batch; b++) {
        const float *Bb = Bt + b * L * sh->bc_st, *Cb = Ct + b * L * sh->bc_st;
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
            const group_rows gr = rows_of(sh, b, dg, G);
            const float *bias_g = bias ? bias + dg : NULL;
            const int64_t s0 = staged_block(sh, dg, d0, d1);
#ifdef HAVE_TMAJOR16
            if (s0 == dg)  /* the block's first group: all of its lines at once */
                for (int64_t t = 0; t < L; t += 16)
                    vload_tmajor16(g + b * sh->out_sb + s0 * sh->out_sd + t * sh->out_st, sh->out_st, L - t, stage + t,
                                   Lp);
#endif
            const float *gstage = s0 >= 0 ? stage + (dg - s0) * Lp : NULL;
            if (G == GROUP)
                group_prologue(GROUP, delta, u, z, g, gstage, bias_g, (int)softplus, sh, &gr, dtg, dtug, gyg, dt, dsp,
                               gds, gy, g_dtu);
            else
                group_prologue(1, delta, u, z, g, gstage, bias_g, (int)softplus, sh, &gr, dtg, dtug, gyg, dt, dsp, gds,
                               gy, g_dtu);
            PHASE_DONE(PH_BW_PROLOGUE);
            /* fetched ahead: this group's output rows, the next group's inputs */
            prefetcher pf = {0};
            group_rows next;
            const int next_n = next_group(sh, b, dg, G, d0, d1, &next);
            prefetch_rows(&pf, gu, gr.rows, G, L, 1);
            prefetch_rows(&pf, gdelta, gr.rows, G, L, 1);
            prefetch_rows(&pf, gz, gr.rows, G, L, 1);
            prefetch_rows(&pf, delta, next.rows, next_n, L, 0);
            prefetch_rows(&pf, u, next.rows, next_n, L, 0);
            if (sh->out_st == 1) prefetch_rows(&pf, g, next.orows, next_n, L, 0);
            prefetch_rows(&pf, z, next.rows, next_n, L, 0);
            if (s0 >= 0) {  /* the next staged block's, read when its first group starts */
                int64_t nb = b, ns0 = s0 + STAGE;
                if (ns0 >= d1) nb++, ns0 = d0;
                if (nb < batch && staged_block(sh, ns0, d0, d1) == ns0)
                    prefetch_block_quarter(&pf, g + nb * sh->out_sb + ns0 * sh->out_sd, sh->out_st, L, dg, s0);
            }
            if (gz)  /* the core output, needed only for the gate's gradient */
                DISPATCH(G, NV, group_states(g_, nv_, 1, 1, a2, dtg, dtug, Bb, Cb, sh->bc_st, L, y, ws, dAs, gyg, gCb, pu,
                                             wide, &pf));
            else
                DISPATCH(G, NV, group_states(g_, nv_, 0, 1, a2, dtg, dtug, Bb, Cb, sh->bc_st, L, y, ws, dAs, gyg, gCb, pu,
                                             wide, &pf));
            PHASE_DONE(PH_BW_STATES);
            DISPATCH(G, NV, group_adjoint(g_, nv_, a, dtg, dtug, gyg, Bb, Cb, sh->bc_st, ws, dAs, L, gBb, ga, g_dtu, g_dt,
                                          pu, pt, wide, &pf));
            PHASE_DONE(PH_BW_ADJOINT);
            for (int i = 0; i < G; i++) {
                const int64_t d = dg + i, row = gr.rows[i];
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
                    if (gz) {  /* g (y + D u) silu'(z) */
                        const vf gzt = vmul(vfma(Dd, uu, vload(y[i] + t)), vload(gds[i] + t));
                        if (sh->z_rev)
                            vstore_rev(gz + row, L, t, gzt, n);
                        else
                            vstore_part(gz + row + t, gzt, n);
                    }
                }
                if (gbias) gbias[d] += vsum(sum_gd);
                if (gD) gD[d] += vsum(sum_gyu);
            }
            PHASE_DONE(PH_BW_EPILOGUE);
            dg += G;
        }
    }
    PHASES_END;
}

/* The scan on nthreads threads, each on its share of the channels (whole groups) with its own row of work
 * (work_floats apart). */
void scan_forward(const float *u, const float *delta, const float *bias, int64_t softplus, const float *A,
                  const float *Bt, const float *Ct, const float *D, const float *z, float *out, float *work,
                  int64_t work_floats, const scan_shape *sh, int64_t nthreads)
{
#pragma omp parallel num_threads((int)nthreads)
    {
        int64_t d0, d1;
        const int i = thread_index();
        thread_share(sh->d_inner, GROUP, i, thread_count(), &d0, &d1);
        scan_forward_range(u, delta, bias, softplus, A, Bt, Ct, D, z, out, work + i * work_floats, sh, d0, d1);
    }
}

/* Where backward writes the gradients wrt B and C: (b, n, t) of k = 0 (B) or 1 (C) at out[k] + b sb[k] + n sn[k] +
 * t st[k], for n < N (the padding left out). */
typedef struct {
    float *out[2];
    int64_t N, sb[2], sn[2], st[2];
} state_grads;

/* out (see state_grads) for the batches [b0, b1) <- the sum of the nparts partial sums at parts, part floats apart,
 * each (batch, L, NP). */
static void sum_partials(const float *parts, int64_t nparts, int64_t part, int64_t b0, int64_t b1, int64_t L,
                         int64_t NP, int64_t N, float *out, int64_t sb, int64_t sn, int64_t st)
{
    if (sn == 1) {  /* d_state contiguous: whole vectors */
        for (int64_t b = b0; b < b1; b++)
            for (int64_t t = 0; t < L; t++)
                for (int64_t k = 0; k < N; k += W) {
                    const float *q = parts + (b * L + t) * NP + k;
                    vf sum = vload(q);
                    for (int64_t p = 1; p < nparts; p++) sum = vadd(sum, vload(q + p * part));
                    vstore_part(out + b * sb + t * st + k, sum, N - k);
                }
        return;
    }
    /* other layouts ((batch, d_state, L) above all): the sums of 16 steps at a time as whole vectors, then
     * written out transposed, so that the parts are read once, in order (not once per n) */
    for (int64_t b = b0; b < b1; b++)
        for (int64_t t0 = 0; t0 < L; t0 += 16) {
            const int64_t T = L - t0 < 16 ? L - t0 : 16;
            for (int64_t k = 0; k < N; k += W) {
                float tmp[16 * W];
                for (int64_t j = 0; j < T; j++) {
                    const float *q = parts + (b * L + t0 + j) * NP + k;
                    vf sum = vload(q);
                    for (int64_t p = 1; p < nparts; p++) sum = vadd(sum, vload(q + p * part));
                    vstore(tmp + j * W, sum);
                }
                for (int64_t n = k; n < N && n < k + W; n++)
                    for (int64_t j = 0; j < T; j++) out[b * sb + n * sn + (t0 + j) * st] = tmp[j * W + n - k];
            }
        }
}

/* Its gradients on nthreads threads, each on its share of the channels: thread i's partial sums of gB and gC go
 * to parts + (0 or 1) nthreads P + i P (P = batch L NP floats); then, once every thread is done, each adds up
 * all threads' sums for its share of the batches into grads. In the threads rather than after them: the sums
 * of each thread sit in its own core's cache, which one thread alone would fetch at a few GB/s. */
void scan_backward(const float *u, const float *delta, const float *bias, int64_t softplus, const float *A,
                   const float *Bt, const float *Ct, const float *D, const float *z, const float *g, float *gu,
                   float *gdelta, float *gA, float *gbias, float *gD, float *gz, float *parts, float *work,
                   int64_t work_floats, const scan_shape *sh, const state_grads *grads, int64_t nthreads)
{
    const int64_t P = sh->batch * sh->L * sh->NP;
#pragma omp parallel num_threads((int)nthreads)
    {
        int64_t d0, d1, b0, b1;
        const int i = thread_index(), n = thread_count();
        thread_share(sh->d_inner, GROUP, i, n, &d0, &d1);
        scan_backward_range(u, delta, bias, softplus, A, Bt, Ct, D, z, g, gu, gdelta, gA, gbias, gD, gz, parts + i * P,
                            parts + (nthreads + i) * P, work + i * work_floats, sh, d0, d1);
#pragma omp barrier
        thread_share(sh->batch, 1, i, n, &b0, &b1);
        for (int k = 0; k < 2; k++)
            sum_partials(parts + k * nthreads * P, n, P, b0, b1, sh->L, sh->NP, grads->N, grads->out[k], grads->sb[k],
                         grads->sn[k], grads->st[k]);
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
