"""PackedPredictor: references, fresh tensors, torch path == numba path, exclusion."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recbole_quant.packed import PackedPredictor, reference_topk


def _q(x):
    return (x >= 0).double() * 2 - 1


@pytest.fixture(scope="module")
def sign_data():
    g = torch.Generator().manual_seed(0)
    return (torch.randn(40, 3, 70, generator=g), torch.randn(333, 3, 70, generator=g),
            torch.rand(40, 3, generator=g) + 0.1, torch.rand(333, 3, generator=g) + 0.1)


def test_from_signs_unscaled_is_integer_dot(sign_data):
    xu, xi, _, _ = sign_data
    p = PackedPredictor.from_signs(xu[:, 0], xi[:, 0])
    s = p.score(torch.arange(40))
    assert s.dtype == torch.float32 and s.shape == (40, 333)
    assert torch.equal(s.double(), _q(xu[:, 0]) @ _q(xi[:, 0]).T)
    assert (p.n_users, p.n_items, p.dim, p.bits, p.groups, p.kind) == (40, 333, 70, 1, 1, "sign")


def test_from_signs_multi_group_scaled_matches_float64(sign_data):
    xu, xi, su, si = sign_data
    p = PackedPredictor.from_signs(xu, xi, su, si)
    users = torch.tensor([5, 0, 39, 5])
    ref = torch.einsum("ugd,igd,ug,ig->ui", _q(xu[users]), _q(xi), su[users].double(), si.double())
    torch.testing.assert_close(p.score(users).double(), ref, rtol=1e-5, atol=1e-5)


def test_one_side_scales_default_to_one(sign_data):
    xu, xi, su, _ = sign_data
    p = PackedPredictor.from_signs(xu[:, :1], xi[:, :1], user_scales=su[:, 0])
    ref = su[:, :1].double() * (_q(xu[:, 0]) @ _q(xi[:, 0]).T)
    torch.testing.assert_close(p.score(torch.arange(40)).double(), ref, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("bits, item_bits", [(1, None), (2, None), (4, 2), (8, 8)])
def test_from_uniform_matches_dequantised_float64(bits, item_bits):
    ib = bits if item_bits is None else item_bits
    g = torch.Generator().manual_seed(bits)
    ku = torch.randint(0, 2**bits, (30, 65), generator=g)
    ki = torch.randint(0, 2**ib, (200, 65), generator=g)
    (lu, hu), (li, hi) = (-0.3, 0.5), (-1.2, 0.9)
    p = PackedPredictor.from_uniform(ku, ki, bits, (lu, hu), (li, hi), item_bits=item_bits)
    eu = lu + (hu - lu) / (2**bits - 1) * ku.double()
    ei = li + (hi - li) / (2**ib - 1) * ki.double()
    ref = eu @ ei.T
    scale = eu.abs().sum(1).max() * ei.abs().max()
    torch.testing.assert_close(p.score(torch.arange(30)).double(), ref, rtol=1e-5, atol=1e-6 * scale)
    assert (p.bits, p.item_bits, p.kind) == (bits, ib, "uniform")


def test_score_returns_fresh_tensor(sign_data):
    xu, xi, _, _ = sign_data
    p = PackedPredictor.from_signs(xu[:, 0], xi[:, 0])
    users = torch.tensor([1, 2])
    first = p.score(users)
    keep = first.clone()
    first[:, 0] = -torch.inf  # what RecBole's trainer does
    first[0, 5:] = 123.0
    assert torch.equal(p.score(users), keep)


def _predictors(sign_data):
    xu, xi, su, si = sign_data
    g = torch.Generator().manual_seed(1)
    ku = torch.randint(0, 4, (40, 70), generator=g)
    ki = torch.randint(0, 4, (333, 70), generator=g)
    ki[::5] = ki[0]
    return [
        ("sign", lambda **kw: PackedPredictor.from_signs(xu[:, 0], xi[:, 0], **kw)),
        ("sign-groups-scaled", lambda **kw: PackedPredictor.from_signs(xu, xi, su, si, **kw)),
        ("uniform-2bit", lambda **kw: PackedPredictor.from_uniform(ku, ki, 2, (-1, 1), (-0.5, 2), **kw)),
        ("uniform-1x3bit", lambda **kw: PackedPredictor.from_uniform(ku % 2, ki, 1, (-1, 1), (0, 1), item_bits=3, **kw)),
        # HQ-GNN's default (1 bit, d <= 64): the numba top-k scans items sorted by bias
        ("uniform-1bit-d64", lambda **kw: PackedPredictor.from_uniform(
            ku[:, :64] % 2, ki[:, :64] % 2, 1, (-1.5, 1.5), (-0.7, 0.9), **kw)),
    ]


def test_torch_path_equals_numba_path(sign_data):
    exclude = sp.random(40, 333, density=0.2, format="csr", random_state=3)
    users = torch.tensor([0, 7, 7, 39, 12])
    for name, build in _predictors(sign_data):
        pn, pt = build(), build(backend="torch")
        assert pn.backend == "numba" and pt.backend == "torch"
        sn, st = pn.score(users), pt.score(users)
        assert torch.equal(sn, st), name
        for k in (1, 25, 400):
            a, b = pn.topk(users, k, exclude=exclude), pt.topk(users, k, exclude=exclude)
            assert torch.equal(a[1], b[1]) and torch.equal(a[0], b[0]), (name, k)


def test_topk_matches_reference_with_csr_and_tuple_exclusion(sign_data):
    xu, xi, su, si = sign_data
    p = PackedPredictor.from_signs(xu, xi, su, si)
    users = np.array([3, 1, 3])
    hist = sp.random(40, 333, density=0.1, format="csr", random_state=0)
    rows = hist[users]
    rows.sort_indices()
    ref = reference_topk(p.score(users).numpy(), 20, rows.indptr, rows.indices)
    for exclude in (hist, (rows.indptr, rows.indices)):
        s, i = p.topk(users, 20, exclude=exclude)
        assert s.dtype == torch.float32 and i.dtype == torch.int64
        np.testing.assert_array_equal(i.numpy(), ref[1])
        np.testing.assert_array_equal(s.numpy(), ref[0])


def test_storage_from_predictor(sign_data):
    xu, xi, su, si = sign_data
    rep = PackedPredictor.from_signs(xu[:, 0, :64], xi[:, 0, :64]).storage()
    assert rep.item_code_bits == 64 and rep.item_table_bytes == 333 * 8 and rep.ratio_vs_float32 == 32
    rep = PackedPredictor.from_signs(xu, xi, su, si).storage()
    assert rep.groups == 3 and rep.item_code_bits == 3 * 70 + 3 * 32


def test_validation(sign_data):
    xu, xi, _, _ = sign_data
    p = PackedPredictor.from_signs(xu[:, 0], xi[:, 0])
    with pytest.raises(IndexError):
        p.score(torch.tensor([40]))
    with pytest.raises(ValueError, match="k must be"):
        p.topk(torch.tensor([0]), 0)
    with pytest.raises(ValueError, match="exclude matrix"):
        p.topk(torch.tensor([0]), 3, exclude=sp.csr_matrix((40, 10)))
    with pytest.raises(ValueError, match="same"):
        PackedPredictor.from_signs(xu[:, 0], xi[:, 0, :10])
    with pytest.raises(ValueError, match="u > l"):
        PackedPredictor.from_uniform(torch.zeros(2, 4), torch.zeros(3, 4), 2, (1.0, 1.0), (0, 1))
    with pytest.raises(ValueError, match="bits"):
        PackedPredictor.from_uniform(torch.zeros(2, 4), torch.zeros(3, 4), 9, (0, 1), (0, 1))
    with pytest.raises(ValueError, match="numba"):
        PackedPredictor.from_signs(xu[:, 0], xi[:, 0], backend="cuda")
