"""L2Q-GCN / L2Q-GCN-anl: per-layer sign codes + scales, stages, packed scoring.

All tests but one use a tiny synthetic dataset (``toy``: 60 users x 50 items) so the file
runs in seconds; one runs on ml-100k for one epoch. The trained ml-100k results are in
``docs/results/``.
"""

import os

import numpy as np
import pytest
import torch
from recbole.data.interaction import Interaction

from conftest import FAST_RUN
from helpers import write_inter
from recbole_quant import Config
from recbole_quant.errors import CheckpointError, ConfigValueError
from recbole_quant.quantization import gaussian_dirac
from recbole_quant.quick_start import load_data, run_recbole_quant
from recbole_quant.checkpoint import load_checkpoint
from recbole_quant.trainer import get_trainer


@pytest.fixture(scope="module")
def toy_path(tmp_path_factory):
    """A random implicit-feedback dataset: 60 users, 50 items, 12 interactions per user."""
    root = tmp_path_factory.mktemp("l2q_data")
    rng = np.random.default_rng(0)
    items = np.arange(1, 51)
    rows = [(u, int(i)) for u in range(1, 61) for i in rng.choice(items, 12, replace=False)]
    write_inter(str(root / "toy" / "toy.inter"), rows)
    return str(root)


def toy_config(toy_path, **overrides):
    base = dict(FAST_RUN, data_path=toy_path, train_batch_size=128, embedding_size=16)
    base.update(overrides)
    return base


def build(toy_path, **overrides):
    config = Config(
        model="L2QGCN", dataset="toy", config_dict=toy_config(toy_path, **overrides), cmd_args=[]
    )
    _, train_data, valid_data, test_data = load_data(config)
    model = config.model_class(config, train_data._dataset)
    return config, model, train_data, valid_data, test_data


def train_a_little(model, train_data, steps=3):
    """A few optimisation steps so that codes and scales are not those of the init."""
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    model.train()
    for _, interaction in zip(range(steps), train_data):
        optimizer.zero_grad()
        model.calculate_loss(interaction).backward()
        optimizer.step()
    model.eval()


def record_stages(model):
    """Wrap on_train_epoch_start to log (epoch, stage) as the trainer calls it."""
    seen = []
    hook = model.on_train_epoch_start

    def recording(epoch_idx, train_data):
        hook(epoch_idx, train_data)
        seen.append((epoch_idx, model.stage))

    model.on_train_epoch_start = recording
    return seen


# -- configuration ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "override, message",
    [
        ({"variant": "foo"}, "variant='foo' is not valid: choose one of base, anl"),
        ({"n_layers": -1}, "n_layers=-1 is not valid"),
        ({"anneal": "foo"}, "anneal='foo' is not valid"),
        ({"estimator": "identity"}, "estimator='identity' is not valid"),
        ({"layer_weights": "mean"}, "layer_weights='mean' is not valid"),
        ({"gamma": 0}, "gamma=0 is not valid"),
        ({"embedding_size": 0}, "embedding_size=0 is not valid"),
        ({"warmup_epochs": -2}, "warmup_epochs=-2 is not valid"),
        ({"anneal": "tanh_temperature", "tau_start": 5.0, "tau_end": 1.0}, "tau_end"),
    ],
)
def test_bad_config_values_are_clear_errors(toy_path, override, message):
    with pytest.raises(ConfigValueError, match=message):
        build(toy_path, **override)


def test_variants_set_estimator_and_anneal_defaults(toy_path):
    _, base, *_ = build(toy_path)
    assert (base.variant, base.estimator, base.anneal) == ("base", "ste", "none")
    assert base.binary_from_epoch == 0
    assert base.stage == "binary"
    _, anl, *_ = build(toy_path, variant="anl", warmup_epochs=3)
    assert (anl.estimator, anl.anneal) == ("gaussian", "two_stage")
    assert (anl.binary_from_epoch, anl.stage) == (3, "float")
    _, ablation, *_ = build(toy_path, variant="anl", estimator="ste", anneal="none")
    assert (ablation.estimator, ablation.anneal, ablation.stage) == ("ste", "none", "binary")
    linear = base.layer_weight.tolist()
    assert linear == pytest.approx([1 / 3, 2 / 3, 1.0])
    _, uniform, *_ = build(toy_path, layer_weights="uniform", n_layers=3)
    assert uniform.layer_weight.tolist() == pytest.approx([0.25] * 4)


