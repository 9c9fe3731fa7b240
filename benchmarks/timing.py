"""Timing helper shared by the benchmarks (benchmarks/ is on sys.path when one runs as a script)."""

import time


def best_time(fn, repeats):
    """The fastest of ``repeats`` calls of ``fn``, in seconds: the least disturbed run on a
    shared machine (every benchmark compares it with a peer timed the same way)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best
