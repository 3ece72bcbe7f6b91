"""warmup_patience: the full-precision warm-up ends when validation stops improving."""

import logging
import os
from collections import OrderedDict

import pytest
import torch

from conftest import FAST_RUN
from helpers import make_toy_benchmark
from recbole_quant import Config
from recbole_quant.checkpoint import load_checkpoint
from recbole_quant.errors import ConfigValueError
from recbole_quant.quick_start import load_data, run_recbole_quant
from recbole_quant.stage_switch import StageSwitchMixin, WarmupSwitch
from recbole_quant.trainer import QuantTrainer, get_trainer


# -- the rule ----------------------------------------------------------------------------------
def _feed(switch, scores, first_epoch=0):
    return [switch.observe(first_epoch + i, s) for i, s in enumerate(scores)]


def test_switches_after_exactly_patience_non_improving_evaluations(caplog):
    switch = WarmupSwitch("M", cap=50, patience=2)
    assert switch.switch_epoch == 50
    # improve, improve, tie (no improvement), worse -> the 2nd bad one ends the warm-up
    with caplog.at_level(logging.INFO):
        assert _feed(switch, [0.1, 0.2, 0.2, 0.15]) == [False, False, False, True]
    assert switch.switch_epoch == 4 and switch.switched_at == 4
    assert "ends after epoch 3 (patience reached" in caplog.text
    assert "starts at epoch 4" in caplog.text
    # later evaluations change nothing
    assert _feed(switch, [0.0, 0.0, 0.0], first_epoch=4) == [False] * 3
    assert switch.switch_epoch == 4
    # an improvement resets the count
    switch = WarmupSwitch("M", cap=50, patience=2)
    assert _feed(switch, [0.1, 0.05, 0.2, 0.1, 0.1]) == [False, False, False, False, True]
    assert switch.switch_epoch == 5
    # smaller is better (e.g. a loss-like metric)
    switch = WarmupSwitch("M", cap=50, patience=1, bigger=False)
    assert _feed(switch, [0.5, 0.4, 0.45]) == [False, False, True]
    assert switch.switch_epoch == 3


def test_the_cap_still_switches(caplog):
    switch = WarmupSwitch("M", cap=3, patience=2)
    # improving throughout; the evaluation after the last warm-up epoch (2) is not counted
    assert _feed(switch, [0.1, 0.2, 0.1, 0.0, 0.0]) == [False] * 5
    assert switch.switch_epoch == 3 and switch.switched_at is None
    with caplog.at_level(logging.INFO):
        for epoch in range(5):
            switch.announce(epoch)
    assert caplog.text.count("cap reached: warmup_epochs=3") == 1
    assert "quantized training starts at epoch 3" in caplog.text


def test_fixed_count_without_patience():
    switch = WarmupSwitch("M", cap=4, patience=None)
    assert _feed(switch, [0.5, 0.1, 0.1, 0.1, 0.1]) == [False] * 5
    assert switch.switch_epoch == 4
    assert WarmupSwitch("M", cap=0, patience=1).switch_epoch == 0


def test_state_is_plain_and_round_trips():
    switch = WarmupSwitch("M", cap=9, patience=2)
    _feed(switch, [0.3, 0.2])
    state = switch.state_dict()
    assert state == {"switched_at": None, "best": 0.3, "bad_evals": 1}
    other = WarmupSwitch("M", cap=9, patience=2)
    other.load_state_dict(state)
    assert other.observe(2, 0.1) and other.switch_epoch == 3


def test_trainer_calls_the_hook_before_early_stopping():
    assert issubclass(QuantTrainer, StageSwitchMixin)
    mro = QuantTrainer.__mro__
    from recbole.trainer import Trainer

    assert mro.index(StageSwitchMixin) < mro.index(Trainer)


# -- models through the trainer (toy data, scripted validation scores) ------------------------
N_USERS, N_ITEMS = 60, 50


def _options(**extra):
    data_path = make_toy_benchmark(os.path.join(os.getcwd(), "data"), n_users=N_USERS,
                                   n_items=N_ITEMS, per_user=10)
    return dict(FAST_RUN, data_path=data_path, topk=[5], valid_metric="Recall@5",
                embedding_size=16, **extra)


def _build(model, **extra):
    config = Config(model=model, dataset="toy", config_dict=_options(**extra), cmd_args=[])
    _, train_data, valid_data, _ = load_data(config)
    return config, config.model_class(config, train_data._dataset), train_data, valid_data


def _scripted_trainer(config, model, scores):
    """A trainer whose validation scores are ``scores``, in order."""
    trainer = get_trainer(config, config.model_class)(config, model)
    feed = iter(scores)
    trainer.evaluate = lambda *a, **k: OrderedDict([("recall@5", next(feed))])
    return trainer


def _record_quantizing(model):
    seen = []
    hook = model.on_train_epoch_start
    model.on_train_epoch_start = lambda e, d: (hook(e, d), seen.append((e, model.quantizing)))
    return seen


