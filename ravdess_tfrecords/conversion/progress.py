"""Progress bars for long work: shown on a terminal, quiet when output goes to a file or CI log."""

from __future__ import annotations

from collections.abc import Iterable


def bar(items: Iterable, total: int, desc: str, enabled: bool = True, unit: str = "clip") -> Iterable:
    """Wrap ``items`` in a tqdm bar when ``enabled`` and stderr is a terminal."""
    if not enabled:
        return items
    from tqdm import tqdm

    # disable=None: tqdm turns itself off when stderr is not a TTY.
    return tqdm(items, total=total, desc=desc, unit=unit, dynamic_ncols=True, disable=None)
