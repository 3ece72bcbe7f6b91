"""The packed thread pool runs exactly torch's configured thread count (not the core count)."""
import os
import threading
import time

import pytest
import torch

from recbole_quant.packed import threads as packed_threads


def _concurrency(n_threads, cpu_count, monkeypatch, n=64):
    """Run a sleeping kernel through run_ranges; return (max pieces at once, distinct threads)."""
    monkeypatch.setattr(os, "cpu_count", lambda: cpu_count)
    lock = threading.Lock()
    state = {"now": 0, "max": 0, "idents": set(), "covered": []}

    def kernel(start, stop):
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
            state["idents"].add(threading.get_ident())
            state["covered"].extend(range(start, stop))
        time.sleep(0.03)  # long enough for every worker of the pool to pick up a piece
        with lock:
            state["now"] -= 1

    old = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        packed_threads.run_ranges(kernel, n)
    finally:
        torch.set_num_threads(old)
    assert sorted(state["covered"]) == list(range(n))  # every user exactly once
    return state["max"], len(state["idents"])


@pytest.mark.parametrize("n_threads,cpu_count", [(2, 16), (3, 2), (4, 1)])
def test_pool_follows_torch_thread_count(n_threads, cpu_count, monkeypatch):
    # 2 threads on a 16-core machine must not run 8 (or 16) pieces at once, and 3 threads
    # on 2 cores must still be 3: the configured count, not the core count
    at_once, idents = _concurrency(n_threads, cpu_count, monkeypatch)
    assert at_once == n_threads
    assert idents == n_threads


def test_pool_resizes_when_torch_thread_count_changes(monkeypatch):
    assert _concurrency(3, 16, monkeypatch)[0] == 3
    assert _concurrency(2, 16, monkeypatch)[0] == 2  # not the 3-worker pool of before
    assert _concurrency(5, 16, monkeypatch)[0] == 5


def test_one_thread_runs_inline(monkeypatch):
    caller = threading.get_ident()
    seen = []
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        packed_threads.run_ranges(lambda a, b: seen.append((a, b, threading.get_ident())), 10)
    finally:
        torch.set_num_threads(old)
    assert seen == [(0, 10, caller)]


def test_errors_of_a_piece_are_raised(monkeypatch):
    def kernel(start, stop):
        if start <= 5 < stop:
            raise RuntimeError("piece failed")

    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pytest.raises(RuntimeError, match="piece failed"):
            packed_threads.run_ranges(kernel, 16)
    finally:
        torch.set_num_threads(old)
