"""Side-by-side comparison: rows, files and storage figures."""

import csv
import os

import pytest

from conftest import FAST_RUN
from helpers import make_toy_benchmark
from recbole_quant.cli import main
from recbole_quant.compare import compare, plan_runs
from recbole_quant.errors import UnknownModelError
from recbole_quant.report import KEYS


def test_plan_expands_bit_widths_only_for_models_with_a_width():
    runs = plan_runs(["HQGNN", "LightGCN"], bits=[1, 2, 4])
    assert runs == [("HQGNN", {"bits": 1}), ("HQGNN", {"bits": 2}), ("HQGNN", {"bits": 4}), ("LightGCN", {})]
    with pytest.raises(UnknownModelError):
        plan_runs(["HQGNN", "Nope"])


def test_two_model_comparison_on_tiny_dataset(tmp_path):
    data_path = make_toy_benchmark(tmp_path / "data")
    rows, paths = compare(
        ["HQGNN", "BPR"],
        dataset="toy",
        bits=[1, 2],
        config_dict=dict(FAST_RUN, data_path=data_path, embedding_size=16),
        out_dir=str(tmp_path / "report"),
    )
    assert [(r["model"], r["bits"]) for r in rows] == [("HQGNN", 1), ("HQGNN", 2), ("BPR", 32)]
    for row in rows:
        assert row["error"] == ""
        assert 0 <= row["recall@20"] <= 1 and row["epochs"] == 2
    n_users, n_items = 51, 41  # padding ids included
    one_bit, two_bit, bpr = rows
    # storage columns equal the storage accounting of the codes: d=16 -> 16 / 32 bits
    assert one_bit["item_bits"] == 16 and two_bit["item_bits"] == 32
    assert one_bit["compression"] == pytest.approx(32.0)
    assert two_bit["compression"] == pytest.approx(16.0)
    assert one_bit["code_table_bytes"] == 8 * (n_users + n_items) * 1  # one 64-bit word each
    assert bpr["item_bits"] == 32 * 16 and bpr["compression"] == 1.0
    assert bpr["code_table_bytes"] == 4 * 16 * (n_users + n_items)
    # the three files
    assert set(paths) == {"table.md", "table.csv", "tradeoff.png"}
    with open(paths["table.csv"]) as f:
        table = list(csv.DictReader(f))
    assert tuple(table[0]) == KEYS and len(table) == 3
    header = open(paths["table.md"]).read().splitlines()
    assert any("Recall@20" in line and "bits/item" in line and "vs float32" in line for line in header)
    assert os.path.getsize(paths["tradeoff.png"]) > 5000


def test_a_failing_model_keeps_its_row(tmp_path):
    data_path = make_toy_benchmark(tmp_path / "data")
    rows, _ = compare(
        ["BPR", "HQGNN"],
        dataset="toy",
        config_dict=dict(FAST_RUN, data_path=data_path, embedding_size=8, epochs=1),
        cmd_args=["--bits=12"],  # impossible for HQGNN, unknown for BPR
        out_dir=str(tmp_path / "report"),
    )
    assert [r["model"] for r in rows] == ["BPR", "HQGNN"]
    assert "bits" in rows[0]["error"] and "bits=12" in rows[1]["error"]


def test_cli_comparison_writes_report(tmp_path, capsys):
    data_path = make_toy_benchmark(tmp_path / "data")
    out = tmp_path / "cli_report"
    code = main([
        "--model=HQGNN,BPR", "--dataset=toy", f"--data_path={data_path}", "--epochs=1",
        "--embedding_size=8", "--show_progress=False", "--state=WARNING", f"--out_dir={out}",
    ])
    assert code == 0
    text = capsys.readouterr().out
    assert "[1/2] HQGNN" in text and "[2/2] BPR" in text
    assert (out / "table.md").exists() and (out / "tradeoff.png").exists()
