"""Bit-packed codes: packing, exact popcount kernels, fused top-k, predictor, storage.

Layers, bottom up (a kernel never knows about RecBole):

* :mod:`.bitpack` - sign codes and bit planes <-> uint64 words
* :mod:`.bitops` - popcount and float bit casts for numba
* :mod:`.kernels` - numba score / fused top-k kernels (tie rule documented there);
  :mod:`.blocks`, :mod:`.passes`, :mod:`.heap` their pieces, :mod:`.sorted_items` the
  bias-sorted item copy of 1-bit uniform codes
* :mod:`.torch_kernels` - the exact torch matmul path (CUDA)
* :mod:`.limits` - the accepted code widths (1..8 bits) and ``k``, checked once
* :mod:`.exclusion`, :mod:`.threads` - CSR exclusion lists (padding item + history), thread pool
* :mod:`.dense` - :func:`dense_topk`, the tie rule on a score matrix, and the predictors
  over dense score rows (:class:`FloatPredictor`, :class:`SoftRerankPredictor`)
* :mod:`.predictor` - :class:`PackedPredictor`, what the models call
* :mod:`.storage` - :class:`StorageReport`
* :mod:`.reference` - the reference top-k (specification of the tie rule)

Every predictor the models build lives here: they answer ``score`` / ``topk`` /
``storage`` alike, so the evaluation and the export never depend on the model kind.
"""
from .bitpack import pack_planes, pack_signs, unpack_planes, unpack_signs, word_major
from .dense import FloatPredictor, SoftRerankPredictor, dense_topk
from .kernels import plane_dot, plane_scores, plane_topk, sign_dot, sign_scores, sign_topk
from .predictor import PackedPredictor
from .reference import reference_topk
from .storage import StorageReport, storage_report

__all__ = [
    # predictors and top-k
    "PackedPredictor", "FloatPredictor", "SoftRerankPredictor", "dense_topk", "reference_topk",
    "StorageReport", "storage_report",
    # bit packing
    "pack_signs", "unpack_signs", "pack_planes", "unpack_planes", "word_major",
    # kernels
    "sign_dot", "sign_scores", "sign_topk", "plane_dot", "plane_scores", "plane_topk",
]
