"""Popcount kernels: exact integer scores and float scores vs references."""
import numba
import torch
import numpy as np
import pytest

from recbole_quant.packed import kernels
from recbole_quant.packed.bitops import POPCOUNT_IMPL, popcount64, swar_popcount64
from recbole_quant.packed.bitpack import pack_planes, pack_signs, word_major

DIMS = [1, 7, 63, 64, 65, 256]
BITS = [1, 2, 3, 4, 8]


def _signs(rng, n, shape):
    x = rng.standard_normal((n,) + shape)
    return x, np.where(x >= 0, 1, -1).astype(np.int64)


@numba.njit
def _pc_both(x):
    out = np.empty((x.size, 2), np.int64)
    for j in range(x.size):
        out[j, 0] = popcount64(x[j])
        out[j, 1] = swar_popcount64(x[j])
    return out


def test_popcount_implementations_agree():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.integers(0, 2**63, 1000, dtype=np.uint64) * np.uint64(2) + np.uint64(1),
                        np.array([0, 2**64 - 1, 1 << 63], dtype=np.uint64)])
    out = _pc_both(x)
    expected = np.bitwise_count(x).astype(np.int64)
    np.testing.assert_array_equal(out[:, 0], expected)
    np.testing.assert_array_equal(out[:, 1], expected)
    assert POPCOUNT_IMPL in ("llvm.ctpop", "swar")


@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("groups", [1, 3])
def test_sign_dot_exact(d, groups):
    rng = np.random.default_rng(d + groups)
    _, qu = _signs(rng, 11, (groups, d))
    _, qi = _signs(rng, 300, (groups, d))
    got = kernels.sign_dot(pack_signs(qu), word_major(pack_signs(qi)), d, groups)
    np.testing.assert_array_equal(got, qu.reshape(11, -1) @ qi.reshape(300, -1).T)


@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("b", BITS)
def test_plane_dot_exact(d, b):
    rng = np.random.default_rng(100 * d + b)
    ku = rng.integers(0, 2**b, (5, d))
    ki = rng.integers(0, 2**b, (260, d))
    got = kernels.plane_dot(pack_planes(ku, b), word_major(pack_planes(ki, b)), b, b)
    np.testing.assert_array_equal(got, ku @ ki.T)


@pytest.mark.parametrize("bu, bi", [(1, 8), (3, 2), (8, 1)])
def test_plane_dot_mixed_widths(bu, bi):
    rng = np.random.default_rng(bu * 9 + bi)
    ku = rng.integers(0, 2**bu, (4, 65))
    ki = rng.integers(0, 2**bi, (70, 65))
    got = kernels.plane_dot(pack_planes(ku, bu), word_major(pack_planes(ki, bi)), bu, bi)
    np.testing.assert_array_equal(got, ku @ ki.T)


def test_plane_dot_extreme_values():
    ku = np.full((2, 256), 255)
    ki = np.full((3, 256), 255)
    got = kernels.plane_dot(pack_planes(ku, 8), word_major(pack_planes(ki, 8)), 8, 8)
    assert (got == 256 * 255 * 255).all()


@pytest.mark.parametrize("d", [7, 64, 65, 256])
@pytest.mark.parametrize("groups", [1, 3])
def test_sign_scores_scaled_match_float64(d, groups):
    rng = np.random.default_rng(d * groups)
    _, qu = _signs(rng, 6, (groups, d))
    _, qi = _signs(rng, 150, (groups, d))
    su = rng.uniform(0.01, 2.0, (6, groups))
    si = rng.uniform(0.01, 2.0, (150, groups))
    bias = rng.standard_normal(150)
    uc = rng.standard_normal(6)
    got = kernels.sign_scores(pack_signs(qu), word_major(pack_signs(qi)), d, groups,
                              su, si.T, 0.75, bias, uc)
    ref = 0.75 * np.einsum("ugd,igd,ug,ig->ui", qu, qi, su, si) + bias[None] + uc[:, None]
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize("d", [1, 65, 256])
@pytest.mark.parametrize("b", [1, 3, 8])
def test_plane_scores_affine_match_float64(d, b):
    rng = np.random.default_rng(d + 7 * b)
    ku = rng.integers(0, 2**b, (5, d))
    ki = rng.integers(0, 2**b, (90, d))
    lu, hu, li, hi = -0.4, 0.6, -1.5, 1.0
    du, di = (hu - lu) / (2**b - 1), (hi - li) / (2**b - 1)
    mult, bias = du * di, lu * di * ki.sum(1)
    uc = li * du * ku.sum(1) + d * lu * li
    got = kernels.plane_scores(pack_planes(ku, b), word_major(pack_planes(ki, b)), b, b, mult, bias, uc)
    ref = (lu + du * ku) @ (li + di * ki).T
    scale = np.abs(lu + du * ku).sum(1).max() * np.abs(li + di * ki).max()
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6 * scale)


def test_unscaled_float_scores_are_the_integers():
    rng = np.random.default_rng(3)
    _, qu = _signs(rng, 4, (100,))
    _, qi = _signs(rng, 50, (100,))
    a, b = pack_signs(qu), word_major(pack_signs(qi))
    np.testing.assert_array_equal(kernels.sign_scores(a, b, 100), kernels.sign_dot(a, b, 100))


def test_single_thread_matches_threads():
    rng = np.random.default_rng(4)
    _, qu = _signs(rng, 40, (64,))
    _, qi = _signs(rng, 500, (64,))
    a, b = pack_signs(qu), word_major(pack_signs(qi))
    many = kernels.sign_topk(a, b, 64, 10)
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = kernels.sign_topk(a, b, 64, 10)
    finally:
        torch.set_num_threads(old)
    np.testing.assert_array_equal(many[1], one[1])


def test_kernel_argument_validation():
    a = pack_signs(np.ones((2, 64)))
    b = word_major(pack_signs(np.ones((3, 64))))
    with pytest.raises(ValueError, match="dim"):
        kernels.sign_dot(a, b, 65)
    with pytest.raises(ValueError, match="uint64"):
        kernels.sign_dot(a.astype(np.int64), b, 64)
    with pytest.raises(ValueError, match="both"):
        kernels.sign_scores(a, b, 64, user_scales=np.ones((2, 1)))
    with pytest.raises(ValueError, match="finite"):
        kernels.sign_scores(a, b, 64, item_bias=np.array([0.0, np.inf, 0.0]))
    with pytest.raises(ValueError, match="plane"):
        kernels.plane_dot(a, b, 2, 1)


def test_thread_pool_survives_fork():
    import multiprocessing as mp

    rng = np.random.default_rng(5)
    a = pack_signs(rng.standard_normal((40, 64)))
    b = word_major(pack_signs(rng.standard_normal((300, 64))))
    expected = kernels.sign_dot(a, b, 64)  # creates the pool in this process
    ctx = mp.get_context("fork")
    with ctx.Pool(1) as pool:
        got = pool.apply_async(kernels.sign_dot, (a, b, 64)).get(timeout=60)
    np.testing.assert_array_equal(got, expected)
