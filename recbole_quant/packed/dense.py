"""Top-k over a dense score matrix, and the predictors that rank dense score rows.

:func:`dense_topk` is the one torch implementation of the tie rule of :mod:`.kernels`
(higher score first, then lower item id; slots without an item are ``-inf`` / ``-1``).
Every path that ranks a materialised ``[B, N]`` score matrix calls it: the predictor's
torch backend, the sparse collector of :mod:`recbole_quant.evaluation` (RecBole's standard
path) and the dense predictors below. :func:`.reference.reference_topk` is its specification.

Predictors with the :class:`.predictor.PackedPredictor` interface (``score`` / ``topk`` /
``storage``) whose scores are not a packed popcount alone:

* :class:`FloatPredictor` -- float dot products of continuous vectors (a model's
  unquantized counterpart);
* :class:`SoftRerankPredictor` -- Hamming top-C candidates re-ranked by continuous scores.
"""
from __future__ import annotations

import numpy as np
import torch

from .exclusion import batch_exclusion
from .limits import check_k
from .storage import storage_report

__all__ = ["dense_topk", "DenseScorePredictor", "FloatPredictor", "SoftRerankPredictor"]


def dense_topk(scores: torch.Tensor, k: int, indptr=None, indices=None):
    """Top-k of each row of ``scores`` by (higher score, then lower item id).

    Parameters
    ----------
    scores : float tensor [B, N] (any device). Overwritten where excluded: those entries
        become ``-inf``.
    k : int > 0 (may exceed N)
    indptr, indices : CSR rows of item ids to exclude, ``indptr [B + 1]`` (numpy; ids
        outside ``[0, N)`` are ignored), or None.

    Returns
    -------
    top_scores : [B, k] of ``scores``' dtype, top_ids : int64 [B, k], on ``scores``' device.
    A slot whose score is ``-inf`` (excluded, or past the last item) holds id ``-1``: an
    excluded item is never returned, and a ``-inf`` score counts as excluded.
    """
    k = check_k(k)
    n_rows, n_items = scores.shape
    if indptr is not None:
        rows = np.repeat(np.arange(n_rows), np.diff(indptr))
        cols = np.asarray(indices, dtype=np.int64)
        ok = (cols >= 0) & (cols < n_items)
        if ok.any():
            dev = scores.device
            scores[torch.from_numpy(rows[ok]).to(dev), torch.from_numpy(cols[ok]).to(dev)] = -torch.inf
    take = min(k, n_items)
    # torch.topk orders ties arbitrarily: find the k-th value, keep everything above it and
    # the lowest-id items equal to it, then sort that set stably (ids ascend within a value)
    kth = torch.topk(scores, take, dim=1).values[:, -1:]
    above = scores > kth
    tied = scores == kth
    need = take - above.sum(dim=1, keepdim=True)
    selected = above | (tied & (tied.cumsum(dim=1) <= need))
    cols = selected.nonzero(as_tuple=True)[1].view(n_rows, take)  # row-major: ids ascending
    picked = scores.gather(1, cols)
    values, order = torch.sort(picked, dim=1, descending=True, stable=True)
    ids = cols.gather(1, order)
    ids = torch.where(torch.isneginf(values), torch.full_like(ids, -1), ids)
    if take < k:
        pad = (n_rows, k - take)
        values = torch.cat([values, values.new_full(pad, -torch.inf)], dim=1)
        ids = torch.cat([ids, ids.new_full(pad, -1)], dim=1)
    return values, ids


