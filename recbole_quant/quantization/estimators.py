"""Gradient estimators for non-differentiable quantisers, as ``torch.autograd.Function``.

Every quantiser in this package is a hard, piecewise-constant map in the forward pass
(sign, rounding) whose true derivative is zero almost everywhere. The classes below pair
that hard forward with a surrogate backward; the lower-case functions are the public,
functional entry points (``torch.autograd.Function.apply`` takes no keyword arguments).

Conventions shared by all functions:

* ``sign`` maps ``x >= 0`` to ``+1`` and ``x < 0`` to ``-1``: ``torch.sign(0) = 0`` would be
  a third code value. NaN maps to ``-1``.
* Sign codes keep the input's floating dtype, so they can be multiplied with scales directly.

References: HashGNN (Tan et al., WWW 2020) for the identity STE and guided STE,
BiGeaR (Chen et al., KDD 2022) for the Gaussian approximation of the Dirac delta,
HQ-GNN (Chen et al., RecSys 2023) for the Hessian-aware GSTE.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch

__all__ = [
    "hard_sign",
    "sign_ste",
    "sign_gaussian",
    "gaussian_dirac",
    "round_half_up",
    "round_gste",
    "ScaledSignOutput",
    "scaled_sign",
    "tanh_relax",
    "guided_mask",
    "guided_mix",
    "SignSTEFunction",
    "GaussianSignFunction",
    "RoundGSTEFunction",
]

# Lower / upper clamp of the Gaussian Dirac approximation (BiGeaR code): the lower bound
# keeps a tiny gradient alive far from zero, the upper one caps large gamma.
_DIRAC_MIN = 1e-8
_DIRAC_MAX = 1.0


def hard_sign(x: torch.Tensor) -> torch.Tensor:
    """Binary sign with ``sign(0) = +1``; no gradient.

    Parameters
    ----------
    x : Tensor [...]
        Floating-point input.

    Returns
    -------
    Tensor [...]
        ``+1`` where ``x >= 0``, ``-1`` elsewhere, in ``x.dtype``.
    """
    # (x >= 0) * 2 - 1 avoids allocating two constant tensors as torch.where would.
    return (x >= 0).to(x.dtype) * 2 - 1


# ---------------------------------------------------------------------------------------
# Sign with a straight-through estimator
# ---------------------------------------------------------------------------------------
class SignSTEFunction(torch.autograd.Function):
    """``sign`` forward, identity backward (optionally zeroed where ``|x| > clip``)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, clip: Optional[float]) -> torch.Tensor:
        ctx.clip = clip
        if clip is not None:
            # Only the clipped variant needs x in backward; the plain STE stores nothing.
            ctx.save_for_backward(x)
        return hard_sign(x)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        if ctx.clip is None:
            return grad_output, None
        (x,) = ctx.saved_tensors
        inside = x.abs() <= ctx.clip
        return grad_output * inside.to(grad_output.dtype), None


def sign_ste(x: torch.Tensor, clip: Optional[float] = None) -> torch.Tensor:
    """Sign with a straight-through gradient.

    Parameters
    ----------
    x : Tensor [...]
        Floating-point input.
    clip : float or None
        If given, the gradient is zeroed where ``|x| > clip`` (the "hardtanh" STE);
        ``None`` passes the gradient unchanged everywhere (HashGNN's identity STE).

    Returns
    -------
    Tensor [...]
        ``+1`` / ``-1`` in ``x.dtype``; ``d out / d x`` is taken as 1 (or the clip mask).
    """
    if clip is not None and not clip > 0:
        raise ValueError(f"clip must be > 0 or None, got {clip!r}")
    return SignSTEFunction.apply(x, None if clip is None else float(clip))


