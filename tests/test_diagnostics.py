"""Code-health diagnostics: the figures on hand-made codes, the models' codes, the trainer's log.

The figures are checked with exact values on small tables; one test forces a collapse in a
one-epoch HQGNN run on ml-100k and reads the warning, the others train on a tiny toy split.
"""

import logging
import math

import numpy as np
import pytest
import torch

from conftest import FAST_RUN
from helpers import make_toy_benchmark
from recbole_quant import Config
from recbole_quant.diagnostics import (
    code_health_enabled,
    code_stats,
    collapse_reasons,
    constant_dimensions,
    duplicate_shares,
    imbalance,
    mean_abs_correlation,
)
from recbole_quant.errors import ConfigValueError
from recbole_quant.model.general_recommender.hqgnn import HQGNN
from recbole_quant.quick_start import load_data, run_recbole_quant
from recbole_quant.trainer import get_trainer


def codes(rows):
    return torch.tensor(rows, dtype=torch.uint8)


# -- the figures on hand-made codes ------------------------------------------------------------
def test_balanced_independent_codes():
    table = codes([[0, 0], [0, 1], [1, 0], [1, 1]])
    assert imbalance(table).tolist() == [0.0, 0.0]
    assert mean_abs_correlation(table) == 0.0
    assert duplicate_shares(table) == (0.0, 0.25)
    assert constant_dimensions(table).tolist() == []
    stats = code_stats(table)
    assert (stats["imbalance_min"], stats["imbalance_mean"], stats["imbalance_max"]) == (0, 0, 0)
    assert collapse_reasons(stats, "user") == []


def test_constant_dimension():
    table = codes([[1, 0, 0], [1, 1, 0], [1, 0, 1], [1, 1, 1], [1, 0, 0]])
    assert imbalance(table).tolist() == pytest.approx([0.5, 0.1, 0.1], abs=1e-12)
    assert constant_dimensions(table).tolist() == [0]
    # the constant dimension is left out of the pairs: only (1, 2) is left, r = 1/6
    assert mean_abs_correlation(table) == pytest.approx(1 / 6, abs=1e-6)
    stats = code_stats(table)
    assert stats["constant_dims"] == 1 and stats["constant"] == [0]
    assert collapse_reasons(stats, "item") == [
        "item codes: 1 of 3 dimensions are constant over all items (dims 0)"
    ]
    # one varying dimension: no pair to correlate
    assert math.isnan(mean_abs_correlation(codes([[1, 0], [1, 1]])))


def test_duplicated_rows_and_the_collapse_share():
    table = codes([[0, 1, 1], [0, 1, 1], [1, 0, 0], [1, 1, 0], [0, 1, 1], [1, 1, 0]])
    duplicate, top = duplicate_shares(table)
    assert duplicate == 5 / 6  # all but [1, 0, 0]
    assert top == 3 / 6
    stats = code_stats(table)
    assert collapse_reasons(stats, "user") == []  # 50% is not more than half
    table = torch.cat([table, codes([[0, 1, 1]])])
    stats = code_stats(table)
    assert stats["top_code_share"] == 4 / 7
    assert collapse_reasons(stats, "user") == [
        "user codes: 57.1% of the 7 users share one single code (more than 50%)"
    ]
    assert collapse_reasons(stats, "user", max_share=0.6) == []
    # every row the same code: one group, every dimension constant
    same = code_stats(codes([[1, 0, 1]] * 4))
    assert (same["duplicate_share"], same["top_code_share"], same["constant_dims"]) == (1.0, 1.0, 3)
    assert len(collapse_reasons(same, "user")) == 2


def test_correlated_dimensions():
    x = [0, 0, 1, 1]
    w = [0, 1, 0, 1]
    table = codes(list(zip(x, x, [1 - v for v in x], w)))  # x, a copy, its negation, independent
    # pairs: three at |r| = 1 (x, copy, negation), three at r = 0 (with w): mean 0.5
    assert mean_abs_correlation(table) == pytest.approx(0.5, abs=1e-6)
    assert duplicate_shares(table) == (0.0, 0.25)


