"""Multi-process training (--nproc): gloo on CPU, exact global-batch split, one checkpoint."""

import glob
import os

import pytest

from conftest import FAST_RUN
from helpers import make_toy_benchmark
from recbole_quant.distributed import free_port, launch_settings
from recbole_quant.errors import ConfigValueError
from recbole_quant.quick_start import run_recbole_quant


def _run(tmp_path, model, nproc, extra=None):
    data_path = make_toy_benchmark(tmp_path)
    config = dict(FAST_RUN, data_path=data_path, epochs=3, topk=[5], valid_metric="Recall@5",
                  train_batch_size=64, nproc=nproc, port=free_port())
    config.update(extra or {})
    return run_recbole_quant(model=model, dataset="toy", config_dict=config)


@pytest.mark.parametrize(
    "model, extra",
    [
        ("HQGNN", {"bits": 1}),
        ("L2QGCN", {"variant": "anl", "warmup_epochs": 1}),
    ],
)
def test_two_processes_match_one_process(tmp_path, model, extra):
    single = _run(tmp_path / "one", model, 1, extra)
    double = _run(tmp_path / "two", model, 2, extra)
    assert double["world_size"] == 2 and double["ranks_ran"] == 2
    assert single["world_size"] == 1
    for key, value in single["test_result"].items():
        assert double["test_result"][key] == pytest.approx(value, abs=1e-3), key
    assert double["best_valid_score"] == pytest.approx(single["best_valid_score"], abs=1e-3)
    saved = sorted(glob.glob(os.path.join("saved", "*.pth")))
    assert len(saved) == 2, saved  # one per run, none per rank


def test_resume_with_two_processes(tmp_path):
    from recbole_quant.checkpoint import load_checkpoint

    first = _run(tmp_path, "HQGNN", 2)
    saved_epoch = load_checkpoint(first["checkpoint"])["epoch"]  # the best epoch's checkpoint
    resumed = _run(tmp_path, "HQGNN", 2, {"resume": first["checkpoint"], "epochs": 5})
    assert resumed["checkpoint"] == first["checkpoint"] and resumed["ranks_ran"] == 2
    assert resumed["epochs"] == 5 - (saved_epoch + 1)  # continues after the saved epoch
    assert sorted(glob.glob(os.path.join("saved", "*.pth"))) == [first["checkpoint"]]


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"nproc": 0}, "nproc"),
        ({"nproc": 2, "world_size": 3, "offset": 2}, "world_size >= 4"),
        ({"nproc": "two"}, "nproc"),
    ],
)
def test_bad_distributed_settings_are_clear(settings, message):
    with pytest.raises(ConfigValueError, match=message):
        launch_settings(settings)


def test_one_process_needs_no_launch():
    assert launch_settings({"nproc": 1}) is None
    assert launch_settings({"nproc": 2}) == (2, 2, "localhost", 5678, 0)