# -- scoring ---------------------------------------------------------------------------------
@pytest.mark.parametrize("n_layers, layer_weights", [(2, "linear"), (0, "linear"), (3, "uniform")])
def test_packed_scores_equal_float_scores_of_scaled_codes(toy_path, n_layers, layer_weights):
    _, model, train_data, *_ = build(toy_path, n_layers=n_layers, layer_weights=layer_weights)
    train_a_little(model, train_data)
    users = torch.arange(model.n_users)
    scores = model.full_sort_predict(Interaction({"user_id": users}))
    assert scores.shape == (model.n_users, model.n_items) and scores.dtype == torch.float32
    # independent float computation: sum_l w_l^2 alpha_u alpha_i (d - 2 popcount(q_u xor q_i))
    with torch.no_grad():
        user_all, item_all = model.forward()
    d = model.latent_dim
    expected = torch.zeros(model.n_users, model.n_items, dtype=torch.float64)
    for layer, w in enumerate(model.layer_weight.tolist()):
        eu, ei = user_all[:, layer].double(), item_all[:, layer].double()
        qu, qi = eu >= 0, ei >= 0
        au, ai = eu.abs().mean(dim=1), ei.abs().mean(dim=1)
        hamming = (qu[:, None, :] != qi[None, :, :]).sum(dim=-1).double()
        expected += w * w * au[:, None] * ai[None, :] * (d - 2 * hamming)
    torch.testing.assert_close(scores.double(), expected, rtol=1e-5, atol=1e-6)
    # the packed path is exact on the stored (float32) scales: only the float32 output rounds
    torch.testing.assert_close(scores.double(), model.binary_scores(users), rtol=1e-6, atol=1e-9)


def test_predict_matches_full_sort_and_scores_are_fresh(toy_path):
    _, model, train_data, *_ = build(toy_path)
    train_a_little(model, train_data)
    users = torch.tensor([1, 5, 5, 9, 60])
    items = torch.tensor([3, 7, 50, 1, 0])
    pairs = model.predict(Interaction({"user_id": users, "item_id": items}))
    full = model.full_sort_predict(Interaction({"user_id": users}))
    assert torch.equal(pairs, full[torch.arange(5), items])
    full[:, 0] = -float("inf")  # the trainer writes in place
    assert torch.isfinite(model.full_sort_predict(Interaction({"user_id": users}))).all()


def test_estimators_gradients(toy_path):
    x = torch.tensor([[0.3, -0.1, 0.05, -0.6]], requires_grad=True)
    _, base, *_ = build(toy_path)
    base.quantize(x).sum().backward()
    alpha = x.detach().abs().mean()
    # STE: d(alpha sign x)/dx = alpha
    torch.testing.assert_close(x.grad, alpha.expand_as(x).clone())
    x.grad = None
    _, anl, *_ = build(toy_path, variant="anl", gamma=2.0)
    anl.quantize(x, stage="binary").sum().backward()
    torch.testing.assert_close(x.grad, alpha * gaussian_dirac(x.detach(), 2.0))
    assert torch.equal(anl.quantize(x, stage="float"), x)


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize(
    "options",
    [dict(variant="base"), dict(variant="anl", warmup_epochs=0), dict(variant="anl")],
    ids=["base", "anl-binary", "anl-warmup"],
)
def test_training_loss_equals_the_loss_on_the_full_tables(toy_path, fast, options):
    """calculate_loss reads every layer at the batch's rows only (lightgcn_layer_rows); the
    definition indexes forward()'s full layer tables."""
    from recbole_quant.model.losses import bpr, layer0_l2

    _, model, train_data, _, _ = build(toy_path, fast_propagation=fast, **options)
    model.on_train_epoch_start(0, train_data)
    train_a_little(model, train_data)  # layer-0 rows away from their init
    model.train()
    model.zero_grad()  # train_a_little leaves its last step's gradients
    batch = next(iter(train_data))
    loss = model.calculate_loss(batch)
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    user, pos, neg = batch[model.USER_ID], batch[model.ITEM_ID], batch[model.NEG_ITEM_ID]
    user_all, item_all = model.forward()
    u, p, n = (model.quantize(t) for t in (user_all[user], item_all[pos], item_all[neg]))
    expected = bpr(model._score(u, p), model._score(u, n)) + model.reg_weight * layer0_l2(
        model.user_embedding, model.item_embedding, user, pos, neg
    )
    expected.backward()
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-7)
    assert grads.keys() == {name for name, p in model.named_parameters() if p.grad is not None}
    for name, param in model.named_parameters():
        if name in grads:
            torch.testing.assert_close(grads[name], param.grad, rtol=1e-4, atol=1e-9, msg=name)


