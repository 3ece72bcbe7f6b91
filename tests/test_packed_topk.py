"""Fused top-k == full score matrix + reference sort by (-score, id), exactly."""
import numpy as np
import pytest

from recbole_quant.packed import kernels
from recbole_quant.packed.bitpack import pack_planes, pack_signs, word_major
from recbole_quant.packed.reference import reference_topk


def _exclusion(rng, n_users, n_items, max_len):
    rows = [np.unique(rng.integers(-2, n_items + 2, rng.integers(0, max_len + 1))) for _ in range(n_users)]
    rows = [np.concatenate([r, r[:1]]) if len(r) and rng.random() < 0.3 else r for r in rows]  # duplicates
    rows = [np.sort(r) for r in rows]
    indptr = np.zeros(n_users + 1, np.int64)
    indptr[1:] = np.cumsum([len(r) for r in rows])
    indices = np.concatenate(rows).astype(np.int64) if rows else np.zeros(0, np.int64)
    return indptr, indices


def _check(scores, got, k, indptr=None, indices=None):
    ref_s, ref_i = reference_topk(scores, k, indptr, indices)
    np.testing.assert_array_equal(got[1], ref_i)
    np.testing.assert_array_equal(got[0], ref_s)


CASES = [
    # (d, groups, n_items, k)
    (1, 1, 300, 5),  # d=1: two distinct scores, ties everywhere
    (7, 1, 1000, 20),
    (64, 1, 1000, 20),
    (65, 2, 777, 33),
    (256, 1, 640, 64),  # n_items a multiple of the block
    (64, 1, 129, 200),  # k > n_items
]


