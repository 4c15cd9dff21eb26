"""Statistics of the comparisons: Wilson intervals, paired t and permutation tests.

Hand-written (numpy + math, no scipy): Student's t tail comes from the regularised
incomplete beta function by its continued fraction (modified Lentz). scipy is only
installed here as a dependency of ogbench; declaring it for one special function
would add a runtime dependency without changing a reported number.

Users: `eval.compare_report` (success-rate intervals of every results table), `eval.zoo`,
the benchmarks, and `lewm probe surprise` (`paired_test`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% (by default) Wilson score interval of a binomial proportion."""
    if n <= 0:
        raise ValueError("wilson_interval needs n >= 1")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, {n}], got {successes}")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def student_t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with ``df`` degrees of freedom (the one-sided p-value)."""
    if df <= 0:
        raise ValueError(f"df must be positive, got {df}")
    if math.isnan(t):
        return math.nan
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))  # P(T > |t|)
    return tail if t >= 0 else 1.0 - tail


@dataclass
class PairedTest:
    """A one-sided paired comparison of ``a`` against ``b`` (H1: a > b)."""

    n: int
    mean_a: float
    mean_b: float
    mean_diff: float
    median_ratio: float
    """Median of a / b over pairs (how many times larger, robust to outliers)."""
    frac_greater: float
    """Fraction of pairs with a > b."""
    t_stat: float
    p_t: float
    """One-sided paired t-test p-value."""
    p_perm: float
    """One-sided sign-flip permutation p-value (exact for n <= 16, else Monte Carlo)."""
    permutations: int

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def paired_test(
    a: np.ndarray, b: np.ndarray, *, permutations: int = 100_000, seed: int = 0
) -> PairedTest:
    """One-sided paired test that ``a`` is larger than ``b`` (e.g. surprise at a
    perturbation vs at unperturbed steps, one pair per episode).

    Two p-values: the paired t-test (assumes roughly normal differences) and the
    sign-flip permutation test (assumes only that differences are symmetric under
    H0: swapping a pair's labels is as likely as not), whose Monte-Carlo floor is
    ``1 / (permutations + 1)``.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"paired samples must have equal length, got {a.size} and {b.size}")
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    n = a.size
    if n < 2:
        raise ValueError(f"need at least 2 finite pairs, got {n}")
    d = a - b  # (n,)
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    if sd > 0:
        t = mean / (sd / math.sqrt(n))
        p_t = student_t_sf(t, n - 1)
    else:
        t = math.copysign(math.inf, mean) if mean != 0 else 0.0
        p_t = 0.0 if mean > 0 else (0.5 if mean == 0 else 1.0)
    observed = d.sum()
    if n <= 16:  # exact: every sign pattern
        signs = 1 - 2 * ((np.arange(2**n)[:, None] >> np.arange(n)[None, :]) & 1)  # (2^n, n)
        sums = signs @ d  # (2^n,)
        p_perm = float(np.mean(sums >= observed - 1e-12 * abs(observed)))
        used = 2**n
    else:
        rng = np.random.default_rng(seed)
        count, done = 0, 0
        while done < permutations:  # chunks bound memory
            m = min(10_000, permutations - done)
            signs = rng.integers(0, 2, size=(m, n)) * 2 - 1  # (m, n)
            count += int(np.sum(signs @ d >= observed - 1e-12 * abs(observed)))
            done += m
        p_perm = (count + 1) / (permutations + 1)
        used = permutations
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = float(np.median(np.where(b != 0, a / b, np.nan)))
    return PairedTest(
        n=int(n),
        mean_a=float(a.mean()),
        mean_b=float(b.mean()),
        mean_diff=mean,
        median_ratio=ratio,
        frac_greater=float(np.mean(d > 0)),
        t_stat=float(t),
        p_t=float(p_t),
        p_perm=float(p_perm),
        permutations=int(used),
    )
