"""Fast full-sort evaluation feeding RecBole's own metric classes.

RecBole's ``Collector`` builds, per evaluation batch, a dense ``[B, n_items]`` positives matrix
just to look up which of the top-k ids are positives; on Gowalla that matrix costs more
than the scores themselves (``docs/results/eval.md`` measures LightGCN with RecBole's
collector and with the sparse one, rows (a) and (b)).
Two pieces here:

* :class:`SparseCollector` -- RecBole's Collector with the ``rec.topk`` / ``rec.items``
  resources built sparsely from the top-k ids and the positive pairs (no dense matrix). The
  result tensor is exactly RecBole's, so Recall, NDCG, Hit, Precision, MRR, MAP... are computed
  by RecBole's unchanged metric code. With ``deterministic_ties=True`` the top-k is
  :func:`recbole_quant.packed.dense_topk` (the packed predictor's tie rule: higher score
  first, then lower item id) instead of ``torch.topk``'s implementation-defined order.
* :class:`PackedEvalMixin` -- for the plugin's quantized models: per batch of users, the
  predictor's fused top-k (scores never materialised, history and padding item excluded in the
  kernel) gives the top-k ids, which go to :meth:`SparseCollector.collect_topk`.
  ``eval_path: standard`` forces RecBole's path (scores from ``full_sort_predict``, then the
  collector); both give identical metrics (``tests/test_fast_eval.py``).
"""

import numpy as np
import torch
from recbole.data.dataloader import FullSortEvalDataLoader
from recbole.evaluator import Collector
from recbole.evaluator.register import metric_information
from recbole.utils import EvaluatorType

from recbole_quant.packed.dense import dense_topk
from recbole_quant.packed.exclusion import csr_from_lists, history_exclusion

# Resources the sparse path can produce; anything else (e.g. GAUC's rec.meanrank) needs
# the whole score matrix, and the collector falls back to RecBole's code.
TOPK_RESOURCES = ("rec.topk", "rec.items")


def topk_hits(topk_idx, positive_u, positive_i, n_items):
    """RecBole's ``rec.topk`` rows without a dense positives matrix.

    Args:
        topk_idx (torch.Tensor): [B, k] int64 item ids (-1 = no item).
        positive_u (torch.Tensor): [P] batch row of each positive pair.
        positive_i (torch.Tensor): [P] item id of each positive pair.
        n_items (int): number of item ids (for the pair keys).

    Returns:
        torch.Tensor: [B, k + 1] int: 1 where the top-k id is a positive, then the number of
        positives of the row (what ``Collector.eval_batch_collect`` stores).
    """
    batch = len(topk_idx)
    pos_keys = positive_u.long() * n_items + positive_i.long()
    rows = torch.arange(batch, device=topk_idx.device).unsqueeze(1)
    top_keys = rows * n_items + topk_idx
    hits = torch.isin(top_keys, pos_keys) & (topk_idx >= 0)
    pos_len = torch.bincount(positive_u.long(), minlength=batch).view(batch, 1)
    return torch.cat([hits.int(), pos_len.int()], dim=1)


class SparseCollector(Collector):
    """RecBole's Collector with sparse top-k resources (see module docstring)."""

    def __init__(self, config, deterministic_ties=False):
        super().__init__(config)
        self.deterministic_ties = deterministic_ties

    def sparse_supported(self):
        # RecBole's Register sets one attribute per resource its metrics need
        needed = {info for metric in self.register.metrics for info in metric_information[metric]}
        return all(key in TOPK_RESOURCES or key.startswith("data.num") or
                   key.startswith("data.count") for key in needed)

    def collect_topk(self, topk_idx, positive_u, positive_i, n_items):
        """Store the top-k ids of one batch (already ranked) as RecBole's resources."""
        if self.register.need("rec.items"):
            self.data_struct.update_tensor("rec.items", topk_idx)
        if self.register.need("rec.topk"):
            self.data_struct.update_tensor(
                "rec.topk", topk_hits(topk_idx, positive_u, positive_i, n_items)
            )

    def eval_batch_collect(self, scores_tensor, interaction, positive_u, positive_i):
        # Both full-sort and sampled evaluation hand RecBole's collector [B, n_items] scores
        # (sampled ones padded with -inf). Not ``self.full``: RecBole 1.2.1 computes it as
        # ``"full" in eval_args["mode"]``, which is False for the dict form {valid:, test:}.
        if not self.sparse_supported() or scores_tensor.dim() != 2:
            return super().eval_batch_collect(scores_tensor, interaction, positive_u, positive_i)
        k = max(self.topk)
        if self.deterministic_ties:
            _, topk_idx = dense_topk(scores_tensor, k)
        else:
            _, topk_idx = torch.topk(scores_tensor, k, dim=-1)
        self.collect_topk(topk_idx, positive_u, positive_i, scores_tensor.shape[1])


