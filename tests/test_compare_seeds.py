"""Comparisons over several seeds: the plan, the mean/std table, runs.csv and bad --seeds."""

import csv
import statistics

import pytest

from conftest import FAST_RUN
from recbole_quant.cli import main
from recbole_quant.compare import compare, parse_seeds, plan_runs, plan_seed_runs
from recbole_quant.errors import ConfigValueError
from recbole_quant.report import (
    aggregate_seeds,
    markdown_table,
    read_csv,
    tradeoff_figure,
    write_report,
)


def test_seeds_expand_every_entry_seed_major():
    runs = plan_runs(["HQGNN", "LightGCN"], bits=[1, 2])
    plan = plan_seed_runs(runs, [7, 8])
    # every entry with the first seed, then every entry with the second; entry numbers stay
    assert plan == [
        (1, "HQGNN", {"bits": 1}, 7), (2, "HQGNN", {"bits": 2}, 7), (3, "LightGCN", {}, 7),
        (1, "HQGNN", {"bits": 1}, 8), (2, "HQGNN", {"bits": 2}, 8), (3, "LightGCN", {}, 8),
    ]
    with pytest.raises(ConfigValueError, match="sets seed=3, and --seeds"):
        plan_seed_runs(plan_runs(["BPR:seed=3"]), [1, 2])


def test_parse_seeds_accepts_lists_and_names_the_option_when_wrong():
    assert parse_seeds("2020,2021, 2022") == [2020, 2021, 2022]
    assert parse_seeds("[1,2]") == [1, 2] and parse_seeds([5]) == [5]
    for bad, why in (("abc", "'abc' is not an integer"), ("", "no seed given"),
                     ("1,,2", "an empty entry"), ("1,2,1", "seed 1 is listed twice"),
                     ("-1", "out of range")):
        with pytest.raises(ConfigValueError, match=why) as info:
            parse_seeds(bad)
        assert f"--seeds={bad}" in str(info.value) and "e.g. --seeds=2020,2021,2022" in str(info.value)


def _run(entry, seed, recall=None, error="", **extra):
    row = dict(entry=entry, seed=seed, model="HQGNN", variant="", bits=1, quantized=True,
               item_bits=64, code_table_bytes=100, compression=32.0, seconds_per_epoch=2.0,
               epochs=2, eval_seconds=0.5, error=error)
    row.update(extra)
    if not error:
        row.update({"recall@20": recall, "ndcg@20": recall / 2})
    return row


def test_aggregate_mean_and_sample_std_over_successful_seeds():
    runs = [
        _run(1, 1, 0.10), dict(_run(2, 1, 0.30), model="BPR", bits=32, quantized=False),
        _run(1, 2, 0.20, epochs=3), dict(_run(2, 2, 0.34), model="BPR", bits=32, quantized=False),
        dict(_run(1, 3, error="ValueError: boom"), variant="bits=1"),  # failed rows look like this
        dict(_run(2, 3, error="RuntimeError: bad"), model="BPR", bits=32, quantized=False),
    ]
    hq, bpr = aggregate_seeds(runs)
    assert hq["recall@20"] == pytest.approx(0.15)
    assert hq["recall@20 std"] == pytest.approx(statistics.stdev([0.1, 0.2]))  # n - 1
    assert hq["recall@20 std"] == pytest.approx(0.0707107, abs=1e-6)
    assert hq["ndcg@20"] == pytest.approx(0.075)
    assert hq["epochs"] == pytest.approx(2.5) and hq["variant"] == "" and hq["item_bits"] == 64
    assert hq["seeds"] == "1,2,3" and hq["seeds_ok"] == 2
    assert hq["error"] == "seed 3: ValueError: boom"
    assert "seed" not in hq and "entry" not in hq
    assert (bpr["model"], bpr["bits"], bpr["quantized"]) == ("BPR", 32, False)
    assert bpr["recall@20"] == pytest.approx(0.32) and bpr["seeds_ok"] == 2
    # one successful seed: a mean, no std; none: no numbers, every error kept
    one, none = aggregate_seeds([_run(1, 1, 0.2), _run(1, 2, error="E: x"),
                                 _run(2, 1, error="E: a"), _run(2, 2, error="E: b")])
    assert one["recall@20"] == 0.2 and one["recall@20 std"] is None and one["seeds_ok"] == 1
    assert none["recall@20"] is None and none["seeds_ok"] == 0
    assert none["error"] == "seed 1: E: a; seed 2: E: b"


def test_report_files_hold_std_columns_runs_and_merge(tmp_path):
    runs = [_run(1, 1, 0.1), _run(1, 2, 0.2), _run(1, 3, error="ValueError: boom")]
    table = aggregate_seeds(runs)
    paths = write_report(table, str(tmp_path / "a"), title="t", runs=runs)
    assert set(paths) == {"table.md", "table.csv", "tradeoff.png", "runs.csv"}
    header = next(csv.reader(open(paths["table.csv"])))
    assert header[:7] == ["model", "variant", "bits", "recall@20", "recall@20 std", "ndcg@20",
                          "ndcg@20 std"]
    assert header[-4:] == ["seeds", "seeds_ok", "error", "quantized"]
    md = open(paths["table.md"]).read()
    assert "| Recall@20 | Recall@20 std | NDCG@20 | NDCG@20 std |" in md
    assert "| 0.1500 | 0.0707 |" in md and "| 1,2,3 | 2 | seed 3: ValueError: boom |" in md
    assert "sample standard deviation" in md and "runs.csv" in md
    per_seed = read_csv(paths["runs.csv"])
    assert [(r["seed"], r["entry"], r["recall@20"]) for r in per_seed] == [
        (1, 1, 0.1), (2, 1, 0.2), (3, 1, "")]
    # merge reads the std columns back (seeds stays text, a mean of epochs a float)
    from recbole_quant.report import main as report_main

    assert report_main(["merge", str(tmp_path / "m"), paths["table.csv"]]) == 0
    merged = read_csv(str(tmp_path / "m" / "table.csv"))
    assert merged[0]["recall@20 std"] == pytest.approx(0.0707107, abs=1e-6)
    assert merged[0]["seeds"] == "1,2,3" and merged[0]["seeds_ok"] == 2
    assert "Recall@20 std" in (tmp_path / "m" / "table.md").read_text()
    # a table without seeds keeps its old columns
    assert "std" not in markdown_table([_run(1, 1, 0.1)])