# -- stages and the trainer ------------------------------------------------------------------
def test_two_stage_switches_at_the_configured_epoch(toy_path):
    config, model, train_data, valid_data, _ = build(
        toy_path, variant="anl", warmup_epochs=2, epochs=4, eval_step=1
    )
    seen = record_stages(model)
    trainer = get_trainer(config, config.model_class)(config, model)
    trainer.fit(train_data, valid_data, saved=True)
    assert seen == [(0, "float"), (1, "float"), (2, "binary"), (3, "binary")]
    # the best checkpoint is never a warm-up one
    assert load_checkpoint(trainer.saved_model_file)["epoch"] >= 2


def test_two_stage_switch_after_resume(toy_path):
    config, model, train_data, _, _ = build(
        toy_path, variant="anl", warmup_epochs=2, epochs=1, eval_step=0
    )
    trainer = get_trainer(config, config.model_class)(config, model)
    trainer.fit(train_data, None, saved=True)  # eval_step=0: saves every epoch
    checkpoint = trainer.saved_model_file
    config, model, train_data, _, _ = build(
        toy_path, variant="anl", warmup_epochs=2, epochs=4, eval_step=0
    )
    seen = record_stages(model)
    trainer = get_trainer(config, config.model_class)(config, model)
    trainer.resume_checkpoint(checkpoint)
    assert trainer.start_epoch == 1
    trainer.fit(train_data, None, saved=True)
    assert seen == [(1, "float"), (2, "binary"), (3, "binary")]
    # resuming after the switch goes on binarised
    config, model, train_data, _, _ = build(
        toy_path, variant="anl", warmup_epochs=2, epochs=5, eval_step=0
    )
    seen = record_stages(model)
    trainer = get_trainer(config, config.model_class)(config, model)
    trainer.resume_checkpoint(checkpoint)  # the 4-epoch run overwrote it: epoch 3
    assert trainer.start_epoch == 4
    trainer.fit(train_data, None, saved=False)
    assert seen == [(4, "binary")]


def test_early_stopping_waits_for_the_binarised_stage(toy_path):
    # stopping_step=0 stops at the first evaluation that does not improve: never during warm-up
    config, model, train_data, valid_data, _ = build(
        toy_path, variant="anl", warmup_epochs=3, epochs=6, eval_step=1, stopping_step=0
    )
    trainer = get_trainer(config, config.model_class)(config, model)
    trainer.fit(train_data, valid_data, saved=True)
    assert max(trainer.train_loss_dict) >= 3
    assert load_checkpoint(trainer.saved_model_file)["epoch"] >= 3


def test_tanh_temperature_anneals(toy_path):
    config, model, train_data, valid_data, _ = build(
        toy_path, variant="anl", anneal="tanh_temperature", tau_start=1.0, tau_end=16.0,
        tau_epochs=4, tau_kind="exp", epochs=6, eval_step=3,
    )
    assert model.binary_from_epoch == 4 and model.stage == "tanh"
    taus = []
    hook = model.on_train_epoch_start
    model.on_train_epoch_start = lambda e, d: (hook(e, d), taus.append(float(model.relax.tau)))
    trainer = get_trainer(config, config.model_class)(config, model)
    trainer.fit(train_data, valid_data, saved=False)
    assert taus == pytest.approx([1.0, 2.0, 4.0, 8.0, 16.0, 16.0])
    # the training representation tends to alpha * sign as tau rises
    # values kept off 0 (|x| >= 0.1): near 0, tanh(tau x) stays far from sign(x) for any tau
    x = torch.randn(8, 3, 16, generator=torch.Generator().manual_seed(0))
    x = torch.where(x >= 0, x + 0.1, x - 0.1)
    hard = model.quantize(x, stage="binary")
    model.train()  # TanhSign relaxes only in training mode
    gaps = []
    for tau in (1.0, 4.0, 64.0, 1024.0):
        model.relax.set_tau(tau)
        gaps.append((model.quantize(x, stage="tanh") - hard).abs().max().item())
    assert gaps == sorted(gaps, reverse=True) and gaps[-1] < 0.05 * gaps[0]


