"""The fast CSR propagation equals torch.sparse.mm: values and gradients, within float32 rounding.

Checked on random graphs (isolated nodes included), on ml-100k's normalised adjacency, in the
plugin's LightGCNPropagation, and switched into RecBole's own LightGCN / NGCF.
"""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recbole_quant import Config
from recbole_quant.errors import ConfigValueError
from recbole_quant.model.layers import LightGCNPropagation, normalized_adjacency
from recbole_quant.quick_start import load_data
from recbole_quant.sparse import (
    CSRAdjacency,
    fast_propagation_enabled,
    lightgcn_layer_mean,
    lightgcn_layer_rows,
    lightgcn_rows,
    sparse_matmul,
)
from recbole_quant.sparse.baselines import apply_fast_propagation

from conftest import FAST_RUN
from helpers import make_toy_benchmark

# float32 sums of a few hundred terms, added in possibly different orders
RTOL, ATOL = 1e-5, 1e-6


def random_normalized_adjacency(n_users, n_items, density, seed):
    """D^-1/2 A D^-1/2 of a random bipartite graph; the last users / items have no edges."""
    rng = np.random.default_rng(seed)
    inter = (rng.random((n_users, n_items)) < density).astype(np.float32)
    inter[-3:, :] = 0  # isolated users
    inter[:, -2:] = 0  # isolated items
    n = n_users + n_items
    adj = sp.bmat([[None, sp.csr_matrix(inter)], [sp.csr_matrix(inter.T), None]]).tocoo()
    degree = np.asarray(adj.sum(axis=1)).ravel()
    d_inv_sqrt = np.where(degree > 0, degree, 1.0) ** -0.5
    values = (d_inv_sqrt[adj.row] * adj.data * d_inv_sqrt[adj.col]).astype(np.float32)
    matrix = torch.sparse_coo_tensor(
        np.vstack([adj.row, adj.col]), values, (n, n), check_invariants=True
    ).coalesce()
    isolated = np.flatnonzero(degree == 0)
    return matrix, isolated


def forward_and_grad(product, x, weight):
    """``product(x)`` and d(sum(weight * product(x)))/dx."""
    x = x.detach().clone().requires_grad_(True)
    y = product(x)
    (grad,) = torch.autograd.grad((y * weight).sum(), x)
    return y.detach(), grad


@pytest.fixture
def threads():
    """Restore torch's thread count after a test that changes it."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("dim", [1, 7, 64, 65])
@pytest.mark.parametrize("seed", [0, 1])
def test_random_graph_matches_torch(n_threads, dim, seed, threads):
    torch.set_num_threads(n_threads)
    matrix, isolated = random_normalized_adjacency(120, 90, 0.05, seed)
    adj = CSRAdjacency.from_torch(matrix)
    assert adj.symmetric
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(matrix.shape[0], dim, generator=gen)
    weight = torch.randn(matrix.shape[0], dim, generator=gen)
    y, grad = forward_and_grad(lambda e: sparse_matmul(adj, e), x, weight)
    y_ref, grad_ref = forward_and_grad(lambda e: torch.sparse.mm(matrix, e), x, weight)
    assert torch.allclose(y, y_ref, rtol=RTOL, atol=ATOL)
    assert torch.allclose(grad, grad_ref, rtol=RTOL, atol=ATOL)
    assert len(isolated) >= 5  # the 3 users and 2 items above, maybe more by chance
    assert torch.all(y[isolated] == 0) and torch.all(grad[isolated] == 0)


def test_gradcheck_float64():
    matrix, _ = random_normalized_adjacency(12, 9, 0.3, 3)
    adj = CSRAdjacency.from_torch(matrix)
    x = torch.randn(matrix.shape[0], 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda e: sparse_matmul(adj, e), (x,))
    ref = torch.sparse.mm(matrix.double(), x)
    assert torch.allclose(sparse_matmul(adj, x), ref, rtol=1e-12, atol=1e-12)


def test_non_symmetric_matrix_uses_its_transpose():
    rng = np.random.default_rng(5)
    dense = (rng.random((40, 40)) < 0.1) * rng.standard_normal((40, 40))
    matrix = torch.from_numpy(dense.astype(np.float32)).to_sparse().coalesce()
    adj = CSRAdjacency.from_torch(matrix)
    assert not adj.symmetric
    x = torch.randn(40, 5)
    weight = torch.randn(40, 5)
    y, grad = forward_and_grad(lambda e: sparse_matmul(adj, e), x, weight)
    y_ref, grad_ref = forward_and_grad(lambda e: torch.sparse.mm(matrix, e), x, weight)
    assert torch.allclose(y, y_ref, rtol=RTOL, atol=ATOL)
    assert torch.allclose(grad, grad_ref, rtol=RTOL, atol=ATOL)


def torch_layer_mean(matrix, ego, n_layers):
    """The reference: RecBole's LightGCN loop of torch.sparse.mm, then stack and mean."""
    layers = [ego]
    for _ in range(n_layers):
        layers.append(torch.sparse.mm(matrix, layers[-1]))
    return torch.stack(layers, dim=1).mean(dim=1)


