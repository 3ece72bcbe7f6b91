"""Bit packing of sign codes and of unsigned integer codes (bit planes).

Layout
------
A code of ``d`` coordinates is stored in ``W = ceil(d / 64)`` little-endian
``uint64`` words: coordinate ``j`` is bit ``j % 64`` of word ``j // 64``.
Tail bits (``j >= d`` in the last word) are always zero, so XOR and AND of two
packed codes never count them.

* Sign codes: bit 1 means +1, bit 0 means -1 (``x >= 0`` or ``True`` -> +1).
  ``[N, d] -> [N, W]``; multi-group codes ``[N, G, d] -> [N, G, W]`` (e.g.
  L2Q-GCN keeps one d-bit code per layer).
* Unsigned ``b``-bit codes ``k`` in ``[0, 2^b)``: one bit plane per bit,
  plane ``p`` holds bit ``p`` of every coordinate: ``[N, d] -> [N, b, W]``.

The kernels want the item table *word-major* (``[L, N]``, one row per word
position) so that the inner loop over items reads contiguous memory and
vectorises; :func:`word_major` makes that layout.
"""
from __future__ import annotations

import numpy as np

from .limits import check_bits

__all__ = [
    "n_words",
    "pack_signs",
    "unpack_signs",
    "pack_planes",
    "unpack_planes",
    "word_major",
]


def n_words(d: int) -> int:
    """Number of 64-bit words holding ``d`` bits (``ceil(d / 64)``)."""
    return (int(d) + 63) // 64


def _to_numpy(x) -> np.ndarray:
    # Accept torch tensors (any device) without importing torch here.
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _pack_bits(bits: np.ndarray) -> np.ndarray:
    """Pack a boolean array ``[..., d]`` into ``uint64 [..., W]`` (zero tail)."""
    d = bits.shape[-1]
    w = n_words(d)
    # Little-endian bit order inside each byte, bytes little-endian inside the
    # word: bit j of the code is bit j % 64 of word j // 64.
    packed = np.packbits(bits, axis=-1, bitorder="little")  # [..., ceil(d/8)]
    pad = w * 8 - packed.shape[-1]
    if pad:
        widths = [(0, 0)] * (packed.ndim - 1) + [(0, pad)]
        packed = np.pad(packed, widths)
    packed = np.ascontiguousarray(packed)
    return packed.view("<u8").astype(np.uint64, copy=False).reshape(
        bits.shape[:-1] + (w,)
    )


def _unpack_bits(words: np.ndarray, d: int) -> np.ndarray:
    """Inverse of :func:`_pack_bits`: ``uint64 [..., W] -> uint8 {0,1} [..., d]``."""
    words = np.ascontiguousarray(_to_numpy(words))
    if words.dtype != np.uint64:
        raise ValueError(f"packed words must be uint64, got {words.dtype}")
    w = words.shape[-1]
    if not 1 <= d <= 64 * w:
        raise ValueError(f"d={d} does not fit in {w} words of 64 bits")
    as_bytes = words.astype("<u8", copy=False).view(np.uint8)
    return np.unpackbits(as_bytes, axis=-1, count=d, bitorder="little")


def pack_signs(x) -> np.ndarray:
    """Pack sign codes into 64-bit words.

    Parameters
    ----------
    x : array_like or torch.Tensor, shape [N, d] or [N, G, d]
        Any float, integer or bool values. ``x >= 0`` (or ``True``) becomes
        bit 1 (+1), everything else bit 0 (-1). NaN is rejected.

    Returns
    -------
    np.ndarray, uint64, shape [N, W] or [N, G, W]
        ``W = ceil(d / 64)``; tail bits are zero.
    """
    x = _to_numpy(x)
    if x.ndim not in (2, 3):
        raise ValueError(f"sign codes must be [N, d] or [N, G, d], got shape {x.shape}")
    if x.shape[-1] < 1:
        raise ValueError("sign codes need d >= 1")
    if x.dtype == np.bool_:
        bits = x
    elif np.issubdtype(x.dtype, np.number):
        if np.issubdtype(x.dtype, np.floating) and np.isnan(x).any():
            raise ValueError("sign codes contain NaN")
        bits = x >= 0
    else:
        raise ValueError(f"unsupported dtype for sign codes: {x.dtype}")
    return _pack_bits(bits)