# -- warm start from a checkpoint ------------------------------------------------------------
@pytest.fixture(scope="module")
def baseline_checkpoints(toy_path, tmp_path_factory):
    cwd = os.getcwd()
    try:
        out = {}
        for model, size in (("LightGCN", 16), ("BPR", 16), ("LightGCN", 32)):
            # own directory each: checkpoint names have one-second resolution
            os.chdir(tmp_path_factory.mktemp("l2q_ckpt"))
            result = run_recbole_quant(
                model=model,
                dataset="toy",
                config_dict=toy_config(toy_path, epochs=1, embedding_size=size),
            )
            out[(model, size)] = os.path.abspath(result["checkpoint"])
    finally:
        os.chdir(cwd)
    return out


def test_pretrained_lightgcn_checkpoint_starts_the_binarised_stage(toy_path, baseline_checkpoints):
    path = baseline_checkpoints[("LightGCN", 16)]
    _, model, *_ = build(toy_path, variant="anl", pretrained_checkpoint=path)
    weights = load_checkpoint(path)["state_dict"]
    assert torch.equal(model.user_embedding.weight.detach(), weights["user_embedding.weight"])
    assert torch.equal(model.item_embedding.weight.detach(), weights["item_embedding.weight"])
    assert model.binary_from_epoch == 0 and model.stage == "binary"


def test_pretrained_checkpoint_of_another_model_is_refused(
    toy_path, baseline_checkpoints, tmp_path
):
    message = "holds a BPR model: a warm start needs layer-0 user/item tables"
    with pytest.raises(CheckpointError, match=message):
        build(toy_path, variant="anl", pretrained_checkpoint=baseline_checkpoints[("BPR", 16)])
    message = r"user_embedding.weight has shape \(61, 32\).*needs \(61, 16\).*embedding_size=32"
    with pytest.raises(CheckpointError, match=message):
        build(toy_path, variant="anl", pretrained_checkpoint=baseline_checkpoints[("LightGCN", 32)])
    with pytest.raises(CheckpointError, match="not found"):
        build(toy_path, variant="anl", pretrained_checkpoint=str(tmp_path / "missing.pth"))


# -- end to end ------------------------------------------------------------------------------
def test_anl_runs_end_to_end_and_reports_storage(toy_path):
    result = run_recbole_quant(
        model="L2QGCN",
        dataset="toy",
        config_dict=toy_config(
            toy_path, variant="anl", warmup_epochs=1, epochs=2, embedding_size=64
        ),
    )
    assert 0 < result["test_result"]["recall@20"] <= 1 and result["epochs"] == 2
    storage = result["storage"]
    # d = 64, L = 2: 3 x 64 code bits + 3 float32 scales per node; float32 LightGCN: 64 x 32
    assert (storage.kind, storage.dim, storage.groups) == ("sign", 64, 3)
    assert storage.user_code_bits == storage.item_code_bits == 3 * 64 + 3 * 32
    assert storage.ratio_vs_float32 == pytest.approx(64 * 32 / 288)


def test_runs_on_ml100k():
    # the one end-to-end run on real data: ml-100k's split, RecBole's loaders, packed evaluation
    result = run_recbole_quant(
        model="L2QGCN", dataset="ml-100k", config_dict=dict(FAST_RUN, epochs=1, warmup_epochs=0)
    )
    assert 0 < result["test_result"]["recall@20"] <= 1 and result["epochs"] == 1
    assert result["storage"].item_code_bits == 3 * 64 + 3 * 32  # defaults: d = 64, L = 2
