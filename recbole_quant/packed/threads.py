"""Run a nogil numba kernel over ranges of users on a thread pool.

Why not ``prange``: numba compiles a ``parallel=True`` kernel as a gufunc and
re-optimises the whole inlined loop body for it. For the fused top-k that
tripled the cold compile (about 6 s serial -> 19 s with ``prange`` on the
2-core box) without running any faster. The kernels here are serial
``@njit(nogil=True)`` functions taking ``(start, stop, ...)``; this module
splits the range and runs the pieces on threads, which release the GIL.

The thread count is torch's, exactly: ``torch.set_num_threads(n)`` applies here
too (the pool has ``n`` workers, rebuilt when ``n`` changes), so a model's
training and its packed evaluation share one knob. numba's own threading layer
is never started: on the OpenMP layer its worker pool competes with torch's for
the same cores.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import torch

__all__ = ["run_ranges"]

_POOL = None
# (pid, workers) of _POOL: a forked child (e.g. a DataLoader worker) must not reuse the
# parent's pool, and a changed torch thread count needs a pool of the new size
_POOL_KEY = None
_POOL_LOCK = threading.Lock()
_TASKS_PER_THREAD = 4  # a few tasks per thread keep cores busy on a noisy machine


def _submit_all(kernel, bounds, threads, args):
    """Submit every non-empty piece to a pool of exactly ``threads`` workers."""
    global _POOL, _POOL_KEY
    key = (os.getpid(), threads)
    # submitting under the lock: a pool replaced by another caller is never submitted to
    # after its shutdown (shutdown(wait=False) still finishes the work already queued)
    with _POOL_LOCK:
        if _POOL is None or _POOL_KEY != key:
            if _POOL is not None and _POOL_KEY[0] == key[0]:
                _POOL.shutdown(wait=False)
            _POOL = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="recbole-quant")
            _POOL_KEY = key
        return [
            _POOL.submit(kernel, bounds[p], bounds[p + 1], *args)
            for p in range(len(bounds) - 1)
            if bounds[p + 1] > bounds[p]
        ]


def run_ranges(kernel, n: int, *args) -> None:
    """Call ``kernel(start, stop, *args)`` over pieces of ``range(n)``.

    Runs inline when one thread is allowed or ``n`` is 1; otherwise in up to
    ``_TASKS_PER_THREAD * torch.get_num_threads()`` contiguous pieces on
    ``torch.get_num_threads()`` threads. Errors raised by any piece are re-raised here.
    """
    threads = torch.get_num_threads()
    if threads <= 1 or n <= 1:
        kernel(0, n, *args)
        return
    pieces = min(n, threads * _TASKS_PER_THREAD)
    bounds = [n * p // pieces for p in range(pieces + 1)]
    for f in _submit_all(kernel, bounds, threads, args):
        f.result()
