"""Exact scoring and top-k with torch matmuls (the CUDA path; also runs on CPU).

There is no popcount in torch, so codes are kept unpacked as small integers
in floating point and multiplied with a dense matmul. That is exact whenever
every partial sum is an integer the accumulator represents exactly:

* ±1 codes: partial sums are bounded by ``d``; float16 (CUDA only, d <= 2048,
  exact even with fp16 accumulation) or float32 (d <= 2^24).
* unsigned codes: partial sums are bounded by ``K_max = d (2^bu - 1)(2^bi - 1)``;
  float32 when ``K_max < 2^24``, float64 otherwise. TF32 (if enabled) keeps
  these integers exact as well: they have at most 8 significant bits.

The integer results are then turned into float32 scores with exactly the
operations and order of :mod:`.kernels`, in float64::

    score = float32((mult * raw + bias[i]) + c[u]) + 0.0

so this path returns the same bits as the numba kernels. Its top-k ranks that
score matrix with :func:`.dense.dense_topk` (the kernels' tie rule).
"""
from __future__ import annotations

import numpy as np
import torch

from .bitpack import unpack_planes, unpack_signs

__all__ = [
    "matmul_dtype",
    "signs_to_device",
    "planes_to_device",
    "sign_scores",
    "plane_scores",
]

_F32_EXACT = 2**24
_F16_EXACT = 2048


def matmul_dtype(max_abs_sum: int, device: torch.device, allow_half: bool = False) -> torch.dtype:
    """Smallest float dtype whose matmul is exact for integer sums up to ``max_abs_sum``."""
    if allow_half and device.type == "cuda" and max_abs_sum <= _F16_EXACT:
        return torch.float16
    if max_abs_sum < _F32_EXACT:
        return torch.float32
    return torch.float64


def signs_to_device(words: np.ndarray, d: int, dtype: torch.dtype, device) -> torch.Tensor:
    """Packed sign words ``uint64 [n, G, W]`` -> ±1 tensor ``[n, G, d]`` of ``dtype``."""
    return torch.from_numpy(unpack_signs(words, d)).to(device=device, dtype=dtype)


def planes_to_device(planes: np.ndarray, d: int, dtype: torch.dtype, device) -> torch.Tensor:
    """Bit planes ``uint64 [n, b, W]`` -> integer codes ``[n, d]`` of ``dtype``."""
    return torch.from_numpy(unpack_planes(planes, d)).to(device=device, dtype=dtype)


def _affine(raw: torch.Tensor, mult: float, bias: torch.Tensor, ucons: torch.Tensor) -> torch.Tensor:
    # Separate ops (no addcmul / fused multiply-add) to match the numba kernels bit for bit.
    v = raw * mult
    v = v + bias[None, :]
    v = v + ucons[:, None]
    return v.to(torch.float32) + 0.0


def sign_scores(qu: torch.Tensor, qi: torch.Tensor, su, si, mult: float,
                bias: torch.Tensor, ucons: torch.Tensor) -> torch.Tensor:
    """Sign scores from ±1 codes.

    Parameters
    ----------
    qu : [B, G, d] ±1, qi : [N, G, d] ±1 (any exact float dtype)
    su : float64 [B, G] or None; si : float64 [N, G] or None (both or neither)
    mult : float; bias : float64 [N]; ucons : float64 [B]

    Returns
    -------
    torch.Tensor float32 [B, N]
    """
    n_users, n_groups, _ = qu.shape
    if su is None:
        raw = (qu.reshape(n_users, -1) @ qi.reshape(qi.shape[0], -1).T).to(torch.float64)
    else:
        raw = torch.zeros(n_users, qi.shape[0], dtype=torch.float64, device=qu.device)
        for g in range(n_groups):  # groups in ascending order, like the kernels
            dot = (qu[:, g] @ qi[:, g].T).to(torch.float64)
            raw = raw + (su[:, g, None] * si[None, :, g]) * dot
    return _affine(raw, mult, bias, ucons)


def plane_scores(ku: torch.Tensor, ki: torch.Tensor, mult: float, bias: torch.Tensor,
                 ucons: torch.Tensor) -> torch.Tensor:
    """Scores from unsigned integer codes ``ku [B, d]``, ``ki [N, d]``: float32 [B, N]."""
    raw = (ku @ ki.T).to(torch.float64)
    return _affine(raw, mult, bias, ucons)