def unpack_signs(words, d: int) -> np.ndarray:
    """Unpack sign codes.

    Parameters
    ----------
    words : np.ndarray, uint64, shape [N, W] or [N, G, W]
    d : int
        Code length (``1 <= d <= 64 * W``).

    Returns
    -------
    np.ndarray, int8, shape [N, d] or [N, G, d], values in {-1, +1}.
    """
    bits = _unpack_bits(words, d)
    return (bits.astype(np.int8) * 2 - 1).astype(np.int8)


def pack_planes(k, bits: int) -> np.ndarray:
    """Pack unsigned ``bits``-bit integer codes into bit planes.

    Parameters
    ----------
    k : array_like or torch.Tensor, shape [N, d]
        Integer codes in ``[0, 2**bits)``; float input is accepted when every
        value is integral (quantisers often return rounded floats).
    bits : int
        1..8.

    Returns
    -------
    np.ndarray, uint64, shape [N, bits, W]
        Plane ``p`` holds bit ``p`` of every coordinate; tail bits are zero.
    """
    bits = check_bits(bits)
    k = _to_numpy(k)
    if k.ndim != 2:
        raise ValueError(f"integer codes must be [N, d], got shape {k.shape}")
    if k.shape[1] < 1:
        raise ValueError("integer codes need d >= 1")
    if k.dtype == np.bool_:
        k = k.astype(np.int64)
    elif np.issubdtype(k.dtype, np.floating):
        if not np.isfinite(k).all() or (k != np.round(k)).any():
            raise ValueError("float codes must hold integral values")
        k = k.astype(np.int64)
    elif not np.issubdtype(k.dtype, np.integer):
        raise ValueError(f"unsupported dtype for integer codes: {k.dtype}")
    if k.size and (k.min() < 0 or k.max() >= (1 << bits)):
        raise ValueError(
            f"codes must lie in [0, {1 << bits}) for bits={bits}, "
            f"got range [{k.min()}, {k.max()}]"
        )
    k = k.astype(np.int64, copy=False)
    planes = [_pack_bits(((k >> p) & 1).astype(bool)) for p in range(bits)]
    return np.stack(planes, axis=1)  # [N, bits, W]


def unpack_planes(planes, d: int) -> np.ndarray:
    """Unpack bit planes.

    Parameters
    ----------
    planes : np.ndarray, uint64, shape [N, bits, W]
    d : int

    Returns
    -------
    np.ndarray, int64, shape [N, d]: ``sum_p bit_p << p``.
    """
    planes = _to_numpy(planes)
    if planes.ndim != 3:
        raise ValueError(f"planes must be [N, bits, W], got shape {planes.shape}")
    check_bits(planes.shape[1])
    bits = _unpack_bits(planes, d).astype(np.int64)  # [N, bits, d]
    weights = (np.int64(1) << np.arange(planes.shape[1], dtype=np.int64))[None, :, None]
    return (bits * weights).sum(axis=1)


def word_major(words) -> np.ndarray:
    """Reorder a packed table ``[N, ...]`` into word-major ``uint64 [L, N]``.

    ``L`` is the product of the trailing dimensions (``G * W`` for sign codes,
    ``bits * W`` for planes). Row ``l`` holds word ``l`` of every code, so a
    kernel scanning items reads one contiguous row per word position.
    """
    words = _to_numpy(words)
    if words.dtype != np.uint64:
        raise ValueError(f"packed words must be uint64, got {words.dtype}")
    n = words.shape[0]
    return np.ascontiguousarray(words.reshape(n, -1).T)
