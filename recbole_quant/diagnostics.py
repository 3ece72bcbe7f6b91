"""Code-health diagnostics of the quantized models' user and item codes.

Once per training epoch (after its training, before its validation) :class:`CodeHealthMixin`
takes the codes the packed predictor scores (``QuantizedRecommender.integer_codes``: the
cached predictor is unpacked, no forward pass), drops row 0 (RecBole's padding id) and logs,
for the user codes and for the item codes:

* **imbalance** per code dimension: the share of the most frequent value minus ``1 / L``
  (``L`` = levels per dimension, ``2^bits``), as min / mean / max over the dimensions. For
  sign codes (HashGNN, L2Q-GCN, 1-bit HQ-GNN) that is ``|share of +1 - 0.5|``: 0 for a
  balanced bit, 0.5 for a constant one. For b-bit HQ-GNN codes it is the share of the most
  frequent level minus ``1 / 2^b``: 0 when no level is more frequent than a uniform spread
  would make it, ``1 - 1/2^b`` for a constant dimension. (A uniform quantizer of bell-shaped
  embeddings fills its middle levels more, so healthy b >= 2 codes sit well above 0: compare
  epochs, not models.)
* **mean |corr|**: the absolute Pearson correlation between two code dimensions, averaged over
  all pairs of dimensions; on b-bit codes the levels ``k`` are the values (on sign codes the
  0/1 bits). A pair with a constant dimension has no correlation and is left out (the
  constant dimension is reported on its own; NaN when fewer than two dimensions vary). Above
  :data:`MAX_CORRELATION_ROWS` rows a fixed-seed sample of that many rows is used. Noise
  floor: independent dimensions over ``m`` rows give about ``sqrt(2 / (pi m))`` (0.026 for
  ml-100k's 943 users, 0.006 for 16,384 rows).
* **duplicated**: the share of rows whose code is identical to at least one other row's code
  (every row, never sampled), and **largest group**: the share of rows holding the single most
  common code.
* **constant dims**: the dimensions whose value is the same on every row.

L2Q-GCN's codes (one sign code per layer) count as ``G * d`` dimensions.

A **collapse** -- more than :data:`COLLAPSE_SHARE` of the rows sharing one single code, or
more than :data:`COLLAPSE_CONSTANT_SHARE` of the dimensions constant -- is logged as a WARNING
naming the epoch and what collapsed (an INFO line during a full-precision stage, when the
codes are not trained yet: :func:`codes_in_training`)
(:func:`collapse_reasons`). The figures go to RecBole's logger (INFO) and, when the trainer has
a tensorboard writer, to ``code_health/<user|item>_<figure>`` scalars at the epoch index
(figures: :data:`FIGURES`). The config key ``code_health`` (default True,
``properties/overall.yaml``) turns it off. Why the warm-up exception and the share of
constant dimensions: after one ml-100k epoch with the defaults, HashGNN (guided STE still at
beta = 0, codes not yet trained) had 80.7% of its users on one code and 30 of 32 user bits
constant, and L2Q-GCN one constant user bit of 192 -- neither a collapse of trained codes.

Cost per call (unpacking both tables from a predictor + every figure of both; median of 5
calls, range over three benchmark runs) on random codes of Gowalla's size, 29,858 users x
40,981 items: 25-51 ms for 64 1-bit codes (HQ-GNN's default; 22-49 ms for 64 sign bits),
34-76 ms for 64 2-bit codes, 82-189 ms for 4 x 64 sign bits (L2Q-GCN-like) -- 1 torch
thread, on a busy 2-core machine (two trainings running, load 2.3-4.4), 2026-12-01. The codes
come from the predictor the trainer builds after each epoch anyway (no extra forward pass).
"""

import math
from logging import getLogger

import numpy as np
import torch

from recbole_quant.distributed import is_rank_zero
from recbole_quant.model.options import switch

__all__ = [
    "COLLAPSE_CONSTANT_SHARE",
    "COLLAPSE_SHARE",
    "MAX_CORRELATION_ROWS",
    "CodeHealthMixin",
    "FIGURES",
    "code_health_enabled",
    "codes_in_training",
    "code_stats",
    "collapse_reasons",
    "constant_dimensions",
    "duplicate_shares",
    "format_stats",
    "imbalance",
    "mean_abs_correlation",
]

COLLAPSE_SHARE = 0.5  # a collapse: more than this share of the rows hold one single code
# ... or more than this share of the dimensions is constant (a few constant bits of many are
# lost capacity, reported in the INFO line, not a collapse: L2Q-GCN on ml-100k had 1 of 192)
COLLAPSE_CONSTANT_SHARE = 0.25
MAX_CORRELATION_ROWS = 16384  # rows of the fixed-seed sample for the correlation
SAMPLE_SEED = 0

FIGURES = (
    "imbalance_min",
    "imbalance_mean",
    "imbalance_max",
    "mean_abs_corr",
    "duplicate_share",
    "top_code_share",
    "constant_dims",
)