def torch_layers(matrix, x, n_layers):
    """[n, L + 1, d]: torch.sparse.mm layers, stacked."""
    layers = [x]
    for _ in range(n_layers):
        layers.append(torch.sparse.mm(matrix, layers[-1]))
    return torch.stack(layers, dim=1)


@pytest.mark.parametrize("n_layers", [0, 1, 2, 3])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_fused_layer_mean_matches_torch(n_layers, n_threads, threads):
    torch.set_num_threads(n_threads)
    matrix, isolated = random_normalized_adjacency(150, 70, 0.04, n_layers)
    adj = CSRAdjacency.from_torch(matrix)
    gen = torch.Generator().manual_seed(n_layers)
    x = torch.randn(matrix.shape[0], 64, generator=gen)
    # a BPR-like upstream gradient: non-zero on a few rows only
    weight = torch.zeros(matrix.shape[0], 64)
    rows = torch.randint(0, matrix.shape[0], (20,), generator=gen)
    weight[rows] = torch.randn(20, 64, generator=gen)
    y, grad = forward_and_grad(lambda e: lightgcn_layer_mean(adj, e, n_layers), x, weight)
    y_ref, grad_ref = forward_and_grad(lambda e: torch_layer_mean(matrix, e, n_layers), x, weight)
    assert torch.allclose(y, y_ref, rtol=RTOL, atol=ATOL)
    assert torch.allclose(grad, grad_ref, rtol=RTOL, atol=ATOL)
    # an isolated node keeps E0 / (L + 1)
    assert torch.allclose(y[isolated], x[isolated] / (n_layers + 1), rtol=RTOL, atol=ATOL)


