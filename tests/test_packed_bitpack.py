"""Bit packing: round trips, layout, tail bits, validation."""
import numpy as np
import pytest
import torch

from recbole_quant.packed.bitpack import (
    n_words,
    pack_planes,
    pack_signs,
    unpack_planes,
    unpack_signs,
    word_major,
)

DIMS = [1, 7, 63, 64, 65, 256]
BITS = [1, 2, 3, 4, 8]


@pytest.mark.parametrize("d", DIMS)
def test_sign_round_trip_and_zero_tail(d):
    rng = np.random.default_rng(d)
    x = rng.standard_normal((9, d))
    words = pack_signs(x)
    assert words.dtype == np.uint64 and words.shape == (9, n_words(d))
    np.testing.assert_array_equal(unpack_signs(words, d), np.where(x >= 0, 1, -1))
    if d % 64:
        tail = words[:, -1] >> np.uint64(d % 64)
        assert not tail.any()


def test_sign_layout_is_little_endian_bit_j():
    x = -np.ones((1, 130))
    x[0, [0, 5, 63, 64, 129]] = 1.0
    w = pack_signs(x)
    assert w[0, 0] == np.uint64((1 << 0) | (1 << 5) | (1 << 63))
    assert w[0, 1] == np.uint64(1)
    assert w[0, 2] == np.uint64(1 << 1)


def test_sign_inputs_zero_is_plus_one_bool_int_torch():
    x = np.array([[0.0, -0.0, -1e-30, 2.0]])
    np.testing.assert_array_equal(unpack_signs(pack_signs(x), 4), [[1, 1, -1, 1]])
    b = np.array([[True, False, True]])
    np.testing.assert_array_equal(unpack_signs(pack_signs(b), 3), [[1, -1, 1]])
    i = np.array([[-2, 0, 3]], dtype=np.int32)
    np.testing.assert_array_equal(unpack_signs(pack_signs(i), 3), [[-1, 1, 1]])
    t = torch.tensor([[-1.0, 1.0]])
    np.testing.assert_array_equal(unpack_signs(pack_signs(t), 2), [[-1, 1]])


def test_multi_group_signs():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 3, 70))
    w = pack_signs(x)
    assert w.shape == (5, 3, 2)
    np.testing.assert_array_equal(unpack_signs(w, 70), np.where(x >= 0, 1, -1))
    np.testing.assert_array_equal(w[:, 1], pack_signs(x[:, 1]))


@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("b", BITS)
def test_plane_round_trip(d, b):
    rng = np.random.default_rng(d * 10 + b)
    k = rng.integers(0, 2**b, (6, d))
    planes = pack_planes(k, b)
    assert planes.shape == (6, b, n_words(d))
    np.testing.assert_array_equal(unpack_planes(planes, d), k)
    for p in range(b):  # plane p holds bit p
        np.testing.assert_array_equal(unpack_signs(planes[:, p], d), np.where((k >> p) & 1, 1, -1))


def test_plane_accepts_integral_floats_and_torch():
    k = torch.tensor([[0.0, 3.0, 1.0]])
    np.testing.assert_array_equal(unpack_planes(pack_planes(k, 2), 3), [[0, 3, 1]])


@pytest.mark.parametrize(
    "codes, bits, message",
    [
        (np.array([[0, 4]]), 2, "in \\[0, 4\\)"),
        (np.array([[-1, 0]]), 2, "in \\[0, 4\\)"),
        (np.array([[0.5, 1.0]]), 2, "integral"),
        (np.array([[0, 1]]), 0, "bits"),
        (np.array([[0, 1]]), 9, "bits"),
        (np.array([[0, 1]]), 2.5, "bits"),
        (np.array([0, 1]), 2, "\\[N, d\\]"),
    ],
)
def test_plane_validation(codes, bits, message):
    with pytest.raises(ValueError, match=message):
        pack_planes(codes, bits)


def test_sign_validation():
    with pytest.raises(ValueError, match="NaN"):
        pack_signs(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError):
        pack_signs(np.ones(5))
    with pytest.raises(ValueError):
        unpack_signs(pack_signs(np.ones((1, 10))), 65)


def test_word_major():
    rng = np.random.default_rng(0)
    w = pack_signs(rng.standard_normal((4, 2, 100)))  # [4, 2, 2]
    t = word_major(w)
    assert t.shape == (4, 4) and t.flags.c_contiguous
    np.testing.assert_array_equal(t.T.reshape(4, 2, 2), w)
