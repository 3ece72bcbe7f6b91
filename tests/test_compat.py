"""The compatibility layer: RecBole 1.2.1 on NumPy 2, new SciPy and torch >= 2.6."""

import numpy as np
import scipy.sparse as sp

from recbole_quant import compat


def test_numpy_aliases_restored_with_numpy1_meaning():
    assert np.float is np.float64
    assert np.int is np.int_
    assert np.bool is np.bool_
    assert np.zeros(2, dtype=np.float).dtype == np.float64


def test_apply_is_idempotent():
    assert compat.apply() == []  # already applied on import


def test_dok_update_restored_and_builds_matrix():
    m = sp.dok_matrix((3, 3), dtype=np.float32)
    m._update({(0, 1): 1.0, (2, 0): 2.0})
    dense = m.toarray()
    assert dense[0, 1] == 1.0 and dense[2, 0] == 2.0 and dense.sum() == 3.0


def test_recbole_config_and_metrics_work():
    from recbole.evaluator.metrics import NDCG

    from recbole_quant import Config

    config = Config(model="BPR", dataset="ml-100k", cmd_args=[])
    metric = NDCG(config)
    pos_index = np.array([[True, False, True]])
    pos_len = np.array([2])
    result = metric.metric_info(pos_index, pos_len)  # uses np.float internally
    assert result.shape == (1, 3) and result[0, 0] == 1.0


def test_recbole_quick_start_is_never_imported():
    import sys

    import recbole_quant.quick_start  # noqa: F401

    assert "recbole.quick_start" not in sys.modules
    assert "ray" not in sys.modules



def test_docs_list_every_silenced_warning():
    import os

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "compat.md")
    text = open(path, encoding="utf-8").read()
    section = text.split("## Warnings from RecBole's own code", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) - 1 == len(compat.RECBOLE_NOISE)  # minus the header row


def test_missing_token_and_float_values_are_filled_as_on_pandas2(tmp_path):
    """RecBole's ``_fill_nan`` fills nothing under pandas 3 (``fillna(inplace=True)`` on a
    copy): blanks stayed NaN and a missing token became int64's minimum in the tensors."""
    from recbole_quant import Config
    from recbole_quant.quick_start import _build_dataset

    folder = tmp_path / "fill"
    folder.mkdir()
    rows = ["user_id:token\titem_id:token\tscore:float"]
    scores = {}
    for u in range(1, 9):
        for i in range(1, 7):
            blank = (u + i) % 4 == 0
            value = "" if blank else f"{(u * i) % 5 + 0.5}"
            if not blank:
                scores[(u, i)] = float(value)
            rows.append(f"{u}\t{i}\t{value}")
    (folder / "fill.inter").write_text("\n".join(rows) + "\n")
    # items 5 and 6 have no row here (RecBole adds them with missing features); item 2 a blank
    (folder / "fill.item").write_text("item_id:token\tgenre:token\n1\ta\n2\t\n3\tb\n4\ta\n")
    config = Config(model="BPR", dataset="fill", cmd_args=[], config_dict={
        "data_path": str(tmp_path), "load_col": None, "use_gpu": False, "state": "WARNING",
        "filter_inter_by_user_or_item": False})  # keep items 5 and 6
    dataset = _build_dataset(config)

    inter = dataset.inter_feat  # DataFrames until the dataset is split
    assert not inter["score"].isna().any()
    users = inter["user_id"].map(lambda u: int(dataset.id2token("user_id", u)))
    items = inter["item_id"].map(lambda i: int(dataset.id2token("item_id", i)))
    blank = ((users + items) % 4 == 0).to_numpy()
    kept = [scores[k] for k in zip(users[~blank], items[~blank])]  # rows RecBole kept
    assert np.allclose(inter["score"][~blank], kept)
    assert blank.any() and np.allclose(inter["score"][blank], np.mean(kept))  # their mean
    genre = dataset.item_feat["genre"]
    assert not genre.isna().any() and genre.min() >= 0
    for token in ("2", "5", "6"):  # blank or no row: the [PAD] id 0, as RecBole intends
        assert genre[dataset.token2id("item_id", token)] == 0
    assert genre[dataset.token2id("item_id", "1")] == genre[dataset.token2id("item_id", "4")] > 0
