"""HashGNN: packed scores, guided STE, schedule, neighbour sampling, inference modes.

Most tests use a tiny fixed-split dataset written into the test's temporary directory
(``--dataset=toy --data_path=...``); one runs on ml-100k for a single epoch.
"""

import math
import os

import numpy as np
import pytest
import torch
from recbole.utils import init_seed

from conftest import FAST_RUN
from helpers import write_inter
from recbole_quant import Config
from recbole_quant.errors import ConfigValueError
from recbole_quant.model.general_recommender.hashgnn import HashGNN
from recbole_quant.model.layers import BipartiteSage, NeighborSampler
from recbole_quant.quantization import BetaSchedule, hard_sign
from recbole_quant.quick_start import load_data, run_recbole_quant

N_USERS, N_ITEMS = 40, 30


def make_toy(root, n_users=N_USERS, n_items=N_ITEMS, per_user=9, seed=0):
    """Fixed train/valid/test split; the last item is never interacted with."""
    rng = np.random.default_rng(seed)
    parts = {"train": [], "valid": [], "test": []}
    for u in range(1, n_users + 1):
        items = rng.choice(np.arange(1, n_items), size=per_user, replace=False)
        parts["train"] += [(u, i) for i in items[:-2]]
        parts["valid"].append((u, items[-2]))
        parts["test"].append((u, items[-1]))
    for part, rows in parts.items():
        write_inter(os.path.join(str(root), "toy", f"toy.{part}.inter"), rows)
    return str(root)


def toy_config(root, **overrides):
    cfg = dict(FAST_RUN, data_path=make_toy(root), train_batch_size=200, topk=[5, 10, 20])
    cfg.update(overrides)
    return Config(model="HashGNN", dataset="toy", config_dict=cfg, cmd_args=[])


def build(root, **overrides):
    config = toy_config(root, **overrides)
    init_seed(config["seed"], True)
    _, train_data, _, _ = load_data(config)
    return config, HashGNN(config, train_data._dataset), train_data


def first_batch(train_data):
    return next(iter(train_data))


# -- packed inference ------------------------------------------------------------------------
def test_full_sort_equals_float_sign_dot_products(tmp_path):
    _, model, train_data = build(tmp_path, encoder="sage")
    model.on_train_epoch_start(30)
    loss = model.calculate_loss(first_batch(train_data))
    loss.backward()  # the codes are trained through the STE
    assert model.user_hash.weight.grad is not None
    model.eval()
    z_user, z_item = model.code_tables()
    expected = hard_sign(z_user) @ hard_sign(z_item).T
    users = torch.arange(model.n_users)
    scores = model.full_sort_predict({model.USER_ID: users})
    assert scores.dtype == torch.float32 and scores.shape == (model.n_users, model.n_items)
    assert torch.equal(scores, expected)
    assert torch.equal(scores, scores.round()) and scores.abs().max() <= model.code_length
    # a fresh tensor every call: the trainer writes -inf into it in place
    scores[:, 0] = -math.inf
    assert torch.isfinite(model.full_sort_predict({model.USER_ID: users})).all()


@pytest.mark.parametrize("mode,quantize", [("hard", True), ("soft", True), ("hard", False)])
def test_predict_matches_full_sort(tmp_path, mode, quantize):
    _, model, _ = build(tmp_path, mode=mode, quantize=quantize, soft_candidates=5)
    model.eval()
    users = torch.tensor([3, 1, 3, 7, 1])
    items = torch.tensor([2, 5, 9, 0, 1])
    full = model.full_sort_predict({model.USER_ID: users})
    pair = model.predict({model.USER_ID: users, model.ITEM_ID: items})
    assert pair.shape == (5,)
    assert torch.equal(pair, full[torch.arange(5), items])


@pytest.mark.parametrize("mode,quantize", [("hard", True), ("soft", True), ("hard", False)])
def test_predictor_topk_equals_ranking_full_sort_scores(tmp_path, mode, quantize):
    # the trainer's packed top-k path and RecBole's standard path rank the same way: both
    # equal the reference top-k (the tie rule's specification) of the full-sort scores
    from recbole_quant.packed import reference_topk

    _, model, _ = build(tmp_path, mode=mode, quantize=quantize, soft_candidates=7)
    model.eval()
    users = torch.arange(model.n_users)
    history = model.predictor.score(users) > 1e9  # nothing
    history[:, 0] = True
    history[users % 3 == 0, 1:6] = True
    indptr = np.concatenate([[0], np.cumsum(history.sum(1).numpy())])
    indices = history.nonzero()[:, 1].numpy()
    _, ids = model.predictor.topk(users, 10, exclude=(indptr, indices))
    scores = model.full_sort_predict({model.USER_ID: users})
    _, expected = reference_topk(scores.numpy(), 10, indptr, indices)
    assert np.array_equal(np.asarray(ids), expected)