# ---------------------------------------------------------------------------------------
# Sign with a Gaussian approximation of the Dirac delta (BiGeaR)
# ---------------------------------------------------------------------------------------
def gaussian_dirac(x: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """Surrogate derivative of ``sign``: ``clamp(gamma/sqrt(pi) * exp(-(gamma x)^2), 1e-8, 1)``.

    Parameters
    ----------
    x : Tensor [...]
    gamma : float
        Sharpness; larger gamma concentrates the gradient near ``x = 0``.

    Returns
    -------
    Tensor [...]
        The element-wise surrogate derivative, same dtype as ``x``.
    """
    density = (gamma / math.sqrt(math.pi)) * torch.exp(-((gamma * x) ** 2))
    return density.clamp(_DIRAC_MIN, _DIRAC_MAX)


class GaussianSignFunction(torch.autograd.Function):
    """``sign`` forward; backward multiplies by :func:`gaussian_dirac`."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, gamma: float) -> torch.Tensor:
        ctx.gamma = gamma
        ctx.save_for_backward(x)
        return hard_sign(x)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        (x,) = ctx.saved_tensors
        return grad_output * gaussian_dirac(x, ctx.gamma), None


def sign_gaussian(x: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """Sign whose backward uses the Gaussian Dirac approximation (BiGeaR's estimator).

    Parameters
    ----------
    x : Tensor [...]
    gamma : float, > 0

    Returns
    -------
    Tensor [...]
        ``+1`` / ``-1``; ``d out / d x`` is taken as ``gaussian_dirac(x, gamma)``.
    """
    if not gamma > 0:
        raise ValueError(f"gamma must be > 0, got {gamma!r}")
    return GaussianSignFunction.apply(x, float(gamma))


# ---------------------------------------------------------------------------------------
# Uniform rounding with the (Hessian-aware) straight-through estimator
# ---------------------------------------------------------------------------------------
def round_half_up(x_tilde: torch.Tensor, levels: int) -> torch.Tensor:
    """Integer level ``k = floor(x~ * levels + 0.5)`` of a normalised value, as a float tensor.

    Ties go *up* (unlike ``torch.round``'s half-to-even) so that with 1 bit and a symmetric
    range the value 0 lands on the upper level, i.e. ``sign(0) = +1`` as everywhere else.

    Parameters
    ----------
    x_tilde : Tensor [...]
        Normalised values in ``[0, 1]``.
    levels : int
        ``2**bits - 1``, the largest code.

    Returns
    -------
    Tensor [...]
        Codes ``0..levels`` stored in ``x_tilde.dtype``.
    """
    return torch.floor(x_tilde * levels + 0.5)


class RoundGSTEFunction(torch.autograd.Function):
    """``x^ = round(x~ * levels) / levels`` with the GSTE backward.

    The gradient ``g`` arriving at ``x^`` is passed to ``x~`` as
    ``g~ = g + delta * |g| * (x~ - x^)``. ``delta = 0`` returns ``g`` itself (not a
    recomputed copy), so it is bitwise the plain STE.
    """

    @staticmethod
    def forward(ctx, x_tilde: torch.Tensor, levels: int, delta: float) -> torch.Tensor:
        x_hat = round_half_up(x_tilde, levels) / levels
        ctx.delta = delta
        if delta != 0.0:
            # The rounding error is all the backward needs; store it instead of two tensors.
            ctx.save_for_backward(x_tilde - x_hat)
        return x_hat

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        if ctx.delta == 0.0:
            return grad_output, None, None
        (rounding_error,) = ctx.saved_tensors
        grad_tilde = grad_output + ctx.delta * grad_output.abs() * rounding_error
        return grad_tilde, None, None


def _check_levels(levels: int) -> int:
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
        raise ValueError(f"levels must be an int >= 1, got {levels!r}")
    return levels


def round_gste(x_tilde: torch.Tensor, levels: int, delta: float = 0.0) -> torch.Tensor:
    """Round normalised values to the grid ``{0, 1/levels, ..., 1}`` with the GSTE gradient.

    Parameters
    ----------
    x_tilde : Tensor [...]
        Normalised values, expected in ``[0, 1]`` (the caller clips).
    levels : int
        ``2**bits - 1``.
    delta : float, >= 0
        Hessian-aware scaling strength; 0 is the plain STE (bitwise).

    Returns
    -------
    Tensor [...]
        ``x^ = k / levels`` with ``k = floor(x~ * levels + 0.5)``.
    """
    delta = float(delta)
    if not (delta >= 0.0 and math.isfinite(delta)):
        raise ValueError(f"delta must be a finite float >= 0, got {delta!r}")
    return RoundGSTEFunction.apply(x_tilde, _check_levels(levels), delta)


# ---------------------------------------------------------------------------------------
# Scaled sign (L2Q-GCN / BiGeaR): alpha * sign(x), alpha = mean |x| per row
# ---------------------------------------------------------------------------------------
class ScaledSignOutput(NamedTuple):
    """Result of :func:`scaled_sign`.

    Attributes
    ----------
    value : Tensor [..., d]
        ``scale * sign``, differentiable w.r.t. the input.
    sign : Tensor [..., d]
        The ``+1`` / ``-1`` codes in the input dtype, differentiable through the estimator.
    scale : Tensor [..., 1]
        ``alpha = mean(|x|)`` over the last dimension (detached unless ``scale_grad``).
    """

    value: torch.Tensor
    sign: torch.Tensor
    scale: torch.Tensor


_SCALED_SIGN_ESTIMATORS = ("ste", "gaussian")


def scaled_sign(
    x: torch.Tensor,
    estimator: str = "ste",
    gamma: float = 1.0,
    scale_grad: bool = False,
) -> ScaledSignOutput:
    """Per-row scaled binarisation ``alpha * sign(x)``, ``alpha = mean(|x|, dim=-1)``.

    Parameters
    ----------
    x : Tensor [..., d]
        One row per node; the scale is computed over the last dimension.
    estimator : {'ste', 'gaussian'}
        ``'ste'``: identity through sign (base L2Q-GCN). ``'gaussian'``: BiGeaR's
        Gaussian Dirac approximation, ``d out / d x = alpha * gaussian_dirac(x, gamma)``.
    gamma : float
        Sharpness of the Gaussian estimator (ignored for ``'ste'``).
    scale_grad : bool
        If True, ``alpha`` is differentiable (adds ``sum_j g_j q_j * sign(x)/d``, with
        ``torch.abs``'s convention ``d|x|/dx = 0`` at 0); False (default, as in the
        BiGeaR code) treats ``alpha`` as a constant.

    Returns
    -------
    ScaledSignOutput
        ``(value [..., d], sign [..., d], scale [..., 1])``.
    """
    if estimator not in _SCALED_SIGN_ESTIMATORS:
        raise ValueError(f"estimator must be one of {_SCALED_SIGN_ESTIMATORS}, got {estimator!r}")
    if x.dim() < 1:
        raise ValueError("scaled_sign needs at least one dimension (the embedding dim)")
    scale = x.abs().mean(dim=-1, keepdim=True)
    if not scale_grad:
        scale = scale.detach()
    codes = sign_ste(x) if estimator == "ste" else sign_gaussian(x, gamma)
    return ScaledSignOutput(scale * codes, codes, scale)


# ---------------------------------------------------------------------------------------
# tanh-temperature relaxation
# ---------------------------------------------------------------------------------------
def tanh_relax(x: torch.Tensor, tau: float) -> torch.Tensor:
    """Smooth surrogate of sign: ``tanh(tau * x)``; tends to sign as ``tau -> inf``.

    Parameters
    ----------
    x : Tensor [...]
    tau : float, > 0
        Temperature (inverse width of the transition).

    Returns
    -------
    Tensor [...]
    """
    return torch.tanh(tau * x)


# ---------------------------------------------------------------------------------------
# HashGNN guided straight-through estimator
# ---------------------------------------------------------------------------------------
def guided_mask(
    n_rows: int,
    beta: float,
    generator: Optional[torch.Generator] = None,
    device: Optional[torch.device] = None,
) -> torch.Tensor:
    """Per-row Bernoulli(beta) choice between the hash code and the continuous vector.

    Draws ``r ~ U[0, 1)`` per row and returns ``r < beta``. HashGNN's code writes
    ``r <= beta``; the two differ only on the event ``r == beta`` (probability 0 for a
    continuous draw), but ``torch.rand`` can return exactly 0.0, where ``<=`` would pick a
    code at ``beta = 0``. With ``<``, ``beta = 0`` gives all continuous and ``beta = 1``
    all codes, exactly.

    Parameters
    ----------
    n_rows : int, >= 0
    beta : float in [0, 1]
        Probability of using the code.
    generator : torch.Generator, optional
        Source of randomness; the draw happens on the generator's device.
    device : torch.device, optional
        Where the mask is returned (defaults to the generator's device, else CPU).

    Returns
    -------
    Tensor [n_rows], bool
        True = use the code for that row.
    """
    if n_rows < 0:
        raise ValueError(f"n_rows must be >= 0, got {n_rows}")
    beta = float(beta)
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must lie in [0, 1], got {beta}")
    draw_device = generator.device if generator is not None else device
    uniform = torch.rand(n_rows, generator=generator, device=draw_device)
    mask = uniform < beta
    return mask if device is None else mask.to(device)


def guided_mix(code: torch.Tensor, cont: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Row-wise ``where(mask, code, cont)``.

    The caller draws one mask per training row and applies the *same* mask to the user
    and its positive item (and a fresh mask per negative). Gradients flow to ``code``
    on masked rows (to the continuous input through ``sign_ste``'s identity) and to
    ``cont`` on the other rows.

    Parameters
    ----------
    code : Tensor [n_rows, ...]
        Hash codes, e.g. ``sign_ste(z)``.
    cont : Tensor [n_rows, ...]
        Continuous vectors, e.g. ``z``.
    mask : Tensor [n_rows], bool
        From :func:`guided_mask`.

    Returns
    -------
    Tensor [n_rows, ...]
    """
    if code.shape != cont.shape:
        raise ValueError(f"code and cont shapes differ: {tuple(code.shape)} vs {tuple(cont.shape)}")
    if mask.dim() != 1 or code.dim() < 1 or mask.shape[0] != code.shape[0]:
        raise ValueError(
            f"mask must be 1-d with one entry per row: mask {tuple(mask.shape)}, rows {tuple(code.shape)}"
        )
    if mask.dtype != torch.bool:
        raise ValueError(f"mask must be bool, got {mask.dtype}")
    row_mask = mask.view(-1, *([1] * (code.dim() - 1)))
    return torch.where(row_mask, code, cont)
