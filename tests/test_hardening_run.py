"""Hardening of training, checkpoints and exports (issue 12): nothing unpickled or evaluated
from a file, the checkpoint is never overwritten by its export, divergence and Ctrl-C end
with a clear message and keep the best checkpoint, logs are per run, epochs >= 1, resume.

Everything trains tiny models on the ``toy`` benchmark (50 users x 40 items)."""

import json
import os
import pickle
import re

import numpy as np
import pytest
import torch

from conftest import FAST_RUN
from helpers import make_toy_benchmark
from recbole_quant import Config
from recbole_quant.checkpoint import load_checkpoint, save_atomic
from recbole_quant.cli import main as cli_main
from recbole_quant.errors import ConfigValueError, ExportError, TrainingDivergedError
from recbole_quant.export import _sha256, export_model, load_export
from recbole_quant.__main__ import main as export_main
from recbole_quant.quick_start import load_data, run_recbole_quant

TOY = dict(FAST_RUN, topk=[10], valid_metric="recall@10")


def toy_options(data_path, **extra):
    return dict(TOY, data_path=data_path, **extra)


def cli_args(data_path, *extra, model="HQGNN"):
    return [f"--model={model}", "--dataset=toy", f"--data_path={data_path}",
            "--show_progress=False", "--state=WARNING", "--topk=[10]",
            "--valid_metric=recall@10", *extra]


@pytest.fixture
def toy(isolated_cwd):
    return make_toy_benchmark(isolated_cwd / "data")


@pytest.fixture
def trained(toy):
    """A 1-epoch 1-bit HQGNN checkpoint."""
    result = run_recbole_quant(model="HQGNN", dataset="toy",
                               config_dict=toy_options(toy, bits=1, epochs=1))
    return result["checkpoint"]