def test_plot_draws_error_bars_only_with_std():
    rows = [dict(model="HQGNN", bits=1, quantized=True, item_bits=64, **{"recall@20": 0.3}),
            dict(model="BPR", bits=32, quantized=False, item_bits=2048, **{"recall@20": 0.35})]
    assert not tradeoff_figure(rows).axes[0].containers
    rows[0]["recall@20 std"], rows[1]["recall@20 std"] = 0.02, None
    ax = tradeoff_figure(rows).axes[0]
    assert len(ax.containers) == 1 and "std" in ax.get_ylabel()


@pytest.mark.parametrize("value", ["abc", "", "2020,2020"])
def test_cli_rejects_bad_seeds_with_exit_2(value, capsys):
    assert main(["--model=BPR,LightGCN", f"--seeds={value}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --seeds=") and "e.g. --seeds=2020,2021,2022" in err
    assert "Traceback" not in err


def test_cli_refuses_seed_and_seeds_together(capsys):
    assert main(["--model=BPR", "--seed=5", "--seeds=1,2"]) == 2
    assert "drop --seed" in capsys.readouterr().err
    with pytest.raises(ConfigValueError, match="drop seed"):
        compare(["BPR"], config_dict={"seed": 5}, seeds=[1, 2])


def test_a_failed_seed_keeps_its_run_and_the_aggregate_counts_it(tmp_path, monkeypatch, capsys):
    import recbole_quant.quick_start as quick_start

    seen = []

    def fake_run(model, dataset, config_file_list, config_dict, cmd_args, saved):
        seen.append((model, config_dict["seed"]))
        if model == "BPR" and config_dict["seed"] == 2:
            raise RuntimeError("diverged")
        recall = config_dict["seed"] / 10
        return dict(model=model, test_result={"recall@20": recall, "ndcg@20": recall / 2},
                    config={"valid_metric": "Recall@20", "topk": [20], "embedding_size": 8},
                    seconds_per_epoch=1.0, epochs=1, test_eval_seconds=0.1, storage=None,
                    n_users=10, n_items=20)

    monkeypatch.setattr(quick_start, "run_recbole_quant", fake_run)
    rows, paths = compare(["BPR", "LightGCN"], seeds="1,2,3", out_dir=str(tmp_path / "r"))
    # seed-major: every model on a seed, before the next seed; each seed in its run's config
    assert seen == [("BPR", 1), ("LightGCN", 1), ("BPR", 2), ("LightGCN", 2), ("BPR", 3),
                    ("LightGCN", 3)]
    assert "[3/6] BPR seed=2: FAILED (RuntimeError: diverged)" in capsys.readouterr().out
    bpr, lightgcn = rows
    assert bpr["recall@20"] == pytest.approx(0.2) and bpr["recall@20 std"] == pytest.approx(0.1414, abs=1e-4)
    assert (bpr["seeds"], bpr["seeds_ok"], bpr["error"]) == ("1,2,3", 2, "seed 2: RuntimeError: diverged")
    assert lightgcn["recall@20"] == pytest.approx(0.2) and lightgcn["seeds_ok"] == 3
    assert lightgcn["recall@20 std"] == pytest.approx(0.1)
    runs = read_csv(paths["runs.csv"])
    assert len(runs) == 6 and runs[2]["error"] == "RuntimeError: diverged" and runs[2]["seed"] == 2


def test_two_seeds_end_to_end(tmp_path, capsys):
    out = tmp_path / "report"
    code = main(["--model=BPR", "--dataset=ml-100k", "--seeds=2020,2021", "--epochs=1",
                 "--eval_step=1", "--show_progress=False", "--state=WARNING",
                 "--embedding_size=16", "--topk=[20]", f"--out_dir={out}"])
    assert code == 0
    text = capsys.readouterr().out
    assert "[1/2] BPR seed=2020" in text and "[2/2] BPR seed=2021" in text
    runs = list(csv.DictReader(open(out / "runs.csv")))
    assert [(r["model"], r["seed"], r["entry"], r["error"]) for r in runs] == [
        ("BPR", "2020", "1", ""), ("BPR", "2021", "1", "")]
    recalls = [float(r["recall@20"]) for r in runs]
    assert recalls[0] != recalls[1]  # the seed reached the runs
    (row,) = list(csv.DictReader(open(out / "table.csv")))
    assert float(row["recall@20"]) == pytest.approx(statistics.fmean(recalls))
    assert float(row["recall@20 std"]) == pytest.approx(statistics.stdev(recalls))
    assert row["seeds"] == "2020,2021" and row["seeds_ok"] == "2"
    md = (out / "table.md").read_text()
    assert "seeds 2020,2021 (mean and sample std)" in md and "Recall@20 std" in md
    assert (out / "tradeoff.png").exists()


def test_mean_epochs_are_printed_to_one_decimal():
    from recbole_quant.report import _cell

    assert (_cell(53.666666666666664, "{}"), _cell(2.0, "{}"), _cell(3, "{}")) == ("53.7", "2", "3")