def test_soft_mode_reranks_hamming_candidates_by_continuous_scores(tmp_path):
    _, model, _ = build(tmp_path, mode="soft", soft_candidates=6)
    model.eval()
    users = torch.arange(1, model.n_users)
    soft = model.full_sort_predict({model.USER_ID: users})
    packed = model.predictor.packed  # the hard-code predictor the candidates come from
    hard = packed.score(users)
    _, candidates = packed.topk(users, 6)
    candidates = torch.as_tensor(candidates)
    z_user, z_item = model.code_tables()
    cont = z_user[users] @ z_item.T
    for row in range(len(users)):
        cand = candidates[row]
        others = torch.ones(model.n_items, dtype=torch.bool)
        others[cand] = False
        assert soft[row, cand].min() > soft[row, others].max()  # candidates always rank first
        assert torch.equal(soft[row, others], hard[row, others])  # others keep Hamming scores
        order = torch.argsort(soft[row, cand], descending=True)
        assert torch.equal(order, torch.argsort(cont[row, cand], descending=True))


def test_storage_reports_what_each_mode_keeps(tmp_path):
    _, hard, _ = build(tmp_path)
    hard.eval()
    assert hard.storage().item_code_bits == 32 and hard.storage().user_code_bits == 32
    _, soft, _ = build(tmp_path, mode="soft")
    soft.eval()
    assert soft.storage().item_code_bits == 32 + 32 * 32  # codes + continuous z
    _, cont, _ = build(tmp_path, quantize=False)
    cont.eval()
    assert cont.storage() is None


def test_continuous_counterpart_ranks_by_float_dot_products(tmp_path):
    _, model, _ = build(tmp_path, quantize=False)
    model.on_train_epoch_start(50)
    assert float(model.beta) == 0.0  # beta ignored without codes
    model.eval()
    z_user, z_item = model.code_tables()
    users = torch.arange(model.n_users)
    scores = model.full_sort_predict({model.USER_ID: users})
    assert torch.allclose(scores, z_user @ z_item.T)
    assert not torch.equal(scores, scores.round())


@pytest.mark.parametrize("encoder,aggregation", [("sage", "full"), ("sage", "sampled"), ("lightgcn", "full")])
def test_codes_at_inference_are_deterministic(tmp_path, encoder, aggregation):
    _, model, _ = build(tmp_path, encoder=encoder, eval_aggregation=aggregation)
    model.eval()
    first = [t.clone() for t in model.code_tables()]
    model.train()  # drops the cached tables and predictor
    torch.manual_seed(123)  # another global RNG state
    torch.rand(1000)
    model.eval()
    second = model.code_tables()
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    # and the training-time encoder is stochastic for sage (sampled neighbours)
    if encoder == "sage":
        users = torch.arange(1, model.n_users)
        items = torch.arange(1, model.n_items)
        a = model(users, items)[0]
        b = model(users, items)[0]
        assert not torch.equal(a, b)


def test_full_aggregation_is_the_mean_over_all_neighbours():
    # 3 users, 4 items; user 0 has no neighbours
    sampler_u = NeighborSampler(torch.tensor([0, 0, 2, 5]), torch.tensor([1, 2, 0, 1, 3]), 4)
    indptr_i = torch.tensor([0, 1, 3, 4, 5])
    sampler_i = NeighborSampler(indptr_i, torch.tensor([2, 1, 2, 1, 2]), 3)
    tower = BipartiteSage(0, [1000], 3)
    x = [torch.randn(3, 3), torch.randn(4, 3)]
    full = tower.full(x, [sampler_u.mean_matrix(), sampler_i.mean_matrix()])
    w = tower.layers[0].linear.weight
    means = torch.stack([torch.zeros(3), x[1][[1, 2]].mean(0), x[1][[0, 1, 3]].mean(0)])
    expected = torch.nn.functional.leaky_relu(torch.cat([x[0], means], 1) @ w.T, 0.2)
    assert torch.allclose(full, expected, atol=1e-6)
    # a large sample approaches the full mean
    padded = [torch.cat([x[0], torch.zeros(1, 3)]), torch.cat([x[1], torch.zeros(1, 3)])]
    tree = tower.sample_tree(torch.arange(3), [sampler_u, sampler_i])
    sampled = tower(tree, [padded[t][ids] for t, ids in zip(tree.types, tree.nodes)])
    assert torch.allclose(sampled, expected, atol=0.2)