def code_health_enabled(config):
    """Value of the ``code_health`` key; True when it is missing or ``~``.

    Args:
        config: a RecBole ``Config`` (missing keys read as None) or a dict, or None.
    """
    return switch(config, "code_health", "no per-epoch code diagnostics")


def _check(codes):
    """``codes`` as a CPU numpy array [rows, dimensions] of integers (bool -> uint8)."""
    if torch.is_tensor(codes):
        codes = codes.detach().cpu().numpy()
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise ValueError(f"codes must be [rows, dimensions], got shape {codes.shape}")
    if codes.dtype == np.bool_:
        return codes.view(np.uint8)
    if not np.issubdtype(codes.dtype, np.integer):
        raise ValueError(f"codes must be integer or bool, got {codes.dtype}")
    return codes


def imbalance(codes, levels=2):
    """Per dimension: share of its most frequent value minus ``1 / levels``.

    Args:
        codes (torch.Tensor): [n, D] bool or integer codes with values in ``[0, levels)``.
        levels (int): values a dimension can take (``2^bits``; 2 for sign codes).

    Returns:
        torch.Tensor: float64 [D]; for ``levels=2`` that is ``|share of ones - 0.5|``.
    """
    codes = _check(codes)
    n, dims = codes.shape
    if n and (codes.min() < 0 or codes.max() >= levels):
        raise ValueError(f"codes must lie in [0, {levels}), got [{codes.min()}, {codes.max()}]")
    if levels == 2:
        ones = codes.sum(axis=0, dtype=np.int64)
        top = np.maximum(ones, n - ones)
    else:  # numpy column sums: several times faster than torch's on [n, D] uint8
        top = np.zeros(dims, dtype=np.int64)
        for level in range(levels):
            np.maximum(top, (codes == level).sum(axis=0, dtype=np.int64), out=top)
    return torch.from_numpy(top / max(n, 1) - 1.0 / levels)


def constant_dimensions(codes):
    """Indices of the dimensions whose value is the same on every row (LongTensor)."""
    codes = _check(codes)
    if len(codes) == 0:
        return torch.zeros(0, dtype=torch.long)
    return torch.from_numpy(np.flatnonzero(codes.min(axis=0) == codes.max(axis=0)))


def mean_abs_correlation(codes, max_rows=MAX_CORRELATION_ROWS, seed=SAMPLE_SEED):
    """Mean absolute Pearson correlation over all pairs of non-constant dimensions.

    Args:
        codes (torch.Tensor): [n, D] bool or integer codes (the values are the numbers).
        max_rows (int): above this many rows, a sample of ``max_rows`` rows drawn with a
            ``torch.Generator`` seeded with ``seed`` (the same rows every call).

    Returns:
        float: in [0, 1]; NaN when fewer than two dimensions vary over the rows used.
    """
    codes = _check(codes)
    n = len(codes)
    if n > max_rows:
        rows = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:max_rows]
        codes = codes[np.sort(rows.numpy())]
    if n == 0:
        return math.nan
    keep = codes.min(axis=0) != codes.max(axis=0)  # constant columns: exact, on the integers
    if int(keep.sum()) < 2:
        return math.nan
    x = torch.from_numpy(codes[:, keep].astype(np.float32))  # ~1e-6 relative, 2x float64's speed
    x = x - x.mean(dim=0, keepdim=True)
    cov = (x.T @ x).double()
    std = cov.diagonal().sqrt()
    corr = cov / std[:, None] / std[None, :]
    upper = torch.triu_indices(len(std), len(std), offset=1)
    return float(corr[upper[0], upper[1]].abs().clamp(max=1.0).mean())


def _row_keys(codes):
    """One fixed-size byte string per row, equal exactly when the codes are equal."""
    low, high = codes.min(), codes.max()
    if low >= 0 and high <= 1:
        rows = np.packbits(codes.astype(np.uint8), axis=1)  # 8 dimensions a byte
    elif low >= 0 and high < 256:
        rows = codes.astype(np.uint8)
    else:
        rows = codes.astype(np.int64)
    rows = np.ascontiguousarray(rows)
    return rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()


def duplicate_shares(codes):
    """``(duplicate_share, top_code_share)`` over all rows (exact, no sampling).

    ``duplicate_share``: share of rows whose code equals at least one other row's code;
    ``top_code_share``: share of rows holding the most common code (``1 / n`` when all
    codes differ, 1.0 when every row has the same code).
    """
    codes = _check(codes)
    n = len(codes)
    if n == 0:
        return 0.0, 0.0
    _, inverse, counts = np.unique(_row_keys(codes), return_inverse=True, return_counts=True)
    duplicated = int((counts[inverse.ravel()] > 1).sum())
    return duplicated / n, int(counts.max()) / n