def test_fused_layer_mean_gradcheck_float64_non_symmetric():
    rng = np.random.default_rng(7)
    dense = (rng.random((15, 15)) < 0.2) * rng.standard_normal((15, 15))
    # values representable in float32: CSRAdjacency stores float32 (the model's precision)
    matrix = torch.from_numpy(dense.astype(np.float32).astype(np.float64)).to_sparse().coalesce()
    adj = CSRAdjacency.from_torch(matrix)
    assert not adj.symmetric
    x = torch.randn(15, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda e: lightgcn_layer_mean(adj, e, 3), (x,))
    ref = torch_layer_mean(matrix, x, 3)
    assert torch.allclose(lightgcn_layer_mean(adj, x, 3), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n_layers", [0, 1, 2, 3])
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("every_layer", [False, True], ids=["mean", "layers"])
def test_batch_rows_match_indexing_the_full_tables(n_layers, n_threads, every_layer, threads):
    """lightgcn_rows == torch's full propagation, stack, mean, then [rows]; lightgcn_layer_rows
    == the stacked layers, then [rows] (values and grads)."""
    torch.set_num_threads(n_threads)
    matrix, isolated = random_normalized_adjacency(150, 70, 0.04, 10 + n_layers)
    adj = CSRAdjacency.from_torch(matrix)
    gen = torch.Generator().manual_seed(n_layers)
    n = matrix.shape[0]
    # a batch: repeated nodes, and an isolated node among them
    nodes = torch.cat([torch.randint(0, n, (30,), generator=gen), torch.from_numpy(isolated[:1])])
    rows, position = torch.unique(nodes, return_inverse=True)
    x = torch.randn(n, 64, generator=gen)
    if every_layer:  # every layer its own upstream gradient
        weight = torch.randn(len(nodes), n_layers + 1, 64, generator=gen)
        fast_rows, reference = lightgcn_layer_rows, torch_layers
    else:
        weight = torch.randn(len(nodes), 64, generator=gen)
        fast_rows, reference = lightgcn_rows, torch_layer_mean

    y, grad = forward_and_grad(lambda e: fast_rows(adj, e, n_layers, rows)[position], x, weight)
    y_ref, grad_ref = forward_and_grad(lambda e: reference(matrix, e, n_layers)[nodes], x, weight)
    assert y.shape == weight.shape
    assert torch.allclose(y, y_ref, rtol=RTOL, atol=ATOL)
    assert torch.allclose(grad, grad_ref, rtol=RTOL, atol=ATOL)
    assert grad.abs().sum() > 0


def test_batch_rows_gradcheck_float64_non_symmetric():
    rng = np.random.default_rng(8)
    dense = (rng.random((15, 15)) < 0.2) * rng.standard_normal((15, 15))
    matrix = torch.from_numpy(dense.astype(np.float32).astype(np.float64)).to_sparse().coalesce()
    adj = CSRAdjacency.from_torch(matrix)
    rows = torch.tensor([1, 4, 5, 11])
    x = torch.randn(15, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda e: lightgcn_rows(adj, e, 2, rows), (x,))
    ref = torch_layer_mean(matrix, x, 2)[rows]
    assert torch.allclose(lightgcn_rows(adj, x, 2, rows), ref, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="sorted"):
        lightgcn_rows(adj, x, 2, torch.tensor([4, 1]))


def test_layer_rows_gradcheck_float64_non_symmetric():
    rng = np.random.default_rng(9)
    dense = (rng.random((15, 15)) < 0.2) * rng.standard_normal((15, 15))
    matrix = torch.from_numpy(dense.astype(np.float32).astype(np.float64)).to_sparse().coalesce()
    adj = CSRAdjacency.from_torch(matrix)
    rows = torch.tensor([0, 4, 5, 14])
    x = torch.randn(15, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda e: lightgcn_layer_rows(adj, e, 3, rows), (x,))
    ref = torch_layers(matrix, x, 3)[rows]
    assert torch.allclose(lightgcn_layer_rows(adj, x, 3, rows), ref, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="sorted"):
        lightgcn_layer_rows(adj, x, 2, torch.tensor([4, 4]))


def test_side_mean_weights_give_the_mean_of_the_final_embeddings():
    matrix, _ = random_normalized_adjacency(40, 30, 0.1, 3)
    propagation = LightGCNPropagation(matrix, 3)
    x = torch.randn(70, 8)
    final = propagation.layer_mean(x)
    for start, stop in ((0, 40), (40, 70)):
        expected = final[start:stop].mean(0)
        assert torch.allclose(propagation.mean_weights(start, stop) @ x, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="start < stop"):
        propagation.mean_weights(5, 5)


def test_bad_input_is_refused():
    matrix, _ = random_normalized_adjacency(10, 8, 0.3, 0)
    adj = CSRAdjacency.from_torch(matrix)
    with pytest.raises(ValueError, match="shape"):
        sparse_matmul(adj, torch.randn(5, 3))
    with pytest.raises(ValueError, match="float32 or float64"):
        sparse_matmul(adj, torch.ones(18, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="square"):
        CSRAdjacency.from_torch(torch.ones(3, 4).to_sparse())


def test_fast_propagation_flag():
    assert fast_propagation_enabled(None)
    assert fast_propagation_enabled({})
    assert fast_propagation_enabled({"fast_propagation": None})
    assert not fast_propagation_enabled({"fast_propagation": False})
    with pytest.raises(ConfigValueError, match="fast_propagation"):
        fast_propagation_enabled({"fast_propagation": "no"})


@pytest.fixture(scope="module")
def ml100k_adjacency():
    config = Config(model="LightGCN", dataset="ml-100k", config_dict=dict(FAST_RUN), cmd_args=[])
    _, train_data, _, _ = load_data(config)
    return normalized_adjacency(train_data._dataset)


def test_ml100k_lightgcn_propagation_matches_torch(ml100k_adjacency):
    """Three layers on ml-100k, a BPR-like loss on a batch of rows: fast == torch.sparse.mm."""
    fast = LightGCNPropagation(ml100k_adjacency, 3)
    slow = LightGCNPropagation(ml100k_adjacency, 3, {"fast_propagation": False})
    assert fast.fast and not slow.fast
    n = ml100k_adjacency.shape[0]
    gen = torch.Generator().manual_seed(0)
    ego = torch.randn(n, 64, generator=gen) * 0.1
    rows = torch.randint(0, n, (512,), generator=gen)

    def run(module):
        e = ego.clone().requires_grad_(True)
        layers = module(e)
        final = torch.stack(layers).mean(dim=0)
        loss = (final[rows] * final[rows.flip(0)]).sum()
        (grad,) = torch.autograd.grad(loss, e)
        return [t.detach() for t in layers], grad

    layers, grad = run(fast)
    layers_ref, grad_ref = run(slow)
    mean = fast.layer_mean(ego)
    assert torch.allclose(mean, torch.stack(layers_ref).mean(dim=0), rtol=RTOL, atol=ATOL)
    assert torch.allclose(mean, slow.layer_mean(ego), rtol=RTOL, atol=ATOL)
    picked = torch.unique(rows)
    assert torch.allclose(fast.layer_mean_rows(ego, picked), mean[picked], rtol=RTOL, atol=ATOL)
    assert torch.allclose(slow.layer_mean_rows(ego, picked), mean[picked], rtol=RTOL, atol=ATOL)
    for y, y_ref in zip(layers, layers_ref):
        assert torch.allclose(y, y_ref, rtol=RTOL, atol=ATOL)
    assert grad.abs().max() > 0
    assert torch.allclose(grad, grad_ref, rtol=RTOL, atol=ATOL)


def _baseline_pair(tmp_path, model, **options):
    data_path = make_toy_benchmark(tmp_path)
    config = Config(
        model=model,
        dataset="toy",
        config_dict=dict(FAST_RUN, data_path=data_path, train_batch_size=64, **options),
        cmd_args=[],
    )
    _, train_data, _, _ = load_data(config)
    dataset = train_data._dataset
    stock = config.model_class(config, dataset)
    fast = config.model_class(config, dataset)
    fast.load_state_dict(stock.state_dict())
    return config, train_data, stock, fast


def _loss_and_grads(model, interaction):
    model.zero_grad()
    loss = model.calculate_loss(interaction)
    loss.backward()
    return loss.detach(), {k: p.grad.clone() for k, p in model.named_parameters()}


@pytest.mark.parametrize(
    "model,options",
    [("LightGCN", {"n_layers": 3}), ("NGCF", {"message_dropout": 0.0})],
)
def test_recbole_baseline_switch_keeps_loss_and_gradients(tmp_path, model, options):
    config, train_data, stock, fast = _baseline_pair(tmp_path, model, **options)
    assert apply_fast_propagation(config, fast)
    compared = 0
    for interaction in train_data:
        loss, grads = _loss_and_grads(fast, interaction)
        loss_ref, grads_ref = _loss_and_grads(stock, interaction)
        assert torch.allclose(loss, loss_ref, rtol=RTOL, atol=ATOL)
        assert grads.keys() == grads_ref.keys()
        for key in grads:
            assert torch.allclose(grads[key], grads_ref[key], rtol=1e-4, atol=1e-6), key
        compared += 1
        if compared == 3:
            break
    assert compared == 3


def test_baseline_switch_is_a_no_op_where_it_does_not_apply(tmp_path):
    config, _, stock, fast = _baseline_pair(tmp_path, "LightGCN")
    forward = fast.forward
    config["fast_propagation"] = False
    assert not apply_fast_propagation(config, fast)
    assert fast.forward == forward  # untouched
    config["fast_propagation"] = True
    assert not apply_fast_propagation(config, object())  # not a RecBole graph model

    config, _, _, ngcf = _baseline_pair(tmp_path, "NGCF", node_dropout=0.1)
    assert not apply_fast_propagation(config, ngcf)  # re-sampled adjacency every forward


@pytest.mark.parametrize(
    "model,options",
    [("HQGNN", {}), ("L2QGCN", {}), ("HashGNN", {"encoder": "lightgcn"})],
)
def test_plugin_models_follow_the_flag(tmp_path, model, options):
    """Each graph encoder of the plugin goes through LightGCNPropagation and honours the key."""
    data_path = make_toy_benchmark(tmp_path)
    config = Config(
        model=model, dataset="toy", config_dict=dict(FAST_RUN, data_path=data_path, **options),
        cmd_args=[],
    )
    _, train_data, _, _ = load_data(config)
    fast = config.model_class(config, train_data._dataset)
    config["fast_propagation"] = False
    slow = config.model_class(config, train_data._dataset)
    slow.load_state_dict(fast.state_dict())
    assert fast.propagation.fast and not slow.propagation.fast
    ego = torch.cat([fast.user_embedding.weight, fast.item_embedding.weight]).detach()
    layers, layers_ref = fast.propagation(ego), slow.propagation(ego)
    assert len(layers) == fast.n_layers + 1 >= 2
    for a, b in zip(layers, layers_ref):
        assert torch.allclose(a, b, rtol=RTOL, atol=ATOL)
