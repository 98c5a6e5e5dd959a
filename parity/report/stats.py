"""Statistics for the ablation report: paired t intervals over seeds, a pooled seed variance, Holm's
family-wise adjustment, the rule that turns an interval into a verdict, and 2^k factorial designs.

Why this shape: a matrix is trained with 2-3 seeds, seed k of every variant sharing seed k, so an effect
is a set of paired per-seed differences in dB whose own variance has only 1-2 degrees of freedom. The
seed-to-seed noise of a paired difference is assumed to be the same for every difference of one matrix,
which lets the variance be pooled across them (many more degrees of freedom, much narrower intervals);
since the differences of a matrix share its reference run, the pooling goes through the additive
variants x seeds model (pooled_variance) rather than a plain sum of within-effect squares.
A matrix tests many differences at once, so intervals are Holm-adjusted to keep the chance of any false
"measured" at ALPHA.

Pure numpy / scipy.stats / statsmodels; no torch, no pandas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
from scipy import stats
from statsmodels.stats.multitest import multipletests

ALPHA = 0.05
# Level bands of |effect| in dB: small < SMALL_DB <= moderate < LARGE_DB <= large.
SMALL_DB, LARGE_DB = 0.3, 1.0
LEVELS = ("small", "moderate", "large")

NO_EFFECT = "no effect in this protocol"
NO_RUNS = "not tested (no runs)"
ONE_SEED = "not tested (one seed)"
NOT_MEASURED = "not measured"
MEASURED_UNCLAIMED = "measured (not in the seed audit)"
CONFIRMED = "confirmed"
OVERSTATED = "overstated"
UNDERSTATED = "understated"
CONTRADICTED = "contradicted"
DIRECTION_ONLY = "direction only"
# Every verdict string; NO_EFFECT may carry a " (reason)" suffix.
VERDICTS = (NO_EFFECT, NO_RUNS, ONE_SEED, NOT_MEASURED, MEASURED_UNCLAIMED, CONFIRMED, OVERSTATED, UNDERSTATED,
            CONTRADICTED, DIRECTION_ONLY)


@dataclass(frozen=True)
class Interval:
    """A mean with its t interval: `p` is the two-sided p-value of mean == 0 (Holm-adjusted when it comes
    from adjusted_intervals), `level` the confidence of [low, high]. nan where it cannot be computed."""

    mean: float
    low: float
    high: float
    n: int
    df: int
    se: float
    p: float
    level: float

    @property
    def excludes_zero(self) -> bool:
        """True when the whole interval lies strictly on one side of 0 (False when it is nan)."""
        return bool(self.low > 0.0 or self.high < 0.0)


# ------------------------------------------------------------------------------------------ intervals


def _values(values: dict[int, float] | list[float]) -> list[float]:
    return [float(x) for x in (values.values() if isinstance(values, dict) else values)]


def _is_bit_identical(values: list[float]) -> bool:
    return bool(values) and all(x == 0.0 for x in values)


def _mean_ss(values: list[float]) -> tuple[float, float]:
    """Mean and sum of squared deviations (plain Python: faster than numpy for 2-3 seeds)."""
    mean = math.fsum(values) / len(values)
    return mean, math.fsum((x - mean) ** 2 for x in values)


def _p_values(mean, se, df):
    """Two-sided t p-values of mean == 0, vectorised. se == 0 gives p = 0 (mean != 0) or 1 (mean == 0:
    nothing speaks against the null); df < 1 or a non-finite se gives nan."""
    mean, se, df = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (mean, se, df)))
    ok = (df >= 1) & np.isfinite(se)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = 2.0 * stats.t.sf(np.abs(mean) / se, np.where(ok, df, 1.0))
    p = np.where((se == 0) & (mean == 0), 1.0, p)
    return np.where(ok, p, np.nan)


def _bounds(mean, se, df, level):
    """Vectorised t interval ends at confidence `level`; nan where df < 1 or se is not finite."""
    mean, se, df, level = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (mean, se, df, level)))
    ok = (df >= 1) & np.isfinite(se)
    half = np.where(se == 0, 0.0, stats.t.ppf(0.5 + level / 2.0, np.where(ok, df, 1.0)) * se)
    return np.where(ok, mean - half, np.nan), np.where(ok, mean + half, np.nan)


def _usable(pooled: tuple[float, int] | None) -> bool:
    return pooled is not None and pooled[1] >= 1 and math.isfinite(pooled[0])


def _additive_residual(rows: list[dict[int, float]]) -> tuple[float, int]:
    """Residual sum of squares and df of the additive rows x seeds model (row + seed effects) fitted to
    a possibly incomplete table by least squares."""
    seeds = sorted({s for r in rows for s in r})
    if len(seeds) < 2 or len(rows) < 2:
        return 0.0, 0
    if all(len(r) == len(seeds) for r in rows):  # complete table: closed form
        y = np.array([[r[s] for s in seeds] for r in rows], dtype=float)
        resid = y - y.mean(axis=1, keepdims=True) - y.mean(axis=0, keepdims=True) + y.mean()
        return float(np.sum(resid ** 2)), (len(rows) - 1) * (len(seeds) - 1)
    col = {s: j for j, s in enumerate(seeds)}
    cells = [(i, col[s], v) for i, r in enumerate(rows) for s, v in r.items()]
    X = np.zeros((len(cells), len(rows) + len(seeds)))
    for k, (i, j, _) in enumerate(cells):
        X[k, i] = X[k, len(rows) + j] = 1.0
    y = np.array([v for _, _, v in cells])
    beta, _, rank, _ = np.linalg.lstsq(X, y, rcond=None)
    return float(np.sum((y - X @ beta) ** 2)), len(cells) - int(rank)


def pooled_variance(effects: list[dict[int, float]], shared_reference: bool = True) -> tuple[float, int]:
    """Pooled variance of one per-seed paired effect across the effects of one matrix ({seed: value}
    each), and its degrees of freedom. Why: 2-3 seeds leave each effect 1-2 df; under the assumption that
    every paired difference of a matrix has the same seed noise, pooling gives many.

    shared_reference=True (one-at-a-time, leave-one-out, improvements: every effect is a variant minus
    the same reference run of each seed). The effects are then correlated through the reference, and
    simply adding their within-effect squares would mostly measure the reference's own seed-to-seed
    wobble again and again (the family-wise error rate of a null matrix comes out near 0.09 instead of
    0.05 at 2-3 seeds). Instead the reference is put back as an all-zero row, the additive variants x seeds
    model is fitted (subtracting the reference only shifts each seed's column, which that model absorbs,
    so its residuals are those of the raw runs), and the variance of a paired difference is twice the
    per-run residual variance. With complete data, df = sum(n_i - 1) all the same.
    For a cumulative chain (step k minus step k-1), pass the per-seed cumulative sums (step k minus
    step 0), which share step 0 as their reference.

    shared_reference=False (effects that share no run): the within-effect squares summed over effects,
    over df = sum(n_i - 1).

    Effects with n < 2 contribute no df of their own; bit-identical effects (every seed exactly 0.0)
    contribute nothing: their runs did not differ at all, which says nothing about the seed noise.
    (nan, 0) when nothing is left.
    """
    kept = [e if isinstance(e, dict) else dict(enumerate(e)) for e in effects]
    kept = [e for e in kept if e and not _is_bit_identical(_values(e))]
    if shared_reference:
        if not kept:
            return math.nan, 0
        reference = {s: 0.0 for e in kept for s in e}
        ss, df = _additive_residual([reference, *kept])
        return (2.0 * ss / df, df) if df else (math.nan, 0)
    ss, df = 0.0, 0
    for effect in kept:
        v = _values(effect)
        if len(v) >= 2:
            ss += _mean_ss(v)[1]
            df += len(v) - 1
    return (ss / df, df) if df else (math.nan, 0)


def t_interval(values: dict[int, float] | list[float], level: float = 0.95,
               pooled: tuple[float, int] | None = None) -> Interval:
    """Mean and t interval of per-seed values; with `pooled` (var, df), df >= 1, the standard error uses
    the pooled variance and its df instead of this effect's own (an unusable pooled, e.g. (nan, 0), is
    ignored). n == 0 -> all nan; n == 1 without pooled -> low/high/p nan."""
    v = _values(values)
    n = len(v)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0, 0, math.nan, math.nan, level)
    mean, ss = _mean_ss(v)
    if _usable(pooled):
        se, df = math.sqrt(pooled[0] / n), int(pooled[1])
    elif n >= 2:
        se, df = math.sqrt(ss / (n - 1) / n), n - 1
    else:
        se, df = math.nan, 0
    low, high = _bounds(mean, se, df, level)
    return Interval(mean, float(low), float(high), n, df, se, float(_p_values(mean, se, df)), level)


def holm(pvalues: list[float], alpha: float = ALPHA) -> list[float]:
    """Holm-adjusted p-values (statsmodels' multipletests, method "holm"); nan is kept as nan and left
    out of the family (it does not count in m)."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        out[ok] = multipletests(p[ok], alpha=alpha, method="holm")[1]
    return [float(x) for x in out]


def adjusted_intervals(effects: list[dict[int, float]], alpha: float = ALPHA, pool: bool = True,
                       shared_reference: bool = True) -> list[Interval]:
    """Family-wise intervals for the effects of one matrix (Holm step-down), so that the chance of any
    effect of a null matrix being called "measured" is at most alpha.

    With `pool`, standard errors use pooled_variance(effects, shared_reference) (see there). The family
    is the testable effects: n >= 2, or n >= 1 when the pooled variance has df >= 1; bit-identical effects
    (every seed exactly 0.0) are neither pooled nor in the family (not a hypothesis: the runs were
    identical) and get their plain interval, as do untestable ones (nan low/high/p).

    Rank r by raw p (1 = smallest), m testable: the effect's interval is the t interval at confidence
    1 - alpha/(m - r + 1) and its `p` the Holm-adjusted p-value. Holm stops at the first r whose raw
    p >= alpha/(m - r + 1); every later effect is then not rejected even where its own step's interval
    would exclude 0, so those intervals use the stopping step's confidence 1 - alpha/(m - r_stop + 1)
    instead, which makes them include 0 (their raw p is at least the stopping one's). Hence "interval
    excludes 0" <=> "Holm-adjusted p < alpha", always.
    """
    vals = [_values(e) for e in effects]
    identical = [_is_bit_identical(v) for v in vals]
    pooled = pooled_variance([e for e, same in zip(effects, identical) if not same], shared_reference) \
        if pool else None
    use_pool = _usable(pooled)
    out: list[Interval | None] = [None] * len(effects)
    testable, n, mean, se = [], [], [], []
    for i, v in enumerate(vals):
        if identical[i] or not v or (len(v) < 2 and not use_pool):
            out[i] = t_interval(v, 1.0 - alpha)
            continue
        mu, ss = _mean_ss(v)
        testable.append(i)
        n.append(len(v))
        mean.append(mu)
        se.append(math.sqrt((pooled[0] if use_pool else ss / (len(v) - 1)) / len(v)))
    m = len(testable)
    if m:
        n, mean, se = np.array(n), np.array(mean), np.array(se)
        df = np.full(m, pooled[1]) if use_pool else n - 1
        raw_p = _p_values(mean, se, df)
        adj_p = np.array(holm(list(raw_p), alpha))
        steps = np.empty(m)
        stopped_at = None
        for rank, j in enumerate(np.argsort(raw_p, kind="stable"), start=1):
            step = 1.0 - alpha / (m - rank + 1)
            if stopped_at is None and not raw_p[j] < alpha / (m - rank + 1):
                stopped_at = step
            steps[j] = step if stopped_at is None else stopped_at
        low, high = _bounds(mean, se, df, steps)
        # the widening above already puts a non-rejected interval on 0; this only guards float rounding
        rejected = adj_p < alpha
        low = np.where(rejected, low, np.minimum(low, 0.0))
        high = np.where(rejected, high, np.maximum(high, 0.0))
        for k, i in enumerate(testable):
            out[i] = Interval(float(mean[k]), float(low[k]), float(high[k]), int(n[k]), int(df[k]), float(se[k]),
                              float(adj_p[k]), float(steps[k]))
    return out  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------ verdicts


def band(x: float) -> str:
    """The level band of |x| in dB."""
    x = abs(x)
    return "small" if x < SMALL_DB else "moderate" if x < LARGE_DB else "large"


def verdict(interval: Interval | None, claimed_level: str | None, bit_identical: bool = False,
            reason: str = "") -> dict:
    """The rule that turns an interval into words: {"verdict": str, "level": str | None}.

    - bit_identical (every seed's effect exactly 0.0): "no effect in this protocol" (+ " (reason)").
    - no interval or n == 0: "not tested (no runs)"; n < 2 and no pooled df: "not tested (one seed)".
    - interval includes 0: "not measured".
    - interval excludes 0: measured. level = the band of |effect| when both ends lie in the same band,
      else None. Against claimed_level (one of LEVELS, or None):
        None -> "measured (not in the seed audit)";
        negative effect while a level was claimed -> "contradicted";
        whole interval inside the claimed band -> "confirmed";
        whole interval below the claimed band -> "overstated"; whole interval above it -> "understated";
        interval overlapping the claimed band without lying inside it -> "direction only".
      (An interval spanning several bands that lies entirely outside the claimed band is over- or
      understated, not "direction only": the claim is refuted whichever band the truth is in.)
    """
    if claimed_level is not None and claimed_level not in LEVELS:
        raise ValueError(f"claimed_level must be one of {LEVELS} or None, not {claimed_level!r}")
    if bit_identical:
        return {"verdict": f"{NO_EFFECT} ({reason})" if reason else NO_EFFECT, "level": None}
    if interval is None or interval.n == 0:
        return {"verdict": NO_RUNS, "level": None}
    if interval.n < 2 and interval.df < 1:
        return {"verdict": ONE_SEED, "level": None}
    if not interval.excludes_zero:
        return {"verdict": NOT_MEASURED, "level": None}
    lo_band, hi_band = band(interval.low), band(interval.high)
    level = lo_band if lo_band == hi_band else None
    if claimed_level is None:
        return {"verdict": MEASURED_UNCLAIMED, "level": level}
    if interval.high < 0:
        return {"verdict": CONTRADICTED, "level": level}
    rank = LEVELS.index
    claim = rank(claimed_level)
    if rank(lo_band) == rank(hi_band) == claim:
        word = CONFIRMED
    elif rank(hi_band) < claim:
        word = OVERSTATED
    elif rank(lo_band) > claim:
        word = UNDERSTATED
    else:
        word = DIRECTION_ONLY
    return {"verdict": word, "level": level}


def rule_text() -> str:
    """The verdict rule in words, with its constants, for the report."""
    a = f"{ALPHA:g}"
    return (
        f"Each effect is the mean over seeds of the paired per-seed difference in PSNR (dB), with a t interval "
        f"whose seed variance is pooled across the differences of its matrix (assumption: every paired "
        f"difference of a matrix has the same seed-to-seed noise; the pooled variance comes from the additive "
        f"variants x seeds model, so the reference run that all differences share is counted once), "
        f"Holm-adjusted so that the chance of any false "
        f"'measured' in a matrix is at most {a}: the effect is 'measured' when its adjusted interval excludes 0 "
        f"(equivalently Holm-adjusted p < {a}) and 'not measured' otherwise; with one seed and no pooled variance "
        f"it is 'not tested (one seed)', and when every seed's effect is exactly 0.0 'no effect in this protocol'. "
        f"A measured effect has a level when its whole interval lies in one band of |effect|: small < {SMALL_DB:.1f} "
        f"dB <= moderate < {LARGE_DB:.1f} dB <= large. Against the seed audit's claimed level, an interval inside the "
        f"claimed band is 'confirmed', one entirely below it 'overstated', entirely above it 'understated', a "
        f"negative effect 'contradicted', one overlapping the claimed band without lying inside it 'direction "
        f"only', and a measured effect the audit did not claim 'measured (not in the seed audit)'."
    )


# ------------------------------------------------------------------------------------------ factorial designs


@dataclass(frozen=True)
class FactorialAnalysis:
    """A 2^k design over groups of differences: v(S) is the PSNR with the groups in S at the original's
    values and the rest at the notebook's. Every quantity is a linear contrast of cell means, with a t
    interval from the residual variance of the additive cells x seeds model."""

    groups: tuple[str, ...]
    residual_var: float
    residual_df: int
    seeds: tuple[int, ...]
    cell_means: dict[frozenset, float]
    main_effects: dict[str, Interval]  # mean over the other groups' settings of v(S+g) - v(S)
    interactions: dict[tuple[str, str], Interval]  # (effect of a with b on) - (effect of a with b off), averaged
    shapley: dict[str, Interval]  # Shapley share of each group in v(all) - v(empty); they sum to `gap`
    gap: Interval  # v(all groups) - v(no group)
    shapley_per_seed: dict[str, dict[int, float]] = field(default_factory=dict)  # sums to gap_per_seed
    gap_per_seed: dict[int, float] = field(default_factory=dict)


def _subsets(groups) -> list[frozenset]:
    return [frozenset(c) for r in range(len(groups) + 1) for c in combinations(groups, r)]


def shapley_weights(groups) -> dict[str, dict[frozenset, float]]:
    """Contrast weights (over all 2^k cells) of each group's Shapley share: the share of i is
    sum over S not containing i of |S|!(k-|S|-1)!/k! * (v(S+i) - v(S)). The weights of all groups sum
    to +1 on the full cell, -1 on the empty one and 0 elsewhere (efficiency)."""
    groups = tuple(groups)
    k = len(groups)
    out = {}
    for g in groups:
        w = {}
        for cell in _subsets(groups):
            if g in cell:
                s = len(cell) - 1
                w[cell] = math.factorial(s) * math.factorial(k - s - 1) / math.factorial(k)
            else:
                s = len(cell)
                w[cell] = -math.factorial(s) * math.factorial(k - s - 1) / math.factorial(k)
        out[g] = w
    return out


def _main_weights(groups, g) -> dict[frozenset, float]:
    h = 2.0 ** (len(groups) - 1)
    return {c: (1.0 if g in c else -1.0) / h for c in _subsets(groups)}


def _interaction_weights(groups, a, b) -> dict[frozenset, float]:
    h = 2.0 ** (len(groups) - 2)
    return {c: (1.0 if (a in c) == (b in c) else -1.0) / h for c in _subsets(groups)}


def factorial_analysis(cells: dict[frozenset, dict[int, float]], groups: tuple[str, ...],
                       level: float = 0.95) -> FactorialAnalysis:
    """Main effects, two-way interactions, Shapley shares and the gap of a 2^k design.

    cells: for every subset S of groups (a frozenset of group names; all 2^k present) the per-seed PSNR
    of that configuration. Only seeds present in every cell are used (paired). Each quantity is a contrast
    sum_c w_c * mean_c (its per-seed value: the same contrast on that seed's cells); all its weights sum to
    0, so seed offsets cancel. Residual variance from the additive cells x seeds model, df (C-1)(n-1);
    var(contrast) = residual_var * sum w_c^2 / n, t intervals with residual_df (not adjusted for
    multiplicity). Shapley shares sum to the gap exactly, in means and per seed.
    """
    groups = tuple(groups)
    if len(set(groups)) != len(groups) or not groups:
        raise ValueError(f"groups must be distinct and non-empty: {groups}")
    order = _subsets(groups)
    missing = [sorted(c) for c in order if c not in cells]
    extra = [sorted(c) for c in cells if c not in set(order)]
    if missing or extra:
        raise ValueError(f"cells must be exactly the 2^{len(groups)} subsets of {groups}: "
                         f"missing {missing}, unexpected {extra}")
    seeds = tuple(sorted(set.intersection(*(set(cells[c]) for c in order))))
    n, C = len(seeds), len(order)
    y = np.array([[cells[c][s] for s in seeds] for c in order], dtype=float).reshape(C, n)  # cells x seeds
    means = y.mean(axis=1) if n else np.full(C, np.nan)
    rdf = (C - 1) * (n - 1) if n >= 2 else 0
    if rdf:
        resid = y - y.mean(axis=1, keepdims=True) - y.mean(axis=0, keepdims=True) + y.mean()
        rvar = float(np.sum(resid ** 2) / rdf)
    else:
        rvar = math.nan

    names: list = []
    weights: list[dict[frozenset, float]] = []
    for g in groups:
        names.append(("main", g)); weights.append(_main_weights(groups, g))
    for a, b in combinations(groups, 2):
        names.append(("inter", (a, b))); weights.append(_interaction_weights(groups, a, b))
    for g, w in shapley_weights(groups).items():
        names.append(("shapley", g)); weights.append(w)
    full, empty = frozenset(groups), frozenset()
    names.append(("gap", None)); weights.append({c: 1.0 if c == full else -1.0 if c == empty else 0.0 for c in order})
    W = np.array([[w.get(c, 0.0) for c in order] for w in weights])  # contrasts x cells
    est = W @ means
    per_seed = W @ y  # contrasts x seeds
    se = np.sqrt(rvar * np.sum(W ** 2, axis=1) / n) if n else np.full(len(W), np.nan)
    low, high = _bounds(est, se, rdf, level)
    p = _p_values(est, se, rdf)
    iv = {name: Interval(float(est[i]), float(low[i]), float(high[i]), n, rdf, float(se[i]), float(p[i]), level)
          for i, name in enumerate(names)}
    row = {name: i for i, name in enumerate(names)}
    return FactorialAnalysis(
        groups=groups, residual_var=rvar, residual_df=rdf, seeds=seeds,
        cell_means={c: float(means[i]) for i, c in enumerate(order)},
        main_effects={g: iv[("main", g)] for g in groups},
        interactions={ab: iv[("inter", ab)] for ab in combinations(groups, 2)},
        shapley={g: iv[("shapley", g)] for g in groups},
        gap=iv[("gap", None)],
        shapley_per_seed={g: dict(zip(seeds, map(float, per_seed[row[("shapley", g)]]))) for g in groups},
        gap_per_seed=dict(zip(seeds, map(float, per_seed[row[("gap", None)]]))),
    )