def code_stats(codes, levels=2, max_rows=MAX_CORRELATION_ROWS):
    """Every figure of one code table, as plain Python values.

    Returns:
        dict: ``rows``, ``dims``, ``levels``, ``imbalance_min`` / ``_mean`` / ``_max``,
        ``mean_abs_corr``, ``duplicate_share``, ``top_code_share``, ``constant_dims`` (a
        count) and ``constant`` (their indices, a list).
    """
    codes = _check(codes)
    n, dims = codes.shape
    imb = imbalance(codes, levels)
    constant = constant_dimensions(codes).tolist()
    duplicate, top = duplicate_shares(codes)
    return {
        "rows": n,
        "dims": dims,
        "levels": int(levels),
        "imbalance_min": float(imb.min()) if dims else math.nan,
        "imbalance_mean": float(imb.mean()) if dims else math.nan,
        "imbalance_max": float(imb.max()) if dims else math.nan,
        "mean_abs_corr": mean_abs_correlation(codes, max_rows=max_rows),
        "duplicate_share": duplicate,
        "top_code_share": top,
        "constant_dims": len(constant),
        "constant": constant,
    }


def collapse_reasons(stats, side="user", max_share=COLLAPSE_SHARE):
    """What collapsed in one table (:func:`code_stats`), as sentences; empty when healthy.

    The rule: more than ``max_share`` of the rows share one single code, or more than
    :data:`COLLAPSE_CONSTANT_SHARE` of the dimensions are constant over all rows. Tables of
    fewer than two rows never collapse.
    """
    n = stats["rows"]
    if n < 2:
        return []
    reasons = []
    if stats["top_code_share"] > max_share:
        reasons.append(
            f"{side} codes: {stats['top_code_share']:.1%} of the {n} {side}s share one single "
            f"code (more than {max_share:.0%})"
        )
    if stats["constant_dims"] > COLLAPSE_CONSTANT_SHARE * stats["dims"]:
        shown = ", ".join(map(str, stats["constant"][:8]))
        more = ", ..." if stats["constant_dims"] > 8 else ""
        reasons.append(
            f"{side} codes: {stats['constant_dims']} of {stats['dims']} dimensions are constant "
            f"over all {side}s (dims {shown}{more})"
        )
    return reasons


def format_stats(stats):
    """One line of :func:`code_stats` figures for the log."""
    return (
        f"{stats['rows']} x {stats['dims']} codes, {stats['levels']} levels: imbalance "
        f"min/mean/max {stats['imbalance_min']:.3f}/{stats['imbalance_mean']:.3f}/"
        f"{stats['imbalance_max']:.3f}, mean |corr| {stats['mean_abs_corr']:.3f}, duplicated "
        f"{stats['duplicate_share']:.1%} (largest group {stats['top_code_share']:.1%}), "
        f"constant dims {stats['constant_dims']}"
    )


class CodeHealthMixin:
    """Logs :func:`code_stats` of the user and item codes after every training epoch.

    Needs a model with ``integer_codes()`` (:class:`QuantizedRecommender`); a model without
    codes (HashGNN ``quantize: False`` returns None) is skipped. Rank 0 only. The last
    figures are kept in ``code_health`` (``{"epoch": e, "user": stats, "item": stats}``).
    """

    collapse_share = COLLAPSE_SHARE

    def __init__(self, config, model):
        super().__init__(config, model)
        self._code_health_on = (
            code_health_enabled(config)
            and hasattr(model, "integer_codes")
            and is_rank_zero(config)
        )
        self.code_health = None

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        loss = super()._train_epoch(train_data, epoch_idx, loss_func, show_progress)
        if self._code_health_on:
            self._log_code_health(epoch_idx)
        return loss

    @torch.no_grad()
    def _log_code_health(self, epoch_idx):
        self.model.eval()  # the predictor the validation uses (already built by the guard)
        codes = self.model.integer_codes()
        if codes is None:
            return
        levels = 2 ** int(getattr(self.model, "code_width", 1))
        logger = getLogger()
        result = {"epoch": epoch_idx}
        reasons = []
        for side, table in zip(("user", "item"), codes):
            stats = code_stats(table[1:], levels)  # row 0: RecBole's padding id
            result[side] = stats
            logger.info(f"epoch {epoch_idx} code health, {side}s: {format_stats(stats)}")
            reasons += collapse_reasons(stats, side, self.collapse_share)
            writer = getattr(self, "tensorboard", None)
            if writer is not None:
                for name in FIGURES:
                    writer.add_scalar(f"code_health/{side}_{name}", stats[name], epoch_idx)
        self.code_health = result
        if reasons and codes_in_training(self.model, epoch_idx):
            logger.warning(f"Code collapse at epoch {epoch_idx}: " + "; ".join(reasons) + ".")
        elif reasons:  # a full-precision warm-up: the codes are not trained yet
            logger.info(f"epoch {epoch_idx}: codes not trained yet (full-precision stage): "
                        + "; ".join(reasons) + ".")


def codes_in_training(model, epoch_idx):
    """Whether the epoch trained through the codes: after a full-precision warm-up
    (``quantized_from_epoch``) and, for HashGNN, once its guided STE uses codes (beta > 0).
    Before that the codes are a by-product, and their collapse is no warning."""
    if epoch_idx < int(getattr(model, "quantized_from_epoch", 0) or 0):
        return False
    beta = getattr(model, "beta", None)
    return beta is None or float(beta) > 0