# -- neighbour sampling ----------------------------------------------------------------------
@pytest.mark.parametrize("fast", [True, False])
def test_lightgcn_encoder_propagates_the_batch_rows_like_the_full_tables(tmp_path, fast):
    _, model, _ = build(tmp_path, encoder="lightgcn", fast_propagation=fast)
    user, item = torch.tensor([3, 0, 3, N_USERS]), torch.tensor([N_ITEMS - 1, 2, 2, 0, 5])
    z_user, z_item = model(user, item)
    (z_user.sum() + (z_item * torch.arange(5.0)[:, None]).sum()).backward()
    grads = [p.grad.clone() for p in (model.user_embedding.weight, model.item_embedding.weight)]
    model.zero_grad()
    all_users, all_items = model._lightgcn_all()
    ref_user = torch.tanh(model.user_hash(all_users[user]))
    ref_item = torch.tanh(model.item_hash(all_items[item]))
    (ref_user.sum() + (ref_item * torch.arange(5.0)[:, None]).sum()).backward()
    torch.testing.assert_close(z_user, ref_user, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(z_item, ref_item, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grads[0], model.user_embedding.weight.grad, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(grads[1], model.item_embedding.weight.grad, rtol=1e-5, atol=1e-7)


def test_sampler_is_vectorised_uniform_and_handles_degree_zero(monkeypatch):
    indptr = torch.tensor([0, 0, 3, 4])  # node 0: degree 0, node 1: 3 neighbours, node 2: 1
    indices = torch.tensor([5, 7, 9, 2])
    sampler = NeighborSampler(indptr, indices, n_neighbors=10)
    calls = []
    real_rand = torch.rand
    monkeypatch.setattr(torch, "rand", lambda *a, **k: calls.append(a) or real_rand(*a, **k))
    nodes = torch.tensor([1, 0, 2, 1, 3] * 4000)  # 3 is the sentinel node itself
    out = sampler.sample(nodes, 6)
    assert len(calls) == 1  # one draw for all nodes: no loop per node
    assert out.shape == (20000, 6) and out.dtype == torch.long
    assert set(out[nodes == 1].unique().tolist()) == {5, 7, 9}
    assert (out[nodes == 0] == 10).all() and (out[nodes == 3] == 10).all()  # sentinel
    assert (out[nodes == 2] == 2).all()
    counts = torch.bincount(out[nodes == 1].flatten(), minlength=10)[[5, 7, 9]].double()
    assert (counts / counts.sum() - 1 / 3).abs().max() < 0.02


def test_sampled_tree_shapes():
    sampler_u = NeighborSampler(torch.tensor([0, 0, 2, 5]), torch.tensor([1, 2, 0, 1, 3]), 4)
    sampler_i = NeighborSampler(torch.tensor([0, 1, 3, 4, 5]), torch.tensor([2, 1, 2, 1, 2]), 3)
    tower = BipartiteSage(0, [10, 5], 8)
    tree = tower.sample_tree(torch.tensor([0, 1, 2, 2]), [sampler_u, sampler_i])
    assert tree.types == [0, 1, 0]
    assert tree.neighbors[0].shape == (4, 10)
    assert tree.neighbors[1].shape == (len(tree.nodes[1]), 5)
    assert 4 in tree.nodes[1].tolist()  # user 0 has no items: the item sentinel
    assert set(tree.nodes[1].tolist()) <= {0, 1, 2, 3, 4}
    assert torch.equal(tree.nodes[1], tree.nodes[1].unique())  # one sample per distinct node
    features = [torch.randn(len(ids), 8) for ids in tree.nodes]
    assert tower(tree, features).shape == (4, 8)


# -- guided STE and schedule -----------------------------------------------------------------
def _record_mixes(model, batch, monkeypatch, beta_epoch):
    import recbole_quant.model.general_recommender.hashgnn as module

    calls = []
    real = module.guided_mix

    def recording(code, cont, mask):
        out = real(code, cont, mask)
        calls.append(out.detach())
        return out

    monkeypatch.setattr(module, "guided_mix", recording)
    model.on_train_epoch_start(beta_epoch)
    model.calculate_loss(batch)
    return [(c.abs() == 1).all(dim=1) for c in calls]  # rows that use the code


def test_guided_mix_user_and_positive_share_each_negative_draws_its_own(tmp_path, monkeypatch):
    config, model, train_data = build(tmp_path, beta_step=0.5, beta_period=1)
    batch = first_batch(train_data)
    s = config["train_neg_sample_args"]["sample_num"]
    b = len(batch) // s
    user_code, pos_code, neg_code = _record_mixes(model, batch, monkeypatch, beta_epoch=1)
    assert float(model.beta) == 0.5
    assert user_code.shape == (b,) and neg_code.shape == (s * b,)
    assert torch.equal(user_code, pos_code)  # one draw per (user, positive)
    assert 0 < user_code.float().mean() < 1 and 0 < neg_code.float().mean() < 1
    # a negative's choice is independent of its user's
    per_neg = neg_code.view(s, b)
    assert (per_neg != user_code.unsqueeze(0)).any() and (per_neg == user_code.unsqueeze(0)).any()
    # beta = 0: all continuous; beta = 1: all codes
    assert not any(m.any() for m in _record_mixes(model, batch, monkeypatch, beta_epoch=0)[:3])
    assert all(m.all() for m in _record_mixes(model, batch, monkeypatch, beta_epoch=2)[-3:])


def test_batch_layout_is_recboles_tiled_pairwise_layout(tmp_path):
    config, model, train_data = build(tmp_path)
    batch = first_batch(train_data)
    s = config["train_neg_sample_args"]["sample_num"]
    assert s == 10 and len(batch) % s == 0
    user, pos, neg = model._split_batch(batch)
    assert neg.shape == (s, len(user))
    assert torch.equal(batch[model.USER_ID], user.repeat(s))
    assert torch.equal(batch[model.ITEM_ID], pos.repeat(s))
    history = {(int(u), int(i)) for u, i in zip(user, pos)}
    assert all((int(u), int(j)) not in history for u, j in zip(user.repeat(s), neg.reshape(-1)))
    shuffled = batch[torch.randperm(len(batch))]
    with pytest.raises(RuntimeError, match="layout"):
        model._split_batch(shuffled)


def test_beta_schedule_reaches_one_within_default_budget(tmp_path):
    config = Config(model="HashGNN", dataset="ml-100k", cmd_args=[])
    schedule = BetaSchedule(config["beta_step"], config["beta_period"])
    full = schedule.epochs_to_full()
    assert full < config["epochs"]
    # early stopping cannot stop before beta = 1: the earliest stop is after
    # (stopping_step + 1) evaluations
    assert (config["stopping_step"] + 1) * config["eval_step"] > full
    assert schedule(full - 1) < 1.0 == schedule(full)
    _, model, _ = build(tmp_path)
    for epoch, expected in [(0, 0.0), (full - 1, schedule(full - 1)), (full, 1.0), (full + 50, 1.0)]:
        model.on_train_epoch_start(epoch)  # also what a resumed run calls first
        assert float(model.beta) == expected
    assert "beta" in model.state_dict()


# -- configuration ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "override,message",
    [
        ({"encoder": "foo"}, "encoder='foo'"),
        ({"code_length": 0}, "code_length=0"),
        ({"bits": 0}, "bits=0"),  # the deprecated name is checked the same way
        ({"mode": "fuzzy"}, "mode='fuzzy'"),
        ({"soft_candidates": 0}, "soft_candidates=0"),
        ({"user_neighbors": [10, 0]}, "user_neighbors"),
        ({"beta_period": 0}, "beta_period"),
        ({"logit_scale": 0.0}, "logit_scale"),
    ],
)
def test_impossible_settings_are_clear_errors(tmp_path, override, message):
    with pytest.raises(ConfigValueError, match=message):
        build(tmp_path, **override)


def test_bits_is_a_deprecated_name_of_code_length(tmp_path, caplog):
    _, model, _ = build(tmp_path, code_length=16)
    assert model.code_length == 16 and model.user_hash.out_features == 16
    assert "deprecated" not in caplog.text
    _, old, _ = build(tmp_path, bits=8)
    assert old.code_length == 8 and old.user_hash.out_features == 8
    assert "bits=8 is deprecated, use code_length" in caplog.text
    old.eval()
    assert old.storage().item_code_bits == 8  # one bit per coordinate, 8 coordinates


# -- end to end ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides",
    [
        {"mode": "soft", "soft_candidates": 8},
        {"quantize": False},
        {"encoder": "lightgcn"},
    ],
)
def test_variants_run_end_to_end_on_toy(tmp_path, overrides):
    cfg = dict(FAST_RUN, data_path=make_toy(tmp_path), train_batch_size=200, topk=[5, 10, 20])
    cfg.update(overrides)
    result = run_recbole_quant(model="HashGNN", dataset="toy", config_dict=cfg)
    assert 0.0 <= result["test_result"]["recall@20"] <= 1.0
    assert result["epochs"] == 2


def test_runs_on_ml100k():
    result = run_recbole_quant(
        model="HashGNN", dataset="ml-100k", config_dict=dict(FAST_RUN, epochs=1)
    )
    assert 0.0 < result["test_result"]["recall@20"] <= 1.0
    assert result["epochs"] == 1 and result["seconds_per_epoch"] > 0
