"""benchmarks/bench_train_speed.py runs end to end on a toy split and refuses a wrong fast path."""

import importlib.util
import os

import torch

from conftest import REPO_ROOT
from helpers import make_toy_benchmark


def load_bench():
    path = os.path.join(REPO_ROOT, "benchmarks", "bench_train_speed.py")
    spec = importlib.util.spec_from_file_location("bench_train_speed", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(bench, tmp_path, monkeypatch, *extra):
    data_path = make_toy_benchmark(tmp_path)
    monkeypatch.setattr(
        "sys.argv",
        ["bench_train_speed.py", "--dataset", "toy", "--data_path", data_path,
         "--train_batch_size", "32", "--batches", "2", "--rounds", "2", *extra],
    )
    return bench.main()


def test_bench_prints_the_speedup_last(tmp_path, monkeypatch, capsys):
    threads = torch.get_num_threads()
    try:
        assert run(load_bench(), tmp_path, monkeypatch, "--threads", "1") == 0
    finally:
        torch.set_num_threads(threads)
    lines = capsys.readouterr().out.strip().splitlines()
    assert any(line.startswith("check: fast propagation == torch.sparse.mm") for line in lines)
    assert lines[-1].startswith("train_speedup=") and float(lines[-1].split("=")[1]) > 0


def test_bench_exits_non_zero_before_any_speed_on_a_mismatch(tmp_path, monkeypatch, capsys):
    bench = load_bench()
    right = bench.sparse_matmul
    monkeypatch.setattr(bench, "sparse_matmul", lambda adj, x: right(adj, x) * 1.001)
    assert run(bench, tmp_path, monkeypatch) == 1
    out = capsys.readouterr().out
    assert "check FAILED" in out and "train_speedup" not in out and " ms" not in out


def test_bench_too_few_batches_is_a_clear_error(tmp_path, monkeypatch, capsys):
    assert run(load_bench(), tmp_path, monkeypatch, "--batches", "1000") == 2
    assert "fewer than --batches" in capsys.readouterr().err
