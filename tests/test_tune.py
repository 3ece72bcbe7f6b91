"""Hyper-parameter search through the plugin's runner (RecBole's file format, no eval)."""

import csv
import os

import pytest
import yaml

from conftest import FAST_RUN
from helpers import make_toy_benchmark
from recbole_quant.tune import TuneUsageError, main, read_params_file, tune


def _write(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return str(path)


def test_params_file_is_read_as_data_never_evaluated(tmp_path):
    marker = tmp_path / "PWNED"
    path = _write(
        tmp_path / "hyper.test",
        "# comment\n"
        "learning_rate choice [0.01,0.005]\n"
        f"grad_estimator choice [\"__import__('os').system('touch {marker}')\", 'ste']\n"
        "mlp choice ['[64,64]','[128]']\n"
        "reg_weight loguniform -9,-4\n"
        "embedding_size quniform 32,128,32\n",
    )
    space = read_params_file(path)
    assert not marker.exists()
    assert space["choice"]["learning_rate"] == [0.01, 0.005]
    assert space["choice"]["mlp"] == [[64, 64], [128]]
    assert space["choice"]["grad_estimator"][0].startswith("__import__")  # a plain string
    assert space["loguniform"]["reg_weight"] == [-9.0, -4.0]
    assert space["quniform"]["embedding_size"] == [32.0, 128.0, 32.0]


@pytest.mark.parametrize(
    "text, message",
    [
        ("learning_rate choice\n", "line 1"),
        ("lr between 1,2\n", "unknown type"),
        ("lr uniform 2,1\n", "low < high"),
        ("lr choice [0.1]\nlr choice [0.2]\n", "twice"),
        ("lr choice 0.1\n", "non-empty list"),
    ],
)
def test_bad_params_files_name_file_and_problem(tmp_path, text, message):
    with pytest.raises(TuneUsageError, match=message):
        read_params_file(_write(tmp_path / "bad.test", text))


def test_cli_errors_exit_2(tmp_path, capsys):
    assert main(["--model=HQGNN"]) == 2
    assert "--params" in capsys.readouterr().err
    params = _write(tmp_path / "p.test", "learning_rate uniform 0.001,0.01\n")
    assert main(["--model=HQGNN", f"--params={params}"]) == 2  # exhaustive needs a grid
    assert "exhaustive" in capsys.readouterr().err
    grid = _write(tmp_path / "g.test", "learning_rate choice [0.01,0.005]\n")
    assert main(["--model=HQGNN", f"--params={grid}", "--learning_rate=0.1"]) == 2
    assert "both searched" in capsys.readouterr().err


def test_grid_of_two_runs_two_trials_and_best_yaml_reproduces(tmp_path):
    from recbole_quant.quick_start import run_recbole_quant

    data_path = make_toy_benchmark(tmp_path)
    params = _write(tmp_path / "hyper.test", "learning_rate choice [0.05,0.001]\n")
    fixed = [f"--{k}={v}" for k, v in dict(FAST_RUN, epochs=3).items()] + [
        f"--data_path={data_path}", "--topk=[5]", "--valid_metric=Recall@5",
    ]
    out = tmp_path / "tuned"
    rows, out_dir = tune("HQGNN", params, dataset="toy", cmd_args=fixed, out_dir=str(out))
    assert [r["params"]["learning_rate"] for r in sorted(rows, key=lambda r: r["trial"])] == [0.05, 0.001]  # file order
    assert rows[0]["best_valid_score"] >= rows[1]["best_valid_score"]
    with open(out / "tune.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [int(r["rank"]) for r in table] == [1, 2] and table[0]["valid_metric"].lower() == "recall@5"
    assert os.path.isfile(out / "tune.md")
    best = yaml.safe_load(open(out / "best.yaml"))
    assert best["learning_rate"] == rows[0]["params"]["learning_rate"] and best["model"] == "HQGNN"
    again = run_recbole_quant(
        model=best["model"], dataset=best["dataset"], config_file_list=[str(out / "best.yaml")]
    )
    assert again["best_valid_score"] == pytest.approx(rows[0]["best_valid_score"], abs=1e-6)


def test_random_search_runs_through_recbole_hypertuning(tmp_path):
    pytest.importorskip("hyperopt")
    data_path = make_toy_benchmark(tmp_path)
    params = _write(tmp_path / "hyper.test", "learning_rate loguniform -7,-3\n")
    fixed = [f"--{k}={v}" for k, v in dict(FAST_RUN, epochs=3).items()] + [
        f"--data_path={data_path}", "--topk=[5]", "--valid_metric=Recall@5",
    ]
    rows, _ = tune("HQGNN", params, dataset="toy", algo="random", max_evals=2,
                   cmd_args=fixed, out_dir=str(tmp_path / "r"))
    assert len(rows) == 2
    assert all(0.0009 < r["params"]["learning_rate"] < 0.05 for r in rows)


def test_python_m_recbole_quant_tune_dispatches(capsys):
    from recbole_quant.__main__ import main as package_main

    assert package_main(["tune", "--help"]) == 0
    assert "--params" in capsys.readouterr().out
    assert package_main(["tune", "--model=HQGNN"]) == 2
