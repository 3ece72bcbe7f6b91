"""The trainer is picked by name, and its mixin order keeps the fused evaluation path on."""

import ast
import os

import pytest

from conftest import FAST_RUN, REPO_ROOT
from helpers import make_toy_benchmark
from recbole_quant import Config
from recbole_quant.evaluation import PackedEvalMixin
from recbole_quant.quick_start import load_data
from recbole_quant.trainer import QuantTrainer, SafeCheckpointMixin, get_trainer


def test_plugin_models_get_quant_trainer_and_baselines_a_safe_one():
    from recbole_quant.registry import PLUGIN_MODELS, get_model

    for name in PLUGIN_MODELS:
        assert get_trainer(None, get_model(name)) is QuantTrainer
    config = Config(model="BPR", dataset="ml-100k", config_dict=FAST_RUN, cmd_args=[])
    baseline = get_trainer(config, config.model_class)
    assert issubclass(baseline, SafeCheckpointMixin) and not issubclass(baseline, PackedEvalMixin)


def test_model_package_never_imports_the_trainer():
    folder = os.path.join(REPO_ROOT, "recbole_quant", "model")
    for dirpath, _, files in os.walk(folder):
        for name in files:
            if not name.endswith(".py"):
                continue
            tree = ast.parse(open(os.path.join(dirpath, name), encoding="utf-8").read())
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom):
                    assert node.module != "recbole_quant.trainer", name
                elif isinstance(node, ast.Import):
                    assert all(a.name != "recbole_quant.trainer" for a in node.names), name


def _trained(tmp_path, trainer_class):
    data_path = make_toy_benchmark(tmp_path)
    config = Config(
        model="HQGNN",
        dataset="toy",
        config_dict=dict(FAST_RUN, data_path=data_path, epochs=1, topk=[5], valid_metric="Recall@5"),
        cmd_args=[],
    )
    _, train_data, valid_data, _ = load_data(config)
    model = config.model_class(config, train_data._dataset)
    trainer = trainer_class(config, model)
    trainer.fit(train_data, None, saved=False)
    return trainer, valid_data


def _count_fused_calls(trainer, valid_data, monkeypatch):
    calls = []
    predictor = trainer.model.predictor
    original = predictor.topk
    monkeypatch.setattr(predictor, "topk", lambda *a, **k: calls.append(1) or original(*a, **k))
    trainer.evaluate(valid_data, load_best_model=False)
    return len(calls)


def test_fused_path_engages_with_the_documented_mixin_order(tmp_path, monkeypatch):
    trainer, valid_data = _trained(tmp_path, QuantTrainer)
    assert _count_fused_calls(trainer, valid_data, monkeypatch) > 0


def test_reversed_order_would_silently_fall_back(tmp_path, monkeypatch):
    # The guard above is meaningful: with PackedEvalMixin after RecBole's Trainer, the
    # fused path never runs (this is what the order in QuantTrainer prevents).
    bases = [b for b in QuantTrainer.__bases__ if b is not PackedEvalMixin] + [PackedEvalMixin]
    reversed_trainer = type("Reversed", tuple(bases), {})
    trainer, valid_data = _trained(tmp_path, reversed_trainer)
    assert _count_fused_calls(trainer, valid_data, monkeypatch) == 0