class RunsCode:
    """Unpickling this touches a marker file: what a planted pickle would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# ---------------------------------------------------------------- item 1: checkpoint config


def test_export_of_checkpoint_with_code_in_its_config_runs_nothing(trained, isolated_cwd, capsys):
    marker = isolated_cwd / "PWNED_EXPORT"
    state = load_checkpoint(trained)
    state["config"]["learning_rate"] = f"__import__('os').system('touch {marker}') or 0.003"
    save_atomic(state, "evil.pth")
    assert export_main(["export", "evil.pth", "out.npz"]) == 0
    assert not marker.exists()
    assert load_export("out.npz").n_items == 40


# ---------------------------------------------------------------- item 2: dataset caches


def test_planted_dataset_and_dataloader_pickles_are_never_loaded(toy, isolated_cwd):
    marker = isolated_cwd / "PWNED_PICKLE"
    os.makedirs("saved")
    for name in ("toy-Dataset.pth", "toy-for-BPR-dataloader.pth"):
        with open(os.path.join("saved", name), "wb") as f:
            pickle.dump(RunsCode(marker), f)
    config = Config(model="BPR", dataset="toy", config_dict=toy_options(toy), cmd_args=[])
    assert config["trust_saved_dataset"] is False
    dataset, train_data, _, _ = load_data(config)
    assert not marker.exists()
    assert dataset.user_num == 51 and len(train_data._dataset) == 50 * 6


def test_saved_dataset_is_written_but_not_read_back_by_default(toy, isolated_cwd):
    config = Config(model="BPR", dataset="toy", config_dict=toy_options(toy, save_dataset=True),
                    cmd_args=[])
    load_data(config)
    assert os.path.isfile(os.path.join("saved", "toy-Dataset.pth"))
    with open(os.path.join("saved", "toy-Dataset.pth"), "wb") as f:
        pickle.dump(RunsCode(isolated_cwd / "PWNED_SAVED"), f)
    load_data(config)
    assert not (isolated_cwd / "PWNED_SAVED").exists()


def test_checkpoint_cannot_opt_in_to_unpickling_for_export(trained, isolated_cwd):
    marker = isolated_cwd / "PWNED_OPT_IN"
    with open("planted.pkl", "wb") as f:
        pickle.dump(RunsCode(marker), f)
    state = load_checkpoint(trained)
    state["config"].update(trust_saved_dataset=True, dataset_save_path="planted.pkl",
                           dataloaders_save_path="planted.pkl")
    save_atomic(state, "opt-in.pth")
    export_model("opt-in.pth", "out.npz")
    assert not marker.exists()


# ---------------------------------------------------------------- item 7: export over input


def test_export_refuses_to_overwrite_its_checkpoint(trained, capsys):
    before = open(trained, "rb").read()
    assert export_main(["export", trained, trained]) == 2
    assert "is the checkpoint itself" in capsys.readouterr().err
    assert open(trained, "rb").read() == before
    alias = os.path.join(os.path.dirname(trained), ".", os.path.basename(trained))
    with pytest.raises(ExportError, match="is the checkpoint itself"):
        export_model(trained, alias)


def test_export_never_touches_a_neighbouring_tmp_file(trained):
    with open("out.npz.tmp", "w") as f:
        f.write("user data")
    export_model(trained, "out.npz")
    assert open("out.npz.tmp").read() == "user data"
    assert [n for n in os.listdir(".") if n.startswith(".tmp-")] == []


# ---------------------------------------------------------------- item 9: unsorted history


def test_export_with_valid_digests_but_unsorted_history_is_refused(trained, capsys):
    export_model(trained, "good.npz")
    with np.load("good.npz", allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    indptr, indices = arrays["history_indptr"], arrays["history_indices"].copy()
    row = int(np.argmax(np.diff(indptr) >= 2))
    start = indptr[row]
    indices[start], indices[start + 1] = indices[start + 1], indices[start]
    arrays["history_indices"] = indices
    meta = json.loads(str(arrays["meta"]))
    meta["arrays"]["history_indices"]["sha256"] = _sha256(indices)  # digests stay valid
    arrays["meta"] = np.array(json.dumps(meta, sort_keys=True))
    with open("bad.npz", "wb") as f:
        np.savez_compressed(f, **arrays)
    with pytest.raises(ExportError, match=f"history row of internal user {row} is not sorted"):
        load_export("bad.npz")
    assert export_main(["info", "bad.npz"]) == 2
    assert "Traceback" not in capsys.readouterr().err


# ---------------------------------------------------------------- item 8: divergence


def test_huge_learning_rate_is_a_divergence_error_not_a_crash(toy, capsys):
    assert cli_main(cli_args(toy, "--learning_rate=1e9", "--epochs=3")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Training diverged:"), err
    assert "Traceback" not in err and "lower learning_rate" in err


def test_non_finite_weight_stops_and_keeps_the_best_checkpoint(toy, monkeypatch):
    from recbole_quant.model.general_recommender.hqgnn import HQGNN

    original, calls = HQGNN.calculate_loss, []

    def poison_second_epoch(self, interaction):
        calls.append(1)  # toy: one training batch per epoch
        loss = original(self, interaction)
        if len(calls) == 2:
            with torch.no_grad():
                self.item_embedding.weight[3, 0] = float("inf")  # loss stays finite
        return loss

    monkeypatch.setattr(HQGNN, "calculate_loss", poison_second_epoch)
    with pytest.raises(TrainingDivergedError,
                       match=r"Weight 'item_embedding.weight' became non-finite .* at epoch 1") as info:
        run_recbole_quant(model="HQGNN", dataset="toy",
                          config_dict=toy_options(toy, bits=1, epochs=3, eval_step=0))
    kept = re.search(r"\(epoch 0\) is kept at (\S+\.pth)", str(info.value)).group(1)
    state = load_checkpoint(kept, expected_model="HQGNN")
    assert state["epoch"] == 0  # eval_step=0 saves every epoch: epoch 1 was never saved
    assert torch.isfinite(state["state_dict"]["item_embedding.weight"]).all()


# ---------------------------------------------------------------- item 9: Ctrl-C, resume


def test_ctrl_c_prints_best_checkpoint_and_resume_then_resume_continues(toy, monkeypatch, capsys):
    from recbole_quant.trainer import EpochTimerMixin

    original = EpochTimerMixin._train_epoch

    def interrupt_at_epoch_2(self, train_data, epoch_idx, *args, **kwargs):
        if epoch_idx == 2:
            raise KeyboardInterrupt
        return original(self, train_data, epoch_idx, *args, **kwargs)

    monkeypatch.setattr(EpochTimerMixin, "_train_epoch", interrupt_at_epoch_2)
    assert cli_main(cli_args(toy, "--epochs=5")) == 130
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    match = re.fullmatch(
        r"interrupted at epoch 2: best checkpoint so far \(epoch (\d)\) is (\S+\.pth); "
        r"resume: the same command with --resume=(\S+); "
        r"export: python -m recbole_quant export (\S+) OUT\.npz", err)
    assert match, err
    best, path = int(match.group(1)), match.group(2)
    assert match.group(3) == path and load_checkpoint(path)["epoch"] == best

    monkeypatch.setattr(EpochTimerMixin, "_train_epoch", original)
    epochs_run = []
    monkeypatch.setattr(EpochTimerMixin, "_train_epoch",
                        lambda self, data, idx, *a, **k: epochs_run.append(idx) or original(self, data, idx, *a, **k))
    assert cli_main(cli_args(toy, "--epochs=4", f"--resume={path}", "--eval_step=0")) == 0
    assert epochs_run == list(range(best + 1, 4))
    assert load_checkpoint(path)["epoch"] == 3


def test_resume_of_another_dataset_or_missing_file_is_clear(trained, toy, capsys):
    assert cli_main(cli_args(toy, "--resume=nosuch.pth")) == 2
    assert "Checkpoint not found: nosuch.pth" in capsys.readouterr().err
    assert cli_main(cli_args(toy, f"--resume={trained}", model="BPR")) == 2
    assert "holds a HQGNN model, not BPR" in capsys.readouterr().err
    assert cli_main(cli_args(toy, f"--resume={trained}", "--embedding_size=8")) == 2
    err = capsys.readouterr().err
    assert "does not fit the model built from this config" in err and "Traceback" not in err


def test_resume_with_nothing_left_tests_the_checkpoint(trained, toy):
    before = torch.load(trained, weights_only=True)
    result = run_recbole_quant(model="HQGNN", dataset="toy",
                               config_dict=toy_options(toy, bits=1, epochs=1, resume=trained))
    assert result["epochs"] == 0 and result["test_result"]["recall@10"] > 0
    # RecBole's fit would rewrite the file as "epoch -1" (a later resume would restart at 0)
    after = torch.load(trained, weights_only=True)
    assert after["epoch"] == before["epoch"] == result["best_epoch"] >= 0
    assert after["best_valid_score"] == before["best_valid_score"]


# ---------------------------------------------------------------- item 11: log names


def test_runs_started_in_the_same_second_get_their_own_logs(toy, monkeypatch):
    import recbole.utils.logger
    import recbole_quant.quick_start as quick_start

    frozen = lambda: "Dec-01-2026_12-00-00"  # noqa: E731
    monkeypatch.setattr(recbole.utils.logger, "get_local_time", frozen)
    monkeypatch.setattr(quick_start, "get_local_time", frozen)
    options = toy_options(toy, bits=1, epochs=1, state="INFO")
    for _ in range(2):
        run_recbole_quant(model="HQGNN", dataset="toy", config_dict=options, saved=False)
    logs = sorted(os.listdir(os.path.join("log", "HQGNN")))
    assert len(logs) == 2, logs
    for name in logs:
        text = open(os.path.join("log", "HQGNN", name)).read()
        assert text.count("test result") == 1  # each run wrote its own file, once


# ---------------------------------------------------------------- item 12: epochs


@pytest.mark.parametrize("epochs", [0, -1])
def test_no_training_epoch_is_refused(toy, capsys, epochs):
    with pytest.raises(ConfigValueError, match=f"epochs={epochs}: at least one training epoch"):
        run_recbole_quant(model="BPR", dataset="toy", config_dict=toy_options(toy, epochs=epochs))
    assert cli_main(cli_args(toy, f"--epochs={epochs}", model="BPR")) == 2
    assert "at least one training epoch" in capsys.readouterr().err


# ---------------------------------------------------------------- item 13: determinism


def test_same_seed_twice_gives_bit_identical_weights_and_codes(isolated_cwd):
    # Large enough that a training batch repeats users and items: the backward of the row
    # gathers then accumulates repeated rows (index_put_ with accumulate on CPU) in thread
    # order unless torch's deterministic algorithms are on (max weight difference ~2e-7
    # after 2 epochs with 2 threads before, on this shape).
    data_path = make_toy_benchmark(isolated_cwd / "data", n_users=600, n_items=500, per_user=30)
    options = toy_options(data_path, bits=2, epochs=2, eval_step=0)
    states, exports = [], []
    for run in range(2):
        result = run_recbole_quant(model="HQGNN", dataset="toy", config_dict=options)
        states.append(load_checkpoint(result["checkpoint"])["state_dict"])
        exports.append(export_model(result["checkpoint"], f"run{run}.npz").path)
    assert states[0].keys() == states[1].keys()
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key
    with np.load(exports[0]) as first, np.load(exports[1]) as second:
        for name in first.files:
            if name.startswith("codes."):
                assert np.array_equal(first[name], second[name]), name
