"""One thread per item: a lab's machines are stopped, saved, resumed, probed and waited
for together, not one after another."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def in_parallel(items: Iterable, fn: Callable[[Any], Any]) -> list:
    """fn over items, one thread each, results in the items' order."""
    items = list(items)
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        return list(pool.map(fn, items))
