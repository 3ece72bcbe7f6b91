"""Fast exact CPU propagation for graph recommenders (CSR SpMM in numba, with autograd).

* :mod:`~recbole_quant.sparse.kernels`: the numba kernels;
* :mod:`~recbole_quant.sparse.propagation`: :class:`CSRAdjacency`, :func:`sparse_matmul`
  (``torch.sparse.mm`` with the same result, faster on CPU) and :func:`lightgcn_layer_mean`
  (LightGCN's whole propagation and layer mean as one fused op); for training,
  :func:`lightgcn_rows` (the layer mean) and :func:`lightgcn_layer_rows` (every layer) at a
  batch's rows only;
* :mod:`~recbole_quant.sparse.baselines`: :func:`~recbole_quant.sparse.baselines.apply_fast_propagation`
  switches it into RecBole's own LightGCN and NGCF (the runner calls it after building a model).

The config key ``fast_propagation`` (default true) turns it on and off for every model:
:func:`fast_propagation_enabled` is the one place that reads it.
"""
from recbole_quant.model.options import switch
from recbole_quant.sparse.propagation import (
    CSRAdjacency,
    lightgcn_layer_mean,
    lightgcn_layer_rows,
    lightgcn_rows,
    sparse_matmul,
)

__all__ = [
    "CSRAdjacency",
    "sparse_matmul",
    "lightgcn_layer_mean",
    "lightgcn_rows",
    "lightgcn_layer_rows",
    "fast_propagation_enabled",
]


def fast_propagation_enabled(config):
    """Value of the ``fast_propagation`` key; True when it is missing or ``~``.

    Args:
        config: a RecBole ``Config`` (missing keys read as None) or a dict, or None.
    """
    return switch(config, "fast_propagation", "torch.sparse.mm for the graph propagation")
