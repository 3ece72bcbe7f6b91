"""The benchmark scripts refuse to report a speedup for a wrong result.

``benchmarks/bench_full_sort.py`` checks every code kind against an independent evaluation
of the same codes before timing anything; here one kernel is made wrong at a time and the
script's check function (and its ``main``) must fail.
"""
import importlib.util
import os
import sys

import numpy as np
import pytest

from recbole_quant.packed import kernels

from conftest import REPO_ROOT

N_USERS, N_ITEMS, K = 120, 700, 20


def _load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO_ROOT, "benchmarks", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the script loads
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return _load("bench_full_sort")


@pytest.fixture(scope="module")
def kinds(bench):
    names = ["hashgnn_sign32", "hqgnn_1bit_d64", "hqgnn_4bit_d64", "l2qgcn_anl"]
    return bench.build_kinds(N_USERS, N_ITEMS, seed=0, names=names)


@pytest.fixture(scope="module")
def histories(bench):
    hist, label = bench.load_histories("/nonexistent/train.txt", N_USERS, N_ITEMS, seed=0)
    assert label.startswith("synthetic")
    return hist


def test_every_kind_passes_with_the_real_kernels(bench, kinds, histories):
    assert bench.run_checks(kinds, histories, K) == []
    # ties are what the tie-rule checks are about: the 1-bit kinds must have some
    for kind in kinds[:2]:
        s, _ = kind.pred.topk(np.arange(10), K)
        assert (s.numpy()[:, 1:] == s.numpy()[:, :-1]).any()


def _wrong_tie_order(orig):
    def run_topk(*args, **kwargs):
        s, i = orig(*args, **kwargs)
        i = i.copy()
        for r in range(len(s)):  # the first tie in a row listed higher id first
            tie = np.flatnonzero(s[r, 1:] == s[r, :-1])
            if tie.size:
                j = tie[0]
                i[r, [j, j + 1]] = i[r, [j + 1, j]]
        return s, i
    return run_topk


def _ignores_exclusion(orig):
    def run_topk(*args, **kwargs):
        args = list(args)
        args[-3] = np.zeros_like(args[-3])  # indptr: nothing excluded
        args[-2] = args[-2][:0]
        return orig(*args, **kwargs)
    return run_topk


def _one_ulp_off(orig):
    def run_scores(*args, **kwargs):
        out = orig(*args, **kwargs)
        out[0, 0] = np.nextafter(out[0, 0], np.float32(np.inf))
        return out
    return run_scores


ALL = {"hashgnn_sign32", "hqgnn_1bit_d64", "hqgnn_4bit_d64", "l2qgcn_anl"}
WITH_TIES = ALL - {"l2qgcn_anl"}  # float scales: no ties among the top-k of these users


@pytest.mark.parametrize("kernel,wrong,expect,failing", [
    ("run_topk", _wrong_tie_order, "no exclusion: fused top-k differs", WITH_TIES),
    ("run_topk", _ignores_exclusion, "history excluded: fused top-k differs", ALL),
    ("run_scores", _one_ulp_off, "the scoring formula on the same codes gives", ALL),
])
def test_a_wrong_kernel_fails_the_checks(bench, kinds, histories, monkeypatch, kernel, wrong,
                                         expect, failing):
    monkeypatch.setattr(kernels, kernel, wrong(getattr(kernels, kernel)))
    failures = bench.run_checks(kinds, histories, K)
    failed = {kind.name for kind in kinds if any(f.startswith(kind.name) and expect in f for f in failures)}
    assert failed >= failing, failures


def test_main_exits_nonzero_before_any_speedup(bench, monkeypatch, capsys):
    argv = ["--quick", "--users", "64", "--repeats", "1", "--no-first-call",
            "--history", "/nonexistent/train.txt", "--kinds", "hashgnn_sign32", "hqgnn_1bit_d64"]
    monkeypatch.setattr(kernels, "run_topk", _wrong_tie_order(kernels.run_topk))
    with pytest.raises(SystemExit) as exc:
        bench.main(argv)
    assert exc.value.code == 1
    out = capsys.readouterr().out
    assert "FAILED: hqgnn_1bit_d64" in out and "speedup" not in out
    monkeypatch.undo()  # the real kernels: a full (tiny) run ending with the headline line
    bench.main(argv)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("speedup_vs_float32=") and "speedup_hashgnn_sign32=" in lines[-3]
    assert float(lines[-1].split("=")[1]) == float(lines[-2].split("=")[1])  # hqgnn_1bit_d64


# --------------------------------------------------------------------------- bench_eval


@pytest.fixture(scope="module")
def bench_eval():
    return _load("bench_eval")


def test_eval_metric_pairs_must_be_equal(bench_eval):
    same = {"recall@20": 0.1, "ndcg@20": 0.2}
    results = {p: dict(same) for p in "abcde"}
    results["c"]["recall@20"] = 0.3  # (c) vs (e) may differ by tie order: not a failure
    assert bench_eval.metric_failures(results, {"a": [dict(same)]}) == []
    for x, y in bench_eval.EQUAL_PAIRS:
        bad = {p: dict(same) for p in "abcde"}
        bad[y]["ndcg@20"] = 0.25
        failures = bench_eval.metric_failures(bad, {})
        assert len(failures) == 1 and bench_eval.PATHS[x] in failures[0], failures
    unstable = bench_eval.metric_failures(results, {"e": [dict(same), {"recall@20": 0.0, "ndcg@20": 0.2}]})
    assert unstable == [f"{bench_eval.PATHS['e']}: metrics changed between runs"]


def test_bench_eval_runs_and_fails_on_a_wrong_fused_kernel(bench_eval, tmp_path, monkeypatch, capsys):
    argv = ["--shape", "150", "300", "4000", "--repeats", "1", "--work_dir", str(tmp_path / "work")]
    bench_eval.main(argv)
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("=")[0] for line in lines[-3:]] == ["same_model_speedup", "float_sparse_speedup",
                                                          "eval_speedup"]
    # the fused top-k forgets the history: (e) no longer matches (d), no ratio is printed
    monkeypatch.setattr(kernels, "run_topk", _ignores_exclusion(kernels.run_topk))
    with pytest.raises(SystemExit) as exc:
        bench_eval.main(argv)
    out = capsys.readouterr().out
    assert exc.value.code == 1 and "FAILED: (d)" in out and "speedup" not in out