def test_multi_level_codes():
    # levels 4 (2 bits): a ramp, its reverse, a rare top level, a constant dimension
    table = codes([[0, 3, 0, 2], [1, 2, 0, 2], [2, 1, 0, 2], [3, 0, 1, 2]])
    assert imbalance(table, levels=4).tolist() == [0.0, 0.0, 0.5, 0.75]
    # |r|: ramp/reverse 1, ramp/rare and reverse/rare sqrt(0.6); the constant one left out
    expected = (1 + 2 * math.sqrt(0.6)) / 3
    assert mean_abs_correlation(table) == pytest.approx(expected, abs=1e-6)
    assert constant_dimensions(table).tolist() == [3]
    with pytest.raises(ValueError, match="lie in"):
        imbalance(table, levels=2)


def test_correlation_sample_is_deterministic():
    generator = torch.Generator().manual_seed(3)
    table = torch.randint(0, 2, (5000, 16), generator=generator, dtype=torch.uint8)
    first = mean_abs_correlation(table, max_rows=1000)
    assert first == mean_abs_correlation(table, max_rows=1000)
    assert first != mean_abs_correlation(table)  # a sample, not the whole table
    assert 0 < first < 0.1


def test_code_health_key():
    assert code_health_enabled(None) and code_health_enabled({})
    assert code_health_enabled({"code_health": None})
    assert not code_health_enabled({"code_health": False})
    with pytest.raises(ConfigValueError, match="code_health='yes'"):
        code_health_enabled({"code_health": "yes"})
    config = Config(model="HQGNN", dataset="ml-100k", config_dict=FAST_RUN, cmd_args=[])
    assert config["code_health"] is True  # properties/overall.yaml
    off = Config(model="HQGNN", dataset="ml-100k", cmd_args=["--code_health=False"])
    assert off["code_health"] is False


# -- the models' codes -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "model, options",
    [
        ("HQGNN", {"bits": 1}),
        ("HQGNN", {"bits": 2}),
        ("HashGNN", {"code_length": 24}),
        ("HashGNN", {"quantize": False}),
        ("HashGNN", {"code_length": 24, "mode": "soft", "soft_candidates": 5}),
        ("L2QGCN", {"embedding_size": 16}),
    ],
)
def test_integer_codes_are_the_models_codes(tmp_path, model, options):
    data_path = make_toy_benchmark(tmp_path)
    config = Config(model=model, dataset="toy",
                    config_dict=dict(FAST_RUN, data_path=data_path, **options), cmd_args=[])
    _, train_data, _, _ = load_data(config)
    net = config.model_class(config, train_data._dataset).eval()
    tables = net.integer_codes()
    if options.get("quantize") is False:
        assert tables is None  # no codes: nothing to diagnose
        return
    users, items = tables
    assert users.dtype == items.dtype == torch.uint8
    assert (len(users), len(items)) == (net.n_users, net.n_items)
    with torch.no_grad():
        if model == "HQGNN":
            user_all, item_all = net.forward()
            want = (net.user_quantizer.codes(user_all), net.item_quantizer.codes(item_all))
        elif model == "HashGNN":
            want = tuple(z >= 0 for z in net.code_tables())
        else:
            user_codes, _, item_codes, _ = net.binary_codes()
            want = tuple((c > 0).flatten(1) for c in (user_codes, item_codes))
    for got, expected in zip((users, items), want):
        assert torch.equal(got.long(), expected.long().cpu())
    assert int(users.max()) < 2 ** net.code_width


# -- the trainer -------------------------------------------------------------------------------
def _collapse_users(monkeypatch):
    """Every user gets user 1's embedding, so every user gets one single code."""
    original = HQGNN.forward

    def collapsed(self):
        users, items = original(self)
        return users[1:2].expand_as(users), items

    monkeypatch.setattr(HQGNN, "forward", collapsed)


