"""dense_topk: the one torch implementation of the tie rule, against its specification."""
import math

import numpy as np
import pytest
import torch

from recbole_quant.packed import FloatPredictor, PackedPredictor, dense_topk, reference_topk
from recbole_quant.packed.exclusion import csr_from_lists, history_exclusion


def _exclusion(rng, n_rows, n_items):
    rows = [np.sort(rng.integers(-1, n_items + 1, rng.integers(0, 8))) for _ in range(n_rows)]
    return csr_from_lists(rows)  # duplicates and out-of-range ids included


def test_ties_go_to_the_lower_id_and_minus_inf_is_padding():
    scores = torch.tensor([[1.0, 3.0, 3.0, 2.0, 3.0, -math.inf], [0.0, 0.0, 0.0, 0.0, 5.0, 0.0]])
    values, ids = dense_topk(scores.clone(), 4)
    assert ids.tolist() == [[1, 2, 4, 3], [4, 0, 1, 2]]
    assert values.tolist() == [[3.0, 3.0, 3.0, 2.0], [5.0, 0.0, 0.0, 0.0]]
    # past the last finite score and past the last item: -inf / -1
    values, ids = dense_topk(scores.clone(), 8)
    assert ids[0].tolist() == [1, 2, 4, 3, 0, -1, -1, -1]
    assert torch.isneginf(values[0, 5:]).all() and ids[1, 6:].tolist() == [-1, -1]


@pytest.mark.parametrize("n_items, k, levels", [(50, 10, 3), (50, 60, 2), (300, 20, 7), (40, 5, 1000)])
def test_equals_the_reference_with_exclusions(n_items, k, levels):
    rng = np.random.default_rng(n_items + k)
    scores = rng.integers(-levels, levels + 1, (23, n_items)).astype(np.float32)  # many ties
    indptr, indices = _exclusion(rng, 23, n_items)
    ref_s, ref_i = reference_topk(scores, k, indptr, indices)
    tensor = torch.from_numpy(scores.copy())
    got_s, got_i = dense_topk(tensor, k, indptr, indices)
    np.testing.assert_array_equal(got_i.numpy(), ref_i)
    np.testing.assert_array_equal(got_s.numpy(), ref_s)
    rows = np.repeat(np.arange(23), np.diff(indptr))
    ok = (indices >= 0) & (indices < n_items)
    assert torch.isneginf(tensor[rows[ok], indices[ok]]).all()  # excluded entries overwritten


@pytest.mark.parametrize("k", [0, -1, 2.5, True])
def test_bad_k(k):
    with pytest.raises(ValueError, match="k must be"):
        dense_topk(torch.zeros(1, 3), k)


def test_torch_backend_and_float_predictor_rank_with_the_tie_rule():
    rng = np.random.default_rng(3)
    user_codes, item_codes = rng.standard_normal((9, 5)), rng.standard_normal((60, 5))  # d=5: ties
    exclude = history_exclusion([rng.integers(1, 60, 4) for _ in range(9)])
    users = np.arange(9)
    for backend in ("numba", "torch"):
        predictor = PackedPredictor.from_signs(user_codes, item_codes, backend=backend)
        _, ids = predictor.topk(users, 12, exclude=exclude)
        _, expected = reference_topk(predictor.score(users).numpy(), 12, *exclude)
        np.testing.assert_array_equal(np.asarray(ids), expected)
    floats = FloatPredictor(torch.from_numpy(np.sign(user_codes)).float(), torch.from_numpy(np.sign(item_codes)).float())
    _, ids = floats.topk(users, 12, exclude=exclude)
    _, expected = reference_topk(floats.score(users).numpy(), 12, *exclude)
    np.testing.assert_array_equal(ids.numpy(), expected)


def test_history_exclusion_puts_the_padding_item_first_then_sorted_history():
    indptr, indices = history_exclusion([np.array([7, 2]), np.array([], np.int64), np.array([5])])
    assert indptr.tolist() == [0, 3, 4, 6]
    assert indices.tolist() == [0, 2, 7, 0, 0, 5]
