"""A finished stage hands the heap pages it freed back to the system."""

import numpy as np
import psutil

from trading_ml.pipeline.memory import release_freed_memory


def resident_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def test_freed_heap_pages_that_glibc_keeps_are_handed_back_and_live_data_is_untouched():
    # 60 KB arrays come from the heap (under glibc's mmap threshold); a small survivor after each
    # keeps the heap from shrinking by itself when they are freed, as a stage's tables do
    freed, survivors = [], []
    for i in range(5_000):
        freed.append(np.full(7_500, float(i)))
        survivors.append(np.full(300, float(i)))
    freed.clear()
    kept = resident_mb()
    release_freed_memory()
    assert kept - resident_mb() > 150  # about 290 MB on glibc
    assert all(s[0] == i and s[-1] == i for i, s in enumerate(survivors))
