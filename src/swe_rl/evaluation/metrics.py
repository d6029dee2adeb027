"""Evaluation metrics as SWE-bench papers report them: pass@1 as mean +- SEM over runs, unbiased pass@k.

Pure functions of numbers (STYLE.md habit 5); `evaluation/` reports and plots build on them.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of Chen et al. 2021: 1 - C(n-c, k) / C(n, k) for n samples of which c are correct."""
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k: need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"pass_at_k: need 1 <= k <= n, got k={k}, n={n}")
    if n - c < k:
        return 1.0
    # The product form avoids huge binomials: C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i).
    prob_all_wrong = 1.0
    for i in range(n - c + 1, n + 1):
        prob_all_wrong *= 1.0 - k / i
    return 1.0 - prob_all_wrong


def mean_and_sem(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (sample std with ddof=1 over sqrt(n)); SEM is 0 for one value."""
    n = len(values)
    if n == 0:
        raise ValueError("mean_and_sem: no values")
    mean = sum(values) / n
    if n == 1:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def pass_at_1_over_runs(resolved: Mapping[str, Sequence[bool]]) -> tuple[float, float]:
    """pass@1 as the paper reports it: the resolve rate of each run, then mean +- SEM over runs.

    `resolved[task][r]` says whether run r resolved the task; every task needs the same number of runs.
    """
    runs = {len(v) for v in resolved.values()}
    if len(runs) != 1:
        raise ValueError(f"pass_at_1_over_runs: tasks have different numbers of runs: {sorted(runs)}")
    (num_runs,) = runs
    rates = [sum(bool(v[r]) for v in resolved.values()) / len(resolved) for r in range(num_runs)]
    return mean_and_sem(rates)


def mean_pass_at_k(resolved: Mapping[str, Sequence[bool]], k: int) -> float:
    """pass@k averaged over tasks with the unbiased estimator (needs k <= runs per task)."""
    if not resolved:
        raise ValueError("mean_pass_at_k: no tasks")
    return sum(pass_at_k(len(v), sum(map(bool, v)), k) for v in resolved.values()) / len(resolved)
