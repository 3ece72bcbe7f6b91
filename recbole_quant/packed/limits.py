"""What the packed layer accepts: code widths and ``k``, each checked in one place.

Every module that takes a bit width (bit packing, the predictor, the quantizers, the
models' options) or a ``k`` (the top-k kernels, the dense top-k, the reference) calls these.
"""
from __future__ import annotations

import numbers

__all__ = ["MIN_BITS", "MAX_BITS", "check_bits", "check_k"]

# Integer codes are stored as bit planes and scored plane pair by plane pair; 8 bits keeps
# every plane dot product inside the kernels' int64 / float64-exact range.
MIN_BITS = 1
MAX_BITS = 8


def _is_int(value) -> bool:
    # Python and NumPy integers; bool is an Integral too, but True is no width and no k
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_bits(bits, name: str = "bits") -> int:
    """``bits`` as an int in ``MIN_BITS..MAX_BITS``; ``ValueError`` naming ``name`` otherwise."""
    if not _is_int(bits) or not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"{name} must be an integer in {MIN_BITS}..{MAX_BITS}, got {bits!r}")
    return int(bits)


def check_k(k) -> int:
    """``k`` (items per user) as a positive int; ``ValueError`` otherwise."""
    if not _is_int(k) or k <= 0:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)