class DenseScorePredictor:
    """The predictor interface (``score`` / ``topk`` / ``storage``) over dense score rows.

    A subclass computes a batch's score rows (:meth:`_scores`); ``topk`` excludes items on
    them and ranks them with :func:`dense_topk`.
    """

    def __init__(self, n_users, n_items):
        self.n_users, self.n_items = int(n_users), int(n_items)

    def _scores(self, users):
        """float32 [B, n_items] for ``users`` (CPU int64 [B])."""
        raise NotImplementedError

    def score(self, user_index):
        """A fresh float32 tensor [B, n_items] of scores for ``user_index`` [B]."""
        users = torch.as_tensor(user_index, dtype=torch.long).reshape(-1).cpu()
        return self._scores(users)

    def topk(self, user_index, k, exclude=None):
        """Top-k ``(scores float32 [B, k], item_ids int64 [B, k])``; ``exclude`` as
        :meth:`.predictor.PackedPredictor.topk`."""
        k = check_k(k)
        users = torch.as_tensor(user_index, dtype=torch.long).reshape(-1).cpu()
        indptr, indices = batch_exclusion(exclude, users.numpy(), self.n_users, self.n_items)
        return dense_topk(self._scores(users), k, indptr, indices)


class FloatPredictor(DenseScorePredictor):
    """Continuous ranking ``<z_u, z_i>`` (e.g. HashGNN with ``quantize: False``).

    Computed in float64 and rounded to float32: the products of float32 values are exact, so a
    user's row does not depend on the other users of the batch (``predict`` equals
    ``full_sort_predict`` bit for bit).

    Args:
        z_user (torch.Tensor): [n_users, d] float.
        z_item (torch.Tensor): [n_items, d] float.
    """

    def __init__(self, z_user, z_item):
        super().__init__(len(z_user), len(z_item))
        self.z_user = z_user.double()
        self.z_item_t = z_item.double().T.contiguous()

    def _scores(self, users):
        return (self.z_user[users] @ self.z_item_t).float()

    def storage(self):
        return None  # float32 embeddings, nothing quantized


class SoftRerankPredictor(DenseScorePredictor):
    """Hamming top-C candidates re-ranked by the continuous scores (HashGNN_s).

    Per user, the ``candidates`` best items by Hamming score (``PackedPredictor.topk`` over
    all items, ties to the lower id) get ``<z_u, z_i> + 3 * d``; every other item keeps its
    Hamming score ``<sign(z_u), sign(z_i)>``. Hamming scores lie in [-d, d] and continuous
    ones in (-d, d), so candidates (> 2d) always rank above non-candidates and are ordered by
    the continuous score. Exclusions (history) apply after this scoring, in ``topk`` as in
    RecBole's standard path, so a history item among the candidates uses up a candidate slot
    (as in the authors' evaluation, which searches the top-500 among all items).

    Args:
        packed (PackedPredictor): sign codes of ``z_user`` / ``z_item``.
        z_user (torch.Tensor): [n_users, d] continuous vectors, in (-1, 1).
        z_item (torch.Tensor): [n_items, d].
        candidates (int): C, candidates per user (at most ``n_items`` are used).
    """

    def __init__(self, packed, z_user, z_item, candidates):
        super().__init__(len(z_user), len(z_item))
        self.packed = packed
        self.z_user = z_user.double()
        self.z_item = z_item.double()
        self.candidates = min(int(candidates), self.n_items)
        self.offset = 3.0 * z_user.shape[1]

    def _scores(self, users):
        scores = self.packed.score(users)  # fresh float32 [B, n_items]
        _, ids = self.packed.topk(users, self.candidates)
        ids = torch.as_tensor(ids, dtype=torch.long)
        valid = ids >= 0
        ids = torch.where(valid, ids, torch.zeros_like(ids))
        cont = (self.z_user[users].unsqueeze(1) * self.z_item[ids]).sum(-1)  # [B, C] float64
        boosted = (cont + self.offset).float()
        scores.scatter_(1, ids, torch.where(valid, boosted, scores.gather(1, ids)))
        return scores

    def storage(self):
        d = self.z_user.shape[1]
        return storage_report(
            "sign", self.n_users, self.n_items, d, user_floats_per_node=d, item_floats_per_node=d
        )