class PackedEvalMixin:
    """Trainer mixin: full-sort evaluation of quantized models by the fused packed top-k."""

    def packed_eval_enabled(self, eval_data):
        path = self.config["eval_path"]
        return (
            path == "auto"
            and isinstance(eval_data, FullSortEvalDataLoader)
            and self.config["eval_type"] == EvaluatorType.RANKING
            and hasattr(self.model, "predictor")
            and isinstance(self.eval_collector, SparseCollector)
            and self.eval_collector.sparse_supported()
        )

    @torch.no_grad()
    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if not eval_data or load_best_model or not self.packed_eval_enabled(eval_data):
            return super().evaluate(eval_data, load_best_model, model_file, show_progress)
        self.model.eval()
        predictor = self.model.predictor
        n_items = eval_data._dataset.item_num
        k = max(self.config["topk"])
        users, history, positives = user_lists(eval_data)
        step = eval_data.step  # users per batch, as RecBole's loader would batch them
        self.eval_collector.data_collect(eval_data)
        for start in range(0, len(users), step):
            stop = min(start + step, len(users))
            exclude = history.rows(start, stop)
            _, topk_idx = predictor.topk(users[start:stop], k, exclude=exclude)
            pos_indptr, pos_items = positives.rows(start, stop)
            positive_u = torch.from_numpy(
                np.repeat(np.arange(stop - start), np.diff(pos_indptr))
            )
            self.eval_collector.collect_topk(
                topk_idx, positive_u, torch.from_numpy(pos_items), n_items
            )
        struct = self.eval_collector.get_data_struct()
        return self.evaluator.evaluate(struct)


class CSRRows:
    """Rows of a CSR list (``indptr``, ``indices``), sliced by contiguous row ranges."""

    def __init__(self, indptr, indices):
        self.indptr, self.indices = indptr, indices

    def rows(self, start, stop):
        """``(indptr, indices)`` of rows ``start .. stop - 1``, indptr starting at 0."""
        lo, hi = self.indptr[start], self.indptr[stop]
        return self.indptr[start : stop + 1] - lo, self.indices[lo:hi]


def user_lists(eval_data):
    """The evaluated users, their excluded items and their positives, as CSR arrays.

    Built once per full-sort loader from the lists RecBole's ``FullSortEvalDataLoader``
    keeps per user (the loader's own per-batch collate concatenates small tensors user by
    user; here a batch is two array slices). Excluded items of a row:
    :func:`recbole_quant.packed.exclusion.history_exclusion` (padding item 0, then the
    user's history, sorted as the fused top-k expects).

    Returns:
        tuple: ``users`` (np.ndarray int64 [U], in the loader's order), ``history`` and
        ``positives`` (:class:`CSRRows` over those users).
    """
    cached = getattr(eval_data, "_recbole_quant_user_lists", None)
    if cached is not None:
        return cached
    users = eval_data.uid_list.numpy().astype(np.int64)
    history = history_exclusion([eval_data.uid2history_item[u].numpy() for u in users])
    positives = csr_from_lists([eval_data.uid2positive_item[u].numpy() for u in users])
    cached = (users, CSRRows(*history), CSRRows(*positives))
    eval_data._recbole_quant_user_lists = cached
    return cached
