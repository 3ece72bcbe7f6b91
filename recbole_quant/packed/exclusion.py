"""Exclusion lists (items a user must not get back, e.g. training history) as CSR.

The kernels take, for a batch of ``B`` users, ``indptr [B + 1]`` and
``indices`` with each row's item ids sorted ascending (duplicates allowed;
ids outside ``[0, n_items)`` are ignored).
"""
from __future__ import annotations

import numpy as np

__all__ = ["exclusion_csr", "batch_exclusion", "csr_from_lists", "history_exclusion"]

# RecBole's padding item: id 0 is no real item and is never recommended
PADDING_ITEM = 0


def exclusion_csr(n_users: int, indptr=None, indices=None):
    """Validate CSR exclusion arrays for a batch; ``None`` means exclude nothing.

    Returns
    -------
    indptr : np.ndarray int64 [B + 1]
    indices : np.ndarray int64 [nnz], sorted within each row
    """
    if indptr is None:
        if indices is not None:
            raise ValueError("exclusion indices given without indptr")
        return np.zeros(n_users + 1, np.int64), np.zeros(0, np.int64)
    indptr = np.ascontiguousarray(indptr, dtype=np.int64)
    indices = np.ascontiguousarray(indices, dtype=np.int64)
    if indptr.shape != (n_users + 1,) or indptr[0] != 0 or indptr[-1] != indices.shape[0]:
        raise ValueError("exclusion indptr must have B + 1 entries running from 0 to len(indices)")
    if (np.diff(indptr) < 0).any():
        raise ValueError("exclusion indptr must be non-decreasing")
    # sorted within rows: every decrease must sit on a row boundary
    drops = np.flatnonzero(np.diff(indices) < 0) + 1
    if drops.size and not np.isin(drops, indptr).all():
        raise ValueError("exclusion indices must be sorted within each row")
    return indptr, indices


def batch_exclusion(exclude, users: np.ndarray, n_users: int, n_items: int):
    """CSR exclusion rows for the batch ``users``.

    Parameters
    ----------
    exclude : None, a scipy.sparse matrix [n_users, n_items] (row u = items to
        skip for user u; values are ignored), or ``(indptr, indices)`` already
        for exactly these ``B`` users.
    users : int64 [B], user ids of the batch

    Returns
    -------
    (indptr int64 [B + 1], indices int64 [nnz]) validated, see :func:`exclusion_csr`.
    """
    if exclude is None:
        return exclusion_csr(len(users))
    if isinstance(exclude, tuple):
        if len(exclude) != 2:
            raise ValueError("exclude as a tuple must be (indptr, indices)")
        return exclusion_csr(len(users), *exclude)
    if not hasattr(exclude, "tocsr"):
        raise TypeError("exclude must be None, a scipy.sparse matrix or (indptr, indices)")
    if exclude.shape != (n_users, n_items):
        raise ValueError(f"exclude matrix must be [{n_users}, {n_items}], got {list(exclude.shape)}")
    rows = exclude.tocsr()[users]
    rows.sort_indices()
    return exclusion_csr(len(users), rows.indptr, rows.indices)


def csr_from_lists(lists):
    """``(indptr int64 [len + 1], indices int64 [nnz])`` of a sequence of 1-D id arrays."""
    indptr = np.zeros(len(lists) + 1, np.int64)
    np.cumsum([len(x) for x in lists], out=indptr[1:])
    indices = np.concatenate(lists).astype(np.int64) if len(lists) else np.empty(0, np.int64)
    return indptr, indices


def history_exclusion(histories):
    """Exclusion rows of a batch: the padding item, then the user's history, sorted.

    What full-sort ranking skips for a user, both in evaluation and when serving an export.

    Parameters
    ----------
    histories : sequence of 1-D integer arrays, one per user of the batch (any order;
        empty for a user whose history is not excluded).

    Returns
    -------
    (indptr int64 [B + 1], indices int64 [nnz]) ready for the top-k kernels.
    """
    pad = np.array([PADDING_ITEM], np.int64)
    return csr_from_lists([np.concatenate([pad, np.sort(np.asarray(h, np.int64))]) for h in histories])
