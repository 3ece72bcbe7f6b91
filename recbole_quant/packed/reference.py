"""Reference top-k on a full score matrix: the specification of the tie rule.

Slow (a full sort per user) and obviously correct; tests and the benchmark
check the fused kernels and the torch path against it.
"""
from __future__ import annotations

import numpy as np

from .limits import check_k

__all__ = ["reference_topk"]


def reference_topk(scores, k, exclude_indptr=None, exclude_indices=None):
    """Top-k by (higher score first, then lower item id), padded with -inf / -1.

    Parameters
    ----------
    scores : array_like float [B, N]
    k : int > 0
    exclude_indptr, exclude_indices : CSR rows of item ids to skip, or None

    Returns
    -------
    top_scores : np.ndarray float32 [B, k]
    top_ids : np.ndarray int64 [B, k]
    """
    scores = np.asarray(scores, dtype=np.float32)
    n_users, n_items = scores.shape
    k = check_k(k)
    out_s = np.full((n_users, k), -np.inf, np.float32)
    out_i = np.full((n_users, k), -1, np.int64)
    for u in range(n_users):
        keep = np.ones(n_items, bool)
        if exclude_indptr is not None:
            row = np.asarray(exclude_indices[exclude_indptr[u]:exclude_indptr[u + 1]])
            keep[row[(row >= 0) & (row < n_items)]] = False
        ids = np.flatnonzero(keep)
        # lexsort: last key is primary -> sort by -score, then by id
        order = ids[np.lexsort((ids, -scores[u, ids]))][:k]
        out_s[u, : order.size] = scores[u, order]
        out_i[u, : order.size] = order
    return out_s, out_i
