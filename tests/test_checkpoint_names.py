"""Checkpoint names stay unique when runs start in the same second."""

from recbole_quant.checkpoint import reserve_checkpoint_name


def test_same_second_names_do_not_collide(tmp_path):
    path = str(tmp_path / "saved" / "HQGNN-Nov-29-2026_09-28-24.pth")
    first = reserve_checkpoint_name(path)
    second = reserve_checkpoint_name(path)
    third = reserve_checkpoint_name(path)
    assert first == path
    assert second.endswith("HQGNN-Nov-29-2026_09-28-24-1.pth")
    assert third.endswith("HQGNN-Nov-29-2026_09-28-24-2.pth")
