"""Storage accounting."""
import pytest

from recbole_quant.packed.storage import storage_report


def test_one_bit_d64_is_8_bytes_and_32x():
    r = storage_report("sign", n_users=10, n_items=1000, dim=64)
    assert r.item_code_bits == 64 and r.item_code_bytes == 8
    assert r.item_table_bytes == 8 * 1000 and r.user_table_bytes == 80
    assert r.ratio_vs_float32 == 32


@pytest.mark.parametrize("b, ratio", [(1, 32), (2, 16), (4, 8), (8, 4)])
def test_b_bit_uniform(b, ratio):
    r = storage_report("uniform", 5, 100, 64, user_bits=b, item_bits=b, user_table_floats=2, item_table_floats=2)
    assert r.item_code_bits == 64 * b
    assert r.item_table_bytes == 100 * 8 * b + 8  # packed planes + (l, u)
    assert r.ratio_vs_float32 == ratio


def test_padding_counts_in_table_bytes_not_in_code_bits():
    r = storage_report("sign", 1, 10, 65)
    assert r.item_code_bits == 65 and r.item_table_bytes == 10 * 16


def test_l2q_gcn_layers_with_scales():
    r = storage_report("sign", 7, 100, 256, groups=3, user_floats_per_node=3, item_floats_per_node=3)
    assert r.item_code_bits == 864
    assert r.ratio_vs_float32 == pytest.approx(8192 / 864)  # 9.48x vs one float32 vector of width d
    assert r.ratio_vs_float32_concat == pytest.approx(3 * 8192 / 864)
    assert r.item_table_bytes == 100 * (3 * 4 * 8 + 12)
    assert "9.48x" in str(r)
