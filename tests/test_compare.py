"""Side-by-side comparison: rows, files and storage figures."""

import csv
import os

import pytest

from conftest import FAST_RUN
from helpers import make_toy_benchmark
from recbole_quant.cli import main
from recbole_quant.compare import compare, plan_runs, reported_metrics
from recbole_quant.errors import ConfigValueError, UnknownModelError
from recbole_quant.packed import storage_report
from recbole_quant.report import KEYS


def test_plan_expands_bit_widths_only_for_models_with_a_width():
    runs = plan_runs(["HQGNN", "LightGCN"], bits=[1, 2, 4])
    assert runs == [("HQGNN", {"bits": 1}), ("HQGNN", {"bits": 2}), ("HQGNN", {"bits": 4}), ("LightGCN", {})]
    with pytest.raises(UnknownModelError):
        plan_runs(["HQGNN", "Nope"])


def test_model_entries_carry_their_own_options():
    runs = plan_runs(["HQGNN:grad_estimator=ste", "HQGNN:bits=8", "HashGNN:quantize=False"], bits=[1, 2])
    assert runs == [
        ("HQGNN", {"grad_estimator": "ste", "bits": 1}),
        ("HQGNN", {"grad_estimator": "ste", "bits": 2}),
        ("HQGNN", {"bits": 8}),  # an entry's own width wins over --bits
        ("HashGNN", {"quantize": False}),  # sign codes: no width to expand
    ]
    with pytest.raises(ConfigValueError, match="NAME:key=value"):
        plan_runs(["HQGNN:ste"])


def test_two_model_comparison_on_tiny_dataset(tmp_path, capsys):
    data_path = make_toy_benchmark(tmp_path / "data")
    rows, paths = compare(
        ["HQGNN", "BPR"],
        dataset="toy",
        bits=[1, 2],
        config_dict=dict(FAST_RUN, data_path=data_path, embedding_size=16, topk=[10, 20]),
        out_dir=str(tmp_path / "report"),
    )
    assert [(r["model"], r["bits"]) for r in rows] == [("HQGNN", 1), ("HQGNN", 2), ("BPR", 32)]
    assert "--bits=1,2 (bits per coordinate) does not apply to BPR: each runs once." in capsys.readouterr().out
    for row in rows:
        assert row["error"] == ""
        assert 0 <= row["recall@20"] <= 1 and row["epochs"] == 2
    n_users, n_items = 51, 41  # padding ids included
    one_bit, two_bit, bpr = rows
    # storage columns equal the storage accounting of the codes: d=16 -> 16 / 32 bits
    assert one_bit["item_bits"] == 16 and two_bit["item_bits"] == 32
    assert one_bit["compression"] == pytest.approx(32.0)
    assert two_bit["compression"] == pytest.approx(16.0)
    # one 64-bit word per row, plus the (l, u) range of each table as float32
    assert one_bit["code_table_bytes"] == 8 * (n_users + n_items) + 2 * 2 * 4
    for row, bits in ((one_bit, 1), (two_bit, 2)):
        report = storage_report("uniform", n_users, n_items, 16, 1, bits, bits, 0, 0, 2, 2)
        assert row["item_bits"] == report.item_code_bits
        assert row["user_bits"] == report.user_code_bits
        assert row["code_table_bytes"] == report.user_table_bytes + report.item_table_bytes
        assert row["compression"] == report.ratio_vs_float32
    assert bpr["item_bits"] == 32 * 16 and bpr["compression"] == 1.0
    assert bpr["code_table_bytes"] == 4 * 16 * (n_users + n_items)
    # the three files
    assert set(paths) == {"table.md", "table.csv", "tradeoff.png"}
    with open(paths["table.csv"]) as f:
        table = list(csv.DictReader(f))
    # topk [10, 20] with valid_metric Recall@20: Recall / NDCG at 20, after the bits column
    assert tuple(table[0])[:5] == ("model", "variant", "bits", "recall@20", "ndcg@20")
    assert set(KEYS) < set(table[0]) and len(table) == 3
    header = open(paths["table.md"]).read().splitlines()
    assert any("Recall@20" in line and "bits/item" in line and "vs float32" in line for line in header)
    assert os.path.getsize(paths["tradeoff.png"]) > 5000


def test_reported_metrics_follow_valid_metric_and_topk():
    assert reported_metrics({"valid_metric": "Recall@20", "topk": [10, 20, 50]}) == [
        "recall@20", "ndcg@20", "recall@50", "ndcg@50"]
    assert reported_metrics({"valid_metric": "NDCG@10", "topk": [10]}) == ["ndcg@10", "recall@10"]
    assert reported_metrics({"valid_metric": "MRR@10", "topk": [5, 10, 20]}) == [
        "mrr@10", "recall@10", "ndcg@10", "recall@20", "ndcg@20"]