@pytest.mark.parametrize("d, groups, n_items, k", CASES)
@pytest.mark.parametrize("excluded", [False, True])
def test_sign_int_topk(d, groups, n_items, k, excluded):
    rng = np.random.default_rng(d * 1000 + n_items + excluded)
    x_u = rng.standard_normal((19, groups, d))
    x_i = rng.standard_normal((n_items, groups, d))
    x_i[::3] = x_i[0]  # many identical items
    a, b = pack_signs(x_u), word_major(pack_signs(x_i))
    ex = _exclusion(rng, 19, n_items, n_items // 3) if excluded else (None, None)
    got = kernels.sign_topk(a, b, d, k, groups, exclude_indptr=ex[0], exclude_indices=ex[1])
    _check(kernels.sign_dot(a, b, d, groups), got, k, *ex)


@pytest.mark.parametrize("d, groups, n_items, k", CASES)
def test_sign_scaled_topk_with_ties(d, groups, n_items, k):
    rng = np.random.default_rng(d + n_items)
    a = pack_signs(rng.standard_normal((13, groups, d)))
    b = word_major(pack_signs(rng.standard_normal((n_items, groups, d))))
    su = rng.integers(1, 3, (13, groups)).astype(float)  # coarse scales: many exact ties
    si = rng.integers(1, 3, (groups, n_items)).astype(float)
    bias = rng.integers(-2, 3, n_items).astype(float)
    ex = _exclusion(rng, 13, n_items, 50)
    args = (a, b, d, groups, su, si, 0.5, bias, rng.standard_normal(13))
    got = kernels.sign_topk(a, b, d, k, *args[3:], exclude_indptr=ex[0], exclude_indices=ex[1])
    _check(kernels.sign_scores(*args), got, k, *ex)


@pytest.mark.parametrize("b", [1, 2, 3])
@pytest.mark.parametrize("mult", [0.37, -1.0, 0.0])
def test_plane_topk(b, mult):
    rng = np.random.default_rng(b)
    ku = rng.integers(0, 2**b, (21, 65))
    ki = rng.integers(0, 2**b, (900, 65))
    ki[::4] = ki[1]
    a, bt = pack_planes(ku, b), word_major(pack_planes(ki, b))
    bias = np.round(rng.standard_normal(900), 1)
    uc = rng.standard_normal(21)
    ex = _exclusion(rng, 21, 900, 300)
    scores = kernels.plane_scores(a, bt, b, b, mult, bias, uc)
    for k in (1, 10, 100):
        got = kernels.plane_topk(a, bt, b, b, k, mult, bias, uc, *ex)
        _check(scores, got, k, *ex)


def test_all_identical_codes_returns_lowest_ids():
    a = pack_signs(np.ones((3, 64)))
    b = word_major(pack_signs(np.ones((500, 64))))
    s, i = kernels.sign_topk(a, b, 64, 7)
    np.testing.assert_array_equal(i, np.tile(np.arange(7), (3, 1)))
    assert (s == 64).all()


def test_k_larger_than_remaining_pads_with_minus_inf_and_minus_one():
    a = pack_signs(np.ones((2, 8)))
    b = word_major(pack_signs(np.ones((5, 8))))
    indptr = np.array([0, 2, 7])
    indices = np.array([1, 3, 0, 1, 2, 3, 4])  # user 1 excludes everything
    s, i = kernels.sign_topk(a, b, 8, 6, exclude_indptr=indptr, exclude_indices=indices)
    np.testing.assert_array_equal(i, [[0, 2, 4, -1, -1, -1], [-1] * 6])
    assert np.isneginf(s[0, 3:]).all() and np.isneginf(s[1]).all()
    assert (s[0, :3] == 8).all()


@pytest.mark.parametrize("k", [0, -3, 2.5])
def test_bad_k(k):
    a = pack_signs(np.ones((1, 8)))
    b = word_major(pack_signs(np.ones((5, 8))))
    with pytest.raises(ValueError, match="k must be"):
        kernels.sign_topk(a, b, 8, k)
    with pytest.raises(ValueError, match="k must be"):
        reference_topk(np.zeros((1, 5)), k)


def test_unsorted_exclusion_rejected():
    a = pack_signs(np.ones((2, 8)))
    b = word_major(pack_signs(np.ones((5, 8))))
    with pytest.raises(ValueError, match="sorted"):
        kernels.sign_topk(a, b, 8, 2, exclude_indptr=[0, 2, 3], exclude_indices=[3, 1, 0])
    # a decrease across a row boundary is fine
    kernels.sign_topk(a, b, 8, 2, exclude_indptr=[0, 2, 3], exclude_indices=[1, 3, 0])


def test_many_users_and_blocks():
    rng = np.random.default_rng(11)
    a = pack_signs(rng.standard_normal((70, 64)))  # several user blocks and thread tasks
    b = word_major(pack_signs(rng.standard_normal((5000, 64))))
    ex = _exclusion(rng, 70, 5000, 200)
    got = kernels.sign_topk(a, b, 64, 50, exclude_indptr=ex[0], exclude_indices=ex[1])
    _check(kernels.sign_dot(a, b, 64), got, 50, *ex)


def test_plane_bound_params_choice():
    bias = np.array([0.5, -2.0, 3.0])
    use, shift, negmask, _, delta, g = kernels.plane_bound_params(0.25, bias, 1, 2, 2)[:6]
    assert use and shift >= 16 and negmask == 0 and delta > 0
    np.testing.assert_array_equal(g, np.floor(bias / 0.25 * 2.0**shift).astype(np.int64))
    assert kernels.plane_bound_params(-0.25, bias, 1, 2, 2)[2] == -1
    assert not kernels.plane_bound_params(0.0, bias, 1, 2, 2)[0]  # mult == 0: exact first pass
    assert not kernels.plane_bound_params(1e-300, bias, 1, 2, 2)[0]  # |bias| / |mult| too large


@pytest.mark.parametrize("mult, scale", [(1e-7, 1.0), (3.0, 1e-9), (1e-300, 1.0), (-2.5, 1e3)])
def test_plane_topk_extreme_mult_and_bias(mult, scale):
    """Bounds must stay valid when bias dominates, is negligible, or forces the exact path."""
    rng = np.random.default_rng(7)
    ku = rng.integers(0, 4, (9, 64))
    ki = rng.integers(0, 4, (700, 64))
    a, bt = pack_planes(ku, 2), word_major(pack_planes(ki, 2))
    bias = scale * np.round(rng.standard_normal(700), 2)
    scores = kernels.plane_scores(a, bt, 2, 2, mult, bias)
    _check(scores, kernels.plane_topk(a, bt, 2, 2, 15, mult, bias), 15)


@pytest.mark.parametrize("bits, d", [(1, 64), (1, 7), (1, 100), (2, 64)])
@pytest.mark.parametrize("bias_kind", ["code_sum", "random", "constant"])
def test_bias_sorted_items_topk(bits, d, bias_kind):
    """Items stored by bias (.sorted_items): the same top-k as the id-order kernel and the
    reference, ties broken by the original id, exclusions given as original ids."""
    from recbole_quant.packed.sorted_items import sort_items

    rng = np.random.default_rng(bits * 100 + d)
    n_users, n_items = 23, 1000  # not a multiple of the block
    ku = rng.integers(0, 2**bits, (n_users, d))
    ki = rng.integers(0, 2**bits, (n_items, d))
    ki[::7] = ki[3]  # many identical items, spread over blocks
    a, bt = pack_planes(ku, bits), word_major(pack_planes(ki, bits))
    mult = 0.37
    bias = {"code_sum": -0.5 * mult * ki.sum(axis=1),  # HQ-GNN: a function of the code sum
            "random": rng.standard_normal(n_items),  # wide blocks: loose bounds, still exact
            "constant": np.zeros(n_items)}[bias_kind]
    user_const = rng.standard_normal(n_users)
    scores = kernels.plane_scores(a, bt, bits, bits, mult, bias, user_const)
    indptr, indices = _exclusion(rng, n_users, n_items, 300)
    rows = [indices[indptr[u]:indptr[u + 1]] for u in range(n_users)]
    rows[0] = np.arange(64, 128)  # a whole block, in stored order somewhere else
    rows[1] = np.setdiff1d(np.arange(n_items), [5, 900, 901])  # 3 items left: padding
    rows[2] = np.array([-1, 3, 3, 999, 1000, 5000])  # out of range and duplicates ignored
    indptr = np.zeros(n_users + 1, np.int64)
    indptr[1:] = np.cumsum([len(r) for r in rows])
    indices = np.concatenate(rows).astype(np.int64)
    stored = sort_items(bt, bias)
    assert (np.diff(stored.bias) <= 0).all() and (stored.perm[stored.inverse] == np.arange(n_items)).all()
    no_scales = np.zeros((0, 0))
    small = kernels.plane_dot_fits_int32(bt.shape[0] // bits, bits, bits)
    for k in (1, 20, 150, n_items + 3):
        got = kernels.run_topk(kernels.PLANE, a.reshape(n_users, -1), bt, 1, 1, no_scales, no_scales, bits, bits, small,
                               mult, bias, user_const, k, indptr, indices, sorted_items=stored)
        _check(scores, got, k, indptr, indices)
        id_order = kernels.plane_topk(a, bt, bits, bits, k, mult, bias, user_const, indptr, indices)
        np.testing.assert_array_equal(got[1], id_order[1])
