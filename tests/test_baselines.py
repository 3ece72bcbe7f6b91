"""RecBole's own baselines train, checkpoint and evaluate through the plugin's runner."""

import pytest
import torch

from conftest import FAST_RUN
from recbole_quant.quick_start import run_recbole_quant
from recbole_quant.checkpoint import CHECKPOINT_FORMAT, load_checkpoint
from recbole_quant.errors import CheckpointError


@pytest.mark.parametrize("model", ["BPR", "LightGCN", "NGCF"])
def test_recbole_baseline_trains_and_tests_on_ml100k(model):
    result = run_recbole_quant(model=model, dataset="ml-100k", config_dict=dict(FAST_RUN))
    test = result["test_result"]
    assert set(test) >= {"recall@20", "ndcg@20", "hit@10", "precision@50", "mrr@10"}
    assert 0.0 < test["recall@20"] <= 1.0
    assert result["epochs"] == 2 and result["seconds_per_epoch"] > 0
    # the best checkpoint reloads with weights_only=True (torch >= 2.6 default)
    state = torch.load(result["checkpoint"], weights_only=True)
    assert state["format"] == CHECKPOINT_FORMAT and state["model"] == model


def test_checkpoint_of_another_model_is_refused():
    result = run_recbole_quant(model="BPR", dataset="ml-100k", config_dict=dict(FAST_RUN, epochs=1))
    with pytest.raises(CheckpointError, match="holds a BPR model, not LightGCN"):
        load_checkpoint(result["checkpoint"], expected_model="LightGCN")


def test_damaged_checkpoint_is_refused(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="damaged or not a recbole_quant checkpoint"):
        load_checkpoint(str(bad))
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(str(tmp_path / "missing.pth"))


def test_resume_continues_from_saved_epoch():
    from recbole_quant import Config
    from recbole_quant.quick_start import load_data
    from recbole_quant.trainer import get_trainer

    first = run_recbole_quant(
        model="BPR", dataset="ml-100k", config_dict=dict(FAST_RUN, epochs=2, eval_step=0)
    )
    config = Config(model="BPR", dataset="ml-100k", config_dict=dict(FAST_RUN, epochs=4, eval_step=0), cmd_args=[])
    _, train_data, valid_data, _ = load_data(config)
    model = config.model_class(config, train_data._dataset)
    trainer = get_trainer(config, config.model_class)(config, model)
    trainer.resume_checkpoint(first["checkpoint"])
    assert trainer.start_epoch == 2
    trainer.fit(train_data, None, saved=False)
    assert sorted(trainer.train_loss_dict) == [2, 3]  # only the remaining epochs ran


def test_resume_with_another_learning_rate_continues_at_the_new_rate(capsys):
    """A second stage: the configured learning_rate replaces the one in the optimizer state."""
    from recbole_quant import Config
    from recbole_quant.quick_start import load_data
    from recbole_quant.trainer import get_trainer

    first = run_recbole_quant(
        model="BPR", dataset="ml-100k",
        config_dict=dict(FAST_RUN, epochs=1, eval_step=0, learning_rate=0.005),
    )

    def resumed(**options):
        config = Config(model="BPR", dataset="ml-100k",
                        config_dict=dict(FAST_RUN, epochs=3, eval_step=0, **options), cmd_args=[])
        _, train_data, _, _ = load_data(config)
        trainer = get_trainer(config, config.model_class)(config, config.model_class(config, train_data._dataset))
        trainer.resume_checkpoint(first["checkpoint"])
        return trainer

    kept = resumed(learning_rate=0.005)
    assert [g["lr"] for g in kept.optimizer.param_groups] == [0.005]
    assert "trained with learning_rate" not in capsys.readouterr().out
    second_stage = resumed(learning_rate=0.001)
    assert [g["lr"] for g in second_stage.optimizer.param_groups] == [0.001]
    printed = capsys.readouterr()
    assert "trained with learning_rate=0.005; training continues at learning_rate=0.001" in (
        printed.out + printed.err)
    # the optimizer's moments are still the checkpoint's (only the rate changed)
    assert second_stage.optimizer.state_dict()["state"]


def test_resume_continues_the_random_streams_of_the_uninterrupted_run(monkeypatch, tmp_path):
    """Negatives and batch order of resumed epochs are those the uninterrupted run drew
    (the checkpoint's rng_state), not a replay of the first epochs from the seed."""
    import numpy as np
    import recbole.sampler.sampler as sampler

    drawn = []
    original = sampler.Sampler.sample_by_user_ids

    def recording(self, user_ids, item_ids, num):
        out = original(self, user_ids, item_ids, num)
        if self.phase == "train":
            drawn.append(np.asarray(out[:20]).tolist())  # first rows of every batch
        return out

    monkeypatch.setattr(sampler.Sampler, "sample_by_user_ids", recording)
    monkeypatch.chdir(tmp_path)
    options = dict(FAST_RUN, eval_step=1, train_batch_size=20000)  # 4-5 batches per epoch

    def per_epoch(result):
        n = len(drawn) // result["epochs"]
        return [drawn[e * n:(e + 1) * n] for e in range(result["epochs"])]

    whole = per_epoch(run_recbole_quant(model="BPR", dataset="ml-100k", config_dict=dict(options, epochs=5)))
    drawn.clear()
    first = run_recbole_quant(model="BPR", dataset="ml-100k", config_dict=dict(options, epochs=3))
    saved_epoch = torch.load(first["checkpoint"], weights_only=True)["epoch"]
    drawn.clear()
    run_recbole_quant(model="BPR", dataset="ml-100k",
                      config_dict=dict(options, epochs=5, resume=first["checkpoint"]))
    resumed_epochs = list(range(saved_epoch + 1, 5))
    n = len(drawn) // len(resumed_epochs)
    resumed = [drawn[i * n:(i + 1) * n] for i in range(len(resumed_epochs))]
    assert resumed == [whole[e] for e in resumed_epochs]
    assert resumed[0] != whole[0]  # not a replay of epoch 0


def test_run_summary_says_why_training_stopped(monkeypatch, tmp_path):
    from recbole_quant.summary import run_summary

    monkeypatch.chdir(tmp_path)
    capped = run_recbole_quant(model="BPR", dataset="ml-100k", config_dict=dict(FAST_RUN, epochs=2))
    assert capped["stop_reason"].startswith("reached the cap epochs=2")
    assert "raise --epochs" in capped["stop_reason"]  # the best epoch is one of the last two
    assert capped["stop_reason"] in run_summary(capped)
    from types import SimpleNamespace

    from recbole_quant.quick_start import _stop_reason

    config = {"epochs": 100, "stopping_step": 10, "eval_step": 5}
    resumed = SimpleNamespace(start_epoch=40)  # 30 epochs trained after a resume at 40
    assert _stop_reason(config, resumed, 30, 24) == (
        "early stopping at epoch 69 (no better validation score for 10 evaluations)")
    assert _stop_reason(config, SimpleNamespace(start_epoch=0), 100, 20) == "reached the cap epochs=100"
    assert _stop_reason(config, SimpleNamespace(start_epoch=0), 100, 94).endswith("raise --epochs")
    # the best long before the end, but within the patience window: not "still improving"
    late = _stop_reason(config, SimpleNamespace(start_epoch=0), 100, 70)
    assert late == ("reached the cap epochs=100; no better validation score for the last 29 "
                    "epochs (best epoch 70), within the patience of stopping_step=10 "
                    "evaluations: more epochs are unlikely to help")
