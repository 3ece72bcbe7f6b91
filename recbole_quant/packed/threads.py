"""Run a nogil numba kernel over ranges of users on a thread pool.

Why not ``prange``: numba compiles a ``parallel=True`` kernel as a gufunc and
re-optimises the whole inlined loop body for it. For the fused top-k that
tripled the cold compile (about 6 s serial -> 19 s with ``prange`` on the
2-core box) without running any faster. The kernels here are serial
``@njit(nogil=True)`` functions taking ``(start, stop, ...)``; this module
splits the range and runs the pieces on threads, which release the GIL.

The thread count follows torch's: ``torch.set_num_threads(n)`` applies here
too, so a model's training and its packed evaluation share one knob. numba's
own threading layer is never started: on the OpenMP layer its worker pool
competes with torch's for the same cores.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import torch

__all__ = ["run_ranges"]

_POOL = None
_POOL_PID = None  # a forked child (e.g. a DataLoader worker) must not reuse the parent's pool
_POOL_LOCK = threading.Lock()
_TASKS_PER_THREAD = 4  # a few tasks per thread keep cores busy on a noisy machine


def _pool() -> ThreadPoolExecutor:
    global _POOL, _POOL_PID
    with _POOL_LOCK:
        if _POOL is None or _POOL_PID != os.getpid():
            _POOL = ThreadPoolExecutor(
                max_workers=os.cpu_count() or 1, thread_name_prefix="recbole-quant"
            )
            _POOL_PID = os.getpid()
        return _POOL


def run_ranges(kernel, n: int, *args) -> None:
    """Call ``kernel(start, stop, *args)`` over pieces of ``range(n)``.

    Runs inline when one thread is allowed or ``n`` is 1; otherwise in up to
    ``_TASKS_PER_THREAD * torch.get_num_threads()`` contiguous pieces. Errors
    raised by any piece are re-raised here.
    """
    threads = torch.get_num_threads()
    if threads <= 1 or n <= 1:
        kernel(0, n, *args)
        return
    pieces = min(n, threads * _TASKS_PER_THREAD)
    bounds = [n * p // pieces for p in range(pieces + 1)]
    futures = [
        _pool().submit(kernel, bounds[p], bounds[p + 1], *args)
        for p in range(pieces)
        if bounds[p + 1] > bounds[p]
    ]
    for f in futures:
        f.result()