def test_hqgnn_switches_by_patience_and_resumes_quantized(caplog):
    config, model, train_data, valid_data = _build(
        "HQGNN", warmup_epochs=20, warmup_patience=2, epochs=6, stopping_step=1,
        hessian_batches=1,
    )
    seen = _record_quantizing(model)
    # evaluations after epochs 0..5: 1 improvement, 2 without -> quantized from epoch 3
    trainer = _scripted_trainer(config, model, [0.3, 0.2, 0.1, 0.05, 0.06, 0.07])
    with caplog.at_level(logging.INFO):
        trainer.fit(train_data, valid_data, saved=True)
    assert seen == [(0, False), (1, False), (2, False), (3, True), (4, True), (5, True)]
    assert model.quantized_from_epoch == 3
    assert "HQGNN: full-precision warm-up ends after epoch 2 (patience reached" in caplog.text
    # stopping_step=1 never stopped the warm-up; the quantized stage selects on its own scores
    assert sorted(trainer.train_loss_dict) == list(range(6))
    saved = load_checkpoint(trainer.saved_model_file)
    assert saved["epoch"] == 5 and saved["best_valid_score"] == pytest.approx(0.07)
    assert saved["other_parameter"]["warmup_switch"]["switched_at"] == 3

    # resume after the switch: the quantized stage goes on (not back to warm-up, cap 20)
    path = trainer.saved_model_file
    config, model, train_data, valid_data = _build(
        "HQGNN", warmup_epochs=20, warmup_patience=2, epochs=8, stopping_step=1,
        hessian_batches=1,
    )
    assert model.quantized_from_epoch == 20
    seen = _record_quantizing(model)
    trainer = _scripted_trainer(config, model, [0.01, 0.02])
    trainer.resume_checkpoint(path)
    assert trainer.start_epoch == 6 and model.quantized_from_epoch == 3
    trainer.fit(train_data, valid_data, saved=True)
    assert seen == [(6, True), (7, True)]
    # no restart of model selection: the resumed best (0.07, epoch 5) stays the checkpoint
    assert trainer.best_valid_score == pytest.approx(0.07)
    assert load_checkpoint(path)["epoch"] == 5


def test_fixed_warmup_ignores_validation():
    config, model, train_data, valid_data = _build(
        "HQGNN", warmup_epochs=3, epochs=4, stopping_step=1, hessian_batches=1
    )
    assert model.warmup_patience is None and model.quantized_from_epoch == 3
    seen = _record_quantizing(model)
    trainer = _scripted_trainer(config, model, [0.3, 0.2, 0.1, 0.05])
    trainer.fit(train_data, valid_data, saved=False)
    assert seen == [(0, False), (1, False), (2, False), (3, True)]


def test_l2qgcn_two_stage_switch_and_other_anneals(caplog):
    config, model, train_data, valid_data = _build(
        "L2QGCN", variant="anl", warmup_epochs=10, warmup_patience=1, epochs=4
    )
    stages = []
    hook = model.on_train_epoch_start
    model.on_train_epoch_start = lambda e, d: (hook(e, d), stages.append(model.stage))
    trainer = _scripted_trainer(config, model, [0.2, 0.1, 0.3, 0.4])
    trainer.fit(train_data, valid_data, saved=False)
    assert stages == ["float", "float", "binary", "binary"]
    assert model.binary_from_epoch == 2 == model.quantized_from_epoch
    # not a full-precision warm-up: ignored, with a warning
    with caplog.at_level(logging.WARNING):
        _, tanh, _, _ = _build("L2QGCN", variant="anl", anneal="tanh_temperature",
                               tau_epochs=4, warmup_patience=1)
    assert tanh.binary_from_epoch == 4 and tanh.warmup_switch.patience is None
    assert "warmup_patience=1 applies to anneal=two_stage only" in caplog.text


def test_hashgnn_schedule_starts_after_the_warmup():
    options = dict(encoder="lightgcn", code_length=8, beta_step=0.5, beta_period=1, epochs=10)
    _, plain, _, _ = _build("HashGNN", **options)
    assert [plain.on_train_epoch_start(e) for e in range(4)] == [0.0, 0.5, 1.0, 1.0]
    assert plain.quantized_from_epoch == 0
    _, fixed, _, _ = _build("HashGNN", warmup_epochs=2, **options)
    assert [fixed.on_train_epoch_start(e) for e in range(5)] == [0.0, 0.0, 0.0, 0.5, 1.0]
    _, patient, _, _ = _build("HashGNN", warmup_epochs=5, warmup_patience=1, **options)
    betas = []
    for epoch, score in enumerate([0.2, 0.1, 0.3, 0.3, 0.3]):
        betas.append(patient.on_train_epoch_start(epoch))
        patient.on_valid_end(epoch, score)
    assert patient.quantized_from_epoch == 2
    assert betas == [0.0, 0.0, 0.0, 0.5, 1.0]
    _, continuous, _, _ = _build("HashGNN", quantize=False, warmup_epochs=3, **options)
    assert continuous.quantized_from_epoch == 0


@pytest.mark.parametrize("model", ["HQGNN", "L2QGCN", "HashGNN"])
def test_bad_patience_is_refused(model):
    with pytest.raises(ConfigValueError, match=r"warmup_patience=0 is not valid: an integer "
                       r"in >= 1, or ~"):
        _build(model, warmup_patience=0)


# -- end to end on ml-100k ---------------------------------------------------------------------
def test_l2qgcn_on_ml100k_switches_by_patience():
    # learning_rate 0 keeps the validation score constant: the 2nd evaluation does not
    # improve on the 1st (a tie is no improvement), so warmup_patience=1 ends the warm-up
    # after epoch 1, well before the cap of 10
    result = run_recbole_quant(
        model="L2QGCN",
        dataset="ml-100k",
        config_dict=dict(FAST_RUN, state="INFO", epochs=3, variant="anl", warmup_epochs=10,
                         warmup_patience=1, learning_rate=0.0),
    )
    assert 0 < result["test_result"]["recall@10"] <= 1 and result["epochs"] == 3
    log = open(result["log_file"], encoding="utf-8").read()
    assert ("L2QGCN: full-precision warm-up ends after epoch 1 (patience reached: 1 "
            "evaluation(s) without improvement") in log
    assert "binarised training starts at epoch 2" in log
    assert "L2QGCN epoch 2: training stage 'binary'" in log
    assert result["best_epoch"] == 2  # model selection restarted at the switch
