"""Items stored in order of their score bias: tight block bounds for uniform codes.

A uniform-code score is ``float32((mult * K + bias_i) + c_u)`` with ``K = <k_u, k_i>`` an
integer and ``bias_i`` a per-item float. For HQ-GNN the bias is a function of the item's
code sum (``l_u delta_i S_i``), so it takes few distinct values (65 at 1 bit, d = 64). With
items stored sorted by bias (highest first), a block of ``BLOCK`` consecutive items almost
always shares one bias, and the fused top-k's first pass needs only the block's largest
``K``: an integer popcount maximum, as cheap as the Hamming path of sign codes, instead of a
per-item bias-adjusted proxy. With ``mult > 0`` the rounded score is monotone in ``K`` and in
the bias, so

    score(mult * K_max + bias_lo[b])  <=  best score of block b  <=  score(mult * K_max + bias_hi[b])

holds exactly (no rounding slack), with ``bias_lo`` / ``bias_hi`` the block's smallest and
largest bias; the two are equal for a one-bias block. Candidate blocks are then scored
exactly, and the heap breaks equal scores by the **original** item id (the stored order is no
longer the id order), so the tie rule of :mod:`.kernels` is unchanged.

Correct for any bias; fast when blocks are narrow in bias. The predictor uses it for uniform
codes with ``mult > 0`` (always the case for HQ-GNN: both ranges have ``u > l``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .blocks import BLOCK

__all__ = ["SortedItems", "sort_items"]


@dataclass(frozen=True)
class SortedItems:
    """A bias-sorted copy of the item table for the fused top-k.

    ``perm[p]`` is the original id of stored position ``p``; ``inverse`` maps back;
    ``item_words_t`` / ``bias`` are the word-major codes and biases in stored order;
    ``bias_lo[b]`` / ``bias_hi[b]`` bound the bias within stored block ``b``.
    """

    perm: np.ndarray
    inverse: np.ndarray
    item_words_t: np.ndarray
    bias: np.ndarray
    bias_lo: np.ndarray
    bias_hi: np.ndarray


def sort_items(item_words_t: np.ndarray, bias: np.ndarray) -> SortedItems:
    """Store items by decreasing bias (ties by id), with per-block bias bounds."""
    n_items = item_words_t.shape[1]
    perm = np.lexsort((np.arange(n_items), -bias)).astype(np.int64)  # bias desc, then id
    inverse = np.empty(n_items, np.int64)
    inverse[perm] = np.arange(n_items, dtype=np.int64)
    sorted_bias = np.ascontiguousarray(bias[perm])
    n_blocks = (n_items + BLOCK - 1) // BLOCK
    starts = np.arange(n_blocks) * BLOCK
    bias_lo = np.minimum.reduceat(sorted_bias, starts) if n_items else np.zeros(0)
    bias_hi = np.maximum.reduceat(sorted_bias, starts) if n_items else np.zeros(0)
    return SortedItems(perm, inverse, np.ascontiguousarray(item_words_t[:, perm]), sorted_bias,
                       np.ascontiguousarray(bias_lo), np.ascontiguousarray(bias_hi))
