"""Repeats of a benchmark, summarized: the order of interleaved runs, and the median and spread of rates
and ratios. Pure Python and numpy, no flags: ``tools.bench_train`` uses it, a test calls it in-process.
"""

from __future__ import annotations

import numpy as np


def schedule(variants: list[str], repeats: int) -> list[str]:
    """The order of the timed runs: every variant once per repeat, each repeat starting one variant later
    (``[a, b, c, b, c, a, ...]``), so a drift of the machine (clocks, other load) spreads over all variants
    instead of falling on whichever runs last."""
    n = len(variants)
    return [variants[(r + k) % n] for r in range(repeats) for k in range(n)]


def spread(values: list[float]) -> tuple[float, float, float]:
    """``(median, min, max)`` of ``values``."""
    return float(np.median(values)), float(min(values)), float(max(values))


def table_rows(rates: dict[str, list[float]], base: str = "float32") -> list[tuple]:
    """Per variant: ``(variant, median rate, min rate, max rate, median ratio, min ratio, max ratio)``.

    ``rates[v][r]``: examples/s of variant ``v`` in repeat ``r``. The ratio to ``base`` is taken within
    each repeat (the runs next to each other in time), then summarized; None without ``base``.
    """
    rows = []
    for variant, values in rates.items():
        ratios = [v / b for v, b in zip(values, rates[base], strict=True)] if base in rates else None
        rows.append((variant, *spread(values), *(spread(ratios) if ratios else (None, None, None))))
    return rows
