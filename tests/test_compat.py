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
