"""HQ-GNN: quantized LightGCN with the Hessian-aware estimator, through RecBole's loop.

Everything runs on a small fixed-split toy dataset written into the test's directory, except
one end-to-end run on ml-100k.
"""

import os

import pytest
import torch

from conftest import FAST_RUN
from helpers import make_toy_benchmark
from recbole_quant import Config
from recbole_quant.errors import ConfigValueError
from recbole_quant.quick_start import load_data, run_recbole_quant
from recbole_quant.trainer import get_trainer
from recbole.data.interaction import Interaction


N_USERS, N_ITEMS = 80, 60  # real ids; RecBole adds padding id 0 to both


def toy_options(**config_dict):
    """FAST_RUN on the toy dataset (written under the current directory) plus ``config_dict``."""
    data_path = make_toy_benchmark(os.path.join(os.getcwd(), "data"), n_users=N_USERS,
                                   n_items=N_ITEMS, per_user=12)
    return dict(FAST_RUN, data_path=data_path, topk=[5, 10, 20], **config_dict)


def build(config_dict):
    config = Config(model="HQGNN", dataset="toy", config_dict=toy_options(**config_dict), cmd_args=[])
    _, train_data, valid_data, test_data = load_data(config)
    model = config.model_class(config, train_data._dataset)
    return config, model, train_data, valid_data, test_data


@pytest.fixture(scope="module")
def trained_2bit(tmp_path_factory):
    import os

    cwd = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("hq"))
    try:
        config, model, train_data, valid_data, _ = build({"bits": 2, "epochs": 2})
        trainer = get_trainer(config, config.model_class)(config, model)
        trainer.fit(train_data, valid_data, saved=False)
    finally:
        os.chdir(cwd)
    model.eval()
    return model


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_full_sort_equals_dequantized_float_scores(bits):
    _, model, train_data, _, _ = build({"bits": bits})
    model.train()
    model.calculate_loss(next(iter(train_data)))  # initialises the ranges from data
    model.eval()
    users = torch.arange(1, 40)
    scores = model.full_sort_predict(Interaction({"user_id": users}))
    u_hat, i_hat = model.dequantized_embeddings()
    expected = u_hat[users].double() @ i_hat.double().T
    assert scores.shape == (39, model.n_items) and scores.dtype == torch.float32
    torch.testing.assert_close(scores.double(), expected, rtol=1e-5, atol=1e-4)


def test_predict_matches_full_sort(trained_2bit):
    model = trained_2bit
    users = torch.tensor([1, 5, 5, 9])
    items = torch.tensor([3, 7, 30, N_ITEMS])
    pairs = model.predict(Interaction({"user_id": users, "item_id": items}))
    full = model.full_sort_predict(Interaction({"user_id": users}))
    assert torch.equal(pairs, full[torch.arange(4), items])


def test_full_sort_returns_fresh_tensor(trained_2bit):
    inter = Interaction({"user_id": torch.tensor([1, 2])})
    first = trained_2bit.full_sort_predict(inter)
    first[:, 0] = -float("inf")
    second = trained_2bit.full_sort_predict(inter)
    assert torch.isfinite(second).all()


def test_predictor_cache_is_dropped_when_training_resumes(trained_2bit):
    model = trained_2bit
    inter = Interaction({"user_id": torch.tensor([1, 2])})
    before = model.full_sort_predict(inter)
    model.train()
    with torch.no_grad():
        model.item_embedding.weight.mul_(-1.0)
    model.eval()
    after = model.full_sort_predict(inter)
    assert not torch.equal(before, after)
    with torch.no_grad():
        model.item_embedding.weight.mul_(-1.0)


def test_gste_delta_is_estimated_and_zero_for_ste():
    _, model, train_data, _, _ = build({"bits": 1, "hessian_batches": 2})
    model.on_train_epoch_start(0, train_data)
    delta_u, delta_i = float(model.user_quantizer.delta), float(model.item_quantizer.delta)
    assert delta_u >= 0 and delta_i >= 0 and delta_u + delta_i > 0
    # not a refresh epoch: unchanged
    model.user_quantizer.set_delta(0.123)
    model.on_train_epoch_start(3, train_data)
    assert float(model.user_quantizer.delta) == pytest.approx(0.123)
    _, ste, train_data, _, _ = build({"grad_estimator": "ste"})
    ste.on_train_epoch_start(0, train_data)
    assert float(ste.user_quantizer.delta) == 0.0


def test_fixed_delta_is_used():
    _, model, train_data, _, _ = build({"fixed_delta": 0.5})
    model.on_train_epoch_start(0, train_data)
    assert float(model.item_quantizer.delta) == 0.5


@pytest.mark.parametrize(
    "override, message",
    [({"bits": 9}, "bits=9"), ({"bits": 0}, "bits=0"), ({"grad_estimator": "foo"}, "gste, ste")],
)
def test_impossible_settings_are_clear_errors(override, message):
    from recbole_quant.model.general_recommender.hqgnn import HQGNN

    config = Config(model="HQGNN", dataset="toy", config_dict=toy_options(**override), cmd_args=[])
    with pytest.raises(ConfigValueError, match=message):
        HQGNN.read_options(config)  # checked from the config alone, before any data loads
    with pytest.raises(ConfigValueError, match=message):
        build(override)


def test_runs_end_to_end_and_reports_storage():
    result = run_recbole_quant(model="HQGNN", config_dict=dict(FAST_RUN, bits=1))
    assert 0 < result["test_result"]["recall@20"] <= 1
    storage = result["storage"]
    assert storage.item_code_bits == 64  # 1 bit x d = 64, ranges are per table not per item
    assert result["epochs"] == 2