def test_topk_10_comparison_reports_its_own_cutoff(tmp_path, capsys):
    data_path = make_toy_benchmark(tmp_path / "data")
    out = tmp_path / "report"
    code = main([
        "--model=HQGNN,BPR", "--dataset=toy", f"--data_path={data_path}", "--epochs=1",
        "--embedding_size=8", "--topk=[10]", "--valid_metric=NDCG@10", "--show_progress=False",
        f"--out_dir={out}",
    ])
    assert code == 0
    captured = capsys.readouterr()
    text, terminal = captured.out, captured.out + captured.err
    assert "FAILED" not in text and "test ndcg@10=" in text
    rows = list(csv.DictReader(open(out / "table.csv")))
    assert [r["model"] for r in rows] == ["HQGNN", "BPR"]
    for row in rows:
        assert row["error"] == "" and 0 <= float(row["ndcg@10"]) <= 1 and 0 <= float(row["recall@10"]) <= 1
        assert "recall@20" not in row
    table = (out / "table.md").read_text()
    assert "NDCG@10" in table and "Recall@10" in table and "@20" not in table
    # the table is printed once, at the end; each model's line once
    assert terminal.count("| model |") == 1 and terminal.count("[1/2] HQGNN") == 1
    assert text.index("[2/2] BPR") < text.index("| model |")


def test_plot_axis_is_the_primary_metric_and_the_legend_is_outside_the_data():
    from recbole_quant.report import tradeoff_figure

    rows = [
        dict(model="HQGNN", bits=1, quantized=True, item_bits=64, **{"ndcg@10": 0.3, "recall@10": 0.2}),
        dict(model="BPR", bits=32, quantized=False, item_bits=2048, **{"ndcg@10": 0.35, "recall@10": 0.25}),
    ]
    fig = tradeoff_figure(rows, primary="ndcg@10")
    ax = fig.axes[0]
    assert ax.get_ylabel() == "test NDCG@10"
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legend = ax.get_legend().get_window_extent(renderer)
    assert not legend.overlaps(ax.get_window_extent(renderer))  # never covers a point
    assert legend.x1 <= fig.bbox.x1  # and stays inside the saved image


def test_a_failing_model_keeps_its_row(tmp_path):
    data_path = make_toy_benchmark(tmp_path / "data")
    rows, _ = compare(
        ["BPR", "HQGNN"],
        dataset="toy",
        config_dict=dict(FAST_RUN, data_path=data_path, embedding_size=8, epochs=1, topk=[10, 20]),
        cmd_args=["--bits=12"],  # impossible for HQGNN, unknown for BPR
        out_dir=str(tmp_path / "report"),
    )
    assert [r["model"] for r in rows] == ["BPR", "HQGNN"]
    assert rows[1].get("recall@20") is None
    assert "bits" in rows[0]["error"] and "bits=12" in rows[1]["error"]


def test_cli_comparison_writes_report(tmp_path, capsys):
    data_path = make_toy_benchmark(tmp_path / "data")
    out = tmp_path / "cli_report"
    code = main([
        "--model=HQGNN,HQGNN:grad_estimator=ste,BPR", "--dataset=toy", f"--data_path={data_path}", "--epochs=1",
        "--embedding_size=8", "--topk=[10,20]", "--show_progress=False", f"--out_dir={out}",
    ])
    assert code == 0
    text = capsys.readouterr().out
    assert "[1/3] HQGNN" in text and "[2/3] HQGNN grad_estimator=ste" in text and "[3/3] BPR" in text
    assert text.count("[3/3] BPR") == 1 and text.count("| HQGNN | grad_estimator=ste |") == 1
    table = (out / "table.md").read_text()
    assert "| HQGNN | grad_estimator=ste | 1 |" in table
    # every run of the process writes its own RecBole log file (not only the first one)
    logs = sorted(tmp_path.glob("log/*/*.log"))
    assert len(logs) == 3 and all(p.stat().st_size > 0 for p in logs), logs
    assert (out / "table.md").exists() and (out / "tradeoff.png").exists()


def test_reports_merge_from_csv(tmp_path):
    from recbole_quant.report import main as report_main, read_csv

    rows_a = [dict(model="HQGNN", bits=1, quantized=True, **{"recall@20": 0.3, "item_bits": 64,
                                                               "compression": 32.0, "error": ""})]
    rows_b = [dict(model="LightGCN", bits=32, quantized=False, **{"recall@20": 0.37, "item_bits": 2048,
                                                                    "compression": 1.0, "error": ""})]
    from recbole_quant.report import write_report

    write_report(rows_a, str(tmp_path / "a"))
    write_report(rows_b, str(tmp_path / "b"))
    assert read_csv(str(tmp_path / "a" / "table.csv"))[0]["quantized"] is True
    code = report_main(["merge", str(tmp_path / "m"), str(tmp_path / "a" / "table.csv"),
                        str(tmp_path / "b" / "table.csv"), "--title", "merged"])
    assert code == 0
    merged = read_csv(str(tmp_path / "m" / "table.csv"))
    assert [(r["model"], r["bits"], r["recall@20"], r["quantized"]) for r in merged] == [
        ("HQGNN", 1, 0.3, True), ("LightGCN", 32, 0.37, False)]
    assert "# merged" in (tmp_path / "m" / "table.md").read_text()
    with pytest.raises(SystemExit):
        report_main(["merge", str(tmp_path / "x"), str(tmp_path / "nope.csv")])