def test_collapse_warning_names_the_epoch(monkeypatch, capsys):
    _collapse_users(monkeypatch)
    result = run_recbole_quant(
        model="HQGNN", dataset="ml-100k", config_dict=dict(FAST_RUN, epochs=1, bits=1), saved=False
    )
    printed = capsys.readouterr()
    text = printed.out + printed.err
    assert "WARNING" in text
    assert "Code collapse at epoch 0: user codes: 100.0% of the 943 users" in text
    assert "user codes: 64 of 64 dimensions are constant over all users" in text
    assert "item codes" not in text.split("Code collapse", 1)[1].splitlines()[0]  # items are fine
    with open(result["log_file"], encoding="utf-8") as f:
        assert "Code collapse at epoch 0" in f.read()


class _Recorder:
    """Stands in for the trainer's tensorboard writer; keeps the scalars."""

    def __init__(self):
        self.scalars = {}

    def add_scalar(self, tag, value, step):
        self.scalars[(tag, step)] = value

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def _train_toy(tmp_path, **options):
    data_path = make_toy_benchmark(tmp_path)
    config = Config(model="HQGNN", dataset="toy", cmd_args=[], config_dict=dict(
        FAST_RUN, data_path=data_path, epochs=2, eval_step=0, **options))
    _, train_data, _, _ = load_data(config)
    model = config.model_class(config, train_data._dataset)
    trainer = get_trainer(config, config.model_class)(config, model)
    trainer.tensorboard = _Recorder()
    trainer.fit(train_data, None, saved=False)
    return trainer


def test_every_epoch_logs_and_writes_the_figures(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    trainer = _train_toy(tmp_path, bits=2)
    lines = [r.getMessage() for r in caplog.records if "code health" in r.getMessage()]
    epochs = [line.split(",")[0] for line in lines]
    assert epochs == ["epoch 0 code health"] * 2 + ["epoch 1 code health"] * 2
    assert "users: 50 x 64 codes, 4 levels: imbalance min/mean/max" in lines[0]
    tags = {tag for tag, _ in trainer.tensorboard.scalars}
    assert {"code_health/user_imbalance_min", "code_health/item_mean_abs_corr",
            "code_health/user_duplicate_share", "code_health/item_top_code_share"} <= tags
    assert ("code_health/user_imbalance_max", 1) in trainer.tensorboard.scalars
    assert trainer.code_health["epoch"] == 1
    assert trainer.code_health["item"]["rows"] == trainer.model.n_items - 1  # padding dropped


def test_code_health_false_logs_nothing(tmp_path, caplog, monkeypatch):
    _collapse_users(monkeypatch)
    caplog.set_level(logging.INFO)
    trainer = _train_toy(tmp_path, code_health=False)
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "code health" not in messages and "Code collapse" not in messages
    assert not any(tag.startswith("code_health/") for tag, _ in trainer.tensorboard.scalars)
    assert trainer.code_health is None


def test_a_few_constant_dimensions_are_no_collapse():
    from recbole_quant.diagnostics import COLLAPSE_CONSTANT_SHARE

    rng = np.random.default_rng(0)
    table = torch.from_numpy(rng.integers(0, 2, (50, 8)).astype(np.uint8))
    table[:, 3] = 1  # 1 of 8 constant: lost capacity, reported, not a collapse
    stats = code_stats(table)
    assert stats["constant_dims"] == 1 and 1 / 8 <= COLLAPSE_CONSTANT_SHARE
    assert collapse_reasons(stats, "user") == []
    table[:, :3] = 0  # 4 of 8 constant: a collapse
    assert "4 of 8 dimensions are constant" in collapse_reasons(code_stats(table), "user")[0]


def test_codes_in_training_waits_for_the_quantized_stage():
    from types import SimpleNamespace

    from recbole_quant.diagnostics import codes_in_training

    assert codes_in_training(SimpleNamespace(), 0)  # no warm-up: trained from epoch 0
    warmup = SimpleNamespace(quantized_from_epoch=3)
    assert not codes_in_training(warmup, 2) and codes_in_training(warmup, 3)
    assert not codes_in_training(SimpleNamespace(beta=torch.tensor(0.0)), 5)  # HashGNN, beta 0
    assert codes_in_training(SimpleNamespace(beta=torch.tensor(0.02)), 5)