def test_resume_keeps_delta_and_continues():
    first = run_recbole_quant(model="HQGNN", dataset="toy", config_dict=toy_options(epochs=2, eval_step=0))
    config, model, train_data, _, _ = build({"epochs": 3, "eval_step": 0})
    trainer = get_trainer(config, config.model_class)(config, model)
    trainer.resume_checkpoint(first["checkpoint"])
    delta = float(model.user_quantizer.delta)
    assert delta > 0 and bool(model.user_quantizer.range_initialized)
    trainer.fit(train_data, None, saved=False)
    assert sorted(trainer.train_loss_dict) == [2]
    assert float(model.user_quantizer.delta) == delta  # epoch 2 is not a refresh epoch


def test_centring_removes_the_per_dimension_mean():
    assert build({"bits": 1})[1].center is True and build({"bits": 2})[1].center is False
    _, model, _, _, _ = build({"center": True, "bits": 2})
    with torch.no_grad():
        users, items = model.forward()
    assert users.mean(0).abs().max() < 1e-6 and items.mean(0).abs().max() < 1e-6
    _, plain, _, _, _ = build({"center": False})
    with torch.no_grad():
        users, _ = plain.forward()
    assert users.mean(0).abs().max() > 1e-4


@pytest.mark.parametrize("bits", [1, 2])  # 1 bit centres, 2 bits do not
@pytest.mark.parametrize("fast", [True, False])
def test_batch_embeddings_equal_the_rows_of_the_full_tables(bits, fast):
    _, model, _, _, _ = build({"bits": bits, "fast_propagation": fast})
    with torch.no_grad():  # layer-0 rows away from xavier's small range
        model.user_embedding.weight.normal_(0.3, 1.0)
        model.item_embedding.weight.normal_(-0.2, 1.0)
    users = torch.tensor([0, 5, 5, N_USERS, 1])  # padding, repeats, the last user
    items = torch.tensor([3, N_ITEMS, 0, 3, 7, 7])
    rows_u, rows_i = model.batch_embeddings(users, items)
    (rows_u.square().sum() + (rows_i * torch.arange(6.0)[:, None]).sum()).backward()
    grads = [model.user_embedding.weight.grad.clone(), model.item_embedding.weight.grad.clone()]
    model.zero_grad()
    full_u, full_i = model.forward()
    (full_u[users].square().sum() + (full_i[items] * torch.arange(6.0)[:, None]).sum()).backward()
    torch.testing.assert_close(rows_u, full_u[users], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(rows_i, full_i[items], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grads[0], model.user_embedding.weight.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grads[1], model.item_embedding.weight.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bits, warmup", [(1, 0), (2, 0), (1, 1)])
def test_training_loss_equals_the_loss_on_the_full_tables(bits, warmup):
    """calculate_loss reads the batch's rows only; the definition indexes forward()'s tables."""
    import copy

    from recbole_quant.model.losses import layer0_l2

    _, model, train_data, _, _ = build({"bits": bits, "warmup_epochs": warmup})
    model.train()
    model.on_train_epoch_start(0, train_data)
    batch = next(iter(train_data))
    reference = copy.deepcopy(model)  # fresh quantizer ranges for each
    loss = model.calculate_loss(batch)
    loss.backward()
    user, pos, neg = reference._batch(batch)
    user_all, item_all = reference.forward()
    u, p, n = user_all[user], item_all[pos], item_all[neg]
    assert reference.quantizing == (warmup == 0)
    if reference.quantizing:
        u, p, n = reference.user_quantizer(u), reference.item_quantizer(p), reference.item_quantizer(n)
    expected = reference._bpr(u, p, n) + reference.reg_weight * layer0_l2(
        reference.user_embedding, reference.item_embedding, user, pos, neg
    )
    expected.backward()
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-7)
    for (name, param), (_, ref) in zip(model.named_parameters(), reference.named_parameters()):
        if ref.grad is None:
            assert param.grad is None or not param.grad.any(), name
        else:
            torch.testing.assert_close(param.grad, ref.grad, rtol=1e-4, atol=1e-7, msg=name)


def test_warmup_trains_full_precision_then_quantized_and_never_stops_early():
    config, model, train_data, valid_data, _ = build(
        {"warmup_epochs": 2, "epochs": 4, "stopping_step": 1, "hessian_batches": 1}
    )
    assert model.quantized_from_epoch == 2
    modes = []
    hook = model.on_train_epoch_start
    model.on_train_epoch_start = lambda e, d: (hook(e, d), modes.append(model.quantizing))
    trainer = get_trainer(config, config.model_class)(config, model)
    trainer.fit(train_data, valid_data, saved=False)
    # stopping_step=1 would stop a non-improving warm-up; the rule keeps it training
    assert modes == [False, False, True, True]
    assert float(model.user_quantizer.delta) > 0  # refreshed at the first quantized epoch


@pytest.mark.parametrize("bits, expected", [(1, 3.0), (2, 1.5), (4, 2.5), (8, 4.0)])
def test_initial_range_follows_the_width_unless_given(bits, expected):
    _, model, _, _, _ = build({"bits": bits})
    assert model.user_quantizer.init_std == expected == model.item_quantizer.init_std
    _, model, _, _, _ = build({"bits": bits, "init_std": 2.0})
    assert model.user_quantizer.init_std == 2.0
    with pytest.raises(ConfigValueError, match="init_std"):
        build({"bits": bits, "init_std": -1})
