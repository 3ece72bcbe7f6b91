"""Quantiser layers: small ``nn.Module`` wrappers around :mod:`.estimators`.

* :class:`UniformQuantizer` - b-bit uniform quantiser with a learnable range and the
  Hessian-aware GSTE backward (HQ-GNN, see ``docs/models.md``).
* :class:`ScaledSign` - ``alpha * sign(x)`` per row with the STE or Gaussian estimator
  (L2Q-GCN / L2Q-GCN-anl, see ``docs/models.md``).
* :class:`TanhSign` - ``tanh(tau x)`` in training, hard sign in eval (the
  ``tanh_temperature`` annealing reading of L2Q-GCN-anl).
"""

from __future__ import annotations

import math
from typing import Optional, Tuple, Union

import torch
from torch import nn

from recbole_quant.packed.limits import check_bits

from .estimators import (
    ScaledSignOutput,
    hard_sign,
    round_gste,
    round_half_up,
    scaled_sign,
    tanh_relax,
)
from .schedules import TemperatureSchedule

__all__ = ["UniformQuantizer", "ScaledSign", "TanhSign", "normalize_to_unit"]


def normalize_to_unit(e: torch.Tensor, lower: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
    """``x~ = clip((e - lower) / width, 0, 1)``: the differentiable part of the quantiser.

    Parameters
    ----------
    e : Tensor [...]
    lower : Tensor [] (or broadcastable)
    width : Tensor [] (or broadcastable), > 0

    Returns
    -------
    Tensor [...]
        Values in ``[0, 1]``; the gradient is 0 where ``e`` lies outside ``[lower, lower+width]``.
    """
    return ((e - lower) / width).clamp(0.0, 1.0)


class UniformQuantizer(nn.Module):
    """b-bit uniform quantiser with a learnable range ``[l, u]`` and the GSTE backward.

    Forward (HQ-GNN as reconstructed in ``docs/models.md``)::

        x~ = clip((e - l) / (u - l), 0, 1)
        k  = floor(x~ (2^b - 1) + 0.5)          # ties up, so b=1, l=-u maps 0 -> +u
        x^ = k / (2^b - 1)
        e^ = l + (u - l) x^

    Backward: the rounding passes ``g~ = g + delta |g| (x~ - x^)`` (``delta = 0``: plain
    STE, bitwise); everything else is ordinary autograd through
    ``e^ = l + w x^(x~(e, l, u))``, ``w = u - l``. Per element, with ``G = dL/de^``,
    ``t = (e - l) / w``, ``in = [0 <= t <= 1]`` and ``g~`` computed from ``g = w G``::

        dL/de = in * g~ / w
        dL/du = G x^       - in * g~ t / w
        dL/dl = G (1 - x^) - in * g~ (1 - t) / w

    (summed over elements for ``l``, ``u``). With the STE inside the range this is
    ``dL/du = G (x^ - x~)``, ``dL/dl = G (x~ - x^)`` (the quantisation error); above the
    range ``e^ = u`` (``dL/du = G``), below it ``e^ = l`` (``dL/dl = G``). The width used
    everywhere is ``max(u - l, min_width)``, so a collapsed range never divides by zero
    (``u - l`` then gets no gradient through the width).

    Parameters
    ----------
    bits : int in 1..8
    init_std : float
        On the first forward in training mode (if the range was never initialised or
        loaded) ``l, u = mean -/+ init_std * std`` of that input (population std, all
        elements).
    min_width : float
        Smallest ``u - l`` used in the computation.
    init_lower, init_upper : float
        Range used before data-driven initialisation (e.g. eval before any training).

    Attributes
    ----------
    lower_raw, upper_raw : nn.Parameter []
        The learnable bounds as stored (``upper_raw`` may sit below ``lower_raw``).
    range_initialized : buffer [] bool
        True once the range came from data or from a state_dict; saved with the model so
        reloading keeps the learned range.
    delta : buffer [] float64
        GSTE strength, set from outside with :meth:`set_delta`; saved with the model.

    Shapes
    ------
    ``forward: [..., d] -> [..., d]``; ``codes: [..., d] -> [..., d] int64``.
    """

    def __init__(
        self,
        bits: int,
        init_std: float = 3.0,
        min_width: float = 1e-6,
        init_lower: float = -1.0,
        init_upper: float = 1.0,
    ):
        super().__init__()
        bits = check_bits(bits)
        if not init_std > 0:
            raise ValueError(f"init_std must be > 0, got {init_std!r}")
        if not min_width > 0:
            raise ValueError(f"min_width must be > 0, got {min_width!r}")
        self._bits = bits
        self.levels = 2**bits - 1
        self.init_std = float(init_std)
        self.min_width = float(min_width)
        self.lower_raw = nn.Parameter(torch.tensor(float(init_lower)))
        self.upper_raw = nn.Parameter(torch.tensor(float(init_upper)))
        self.register_buffer("range_initialized", torch.tensor(False))
        self.register_buffer("delta", torch.tensor(0.0, dtype=torch.float64))

    # ----------------------------------------------------------------------------- range
    @property
    def bits(self) -> int:
        """Number of bits per code."""
        return self._bits

    def _width(self) -> torch.Tensor:
        # clamp_min keeps the range usable when the optimiser pushes u below l.
        return (self.upper_raw - self.lower_raw).clamp_min(self.min_width)

    @property
    def lower(self) -> torch.Tensor:
        """Lower bound ``l`` (0-d tensor, the parameter itself)."""
        return self.lower_raw

    @property
    def upper(self) -> torch.Tensor:
        """Effective upper bound ``l + max(u - l, min_width)`` (0-d tensor)."""
        return self.lower_raw + self._width()

    @property
    def step(self) -> torch.Tensor:
        """Grid spacing ``(u - l) / (2^b - 1)`` (0-d tensor, effective width)."""
        return self._width() / self.levels

    @torch.no_grad()
    def initialize_range(self, e: torch.Tensor) -> None:
        """Set ``l, u = mean -/+ init_std * std(e)`` and mark the range initialised.

        Parameters
        ----------
        e : Tensor [...]
            Sample of the values to quantise (all elements pooled).
        """
        values = e.detach().to(self.lower_raw.dtype)
        mean = values.mean()
        std = values.std(correction=0) if values.numel() > 1 else torch.zeros_like(mean)
        self.lower_raw.copy_(mean - self.init_std * std)
        self.upper_raw.copy_(mean + self.init_std * std)
        self.range_initialized.fill_(True)

    # ----------------------------------------------------------------------------- delta
    def set_delta(self, delta: float) -> None:
        """Set the GSTE strength (finite, >= 0; 0 = plain STE)."""
        delta = float(delta)
        if not (delta >= 0.0 and math.isfinite(delta)):
            raise ValueError(f"delta must be a finite float >= 0, got {delta!r}")
        self.delta.fill_(delta)

    # ----------------------------------------------------------------------------- maps
    def _normalized(self, e: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(x~, l, w)``; initialises the range on the first training-mode call."""
        if not e.is_floating_point():
            raise TypeError(f"UniformQuantizer expects a floating tensor, got {e.dtype}")
        if self.training and not bool(self.range_initialized):
            self.initialize_range(e)
        lower, width = self.lower_raw, self._width()
        return normalize_to_unit(e, lower, width), lower, width

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        """Quantise and dequantise.

        Parameters
        ----------
        e : Tensor [..., d]

        Returns
        -------
        Tensor [..., d]
            ``e^ = l + (u - l) k / (2^b - 1)``, differentiable w.r.t. ``e``, ``l``, ``u``.
        """
        x_tilde, lower, width = self._normalized(e)
        x_hat = round_gste(x_tilde, self.levels, float(self.delta))
        # Reuse the same width node as the normalisation: one graph path per parameter
        # keeps the gradient accumulation order (and so the bits) of a plain STE graph.
        return lower + width * x_hat

    def from_unit(self, x_hat: torch.Tensor) -> torch.Tensor:
        """Map grid values ``x^`` in ``[0, 1]`` to ``e^ = l + (u - l) x^``.

        The second half of :meth:`forward`. For the Hessian-aware delta, differentiate
        the loss w.r.t. ``x^`` (the variable the GSTE acts on)::

            x_hat = quantizer.grid_values(e).requires_grad_(True)
            hessian_statistics(lambda xh: loss_of(quantizer.from_unit(xh)), x_hat)

        Curvature w.r.t. ``e^`` instead would give ``delta / (u - l)``.

        Parameters
        ----------
        x_hat : Tensor [..., d]

        Returns
        -------
        Tensor [..., d]
        """
        return self.lower_raw + self._width() * x_hat

    @torch.no_grad()
    def grid_values(self, e: torch.Tensor) -> torch.Tensor:
        """Grid values ``x^ = k / (2^b - 1)`` in ``[0, 1]`` (no grad), in ``e.dtype``.

        Parameters
        ----------
        e : Tensor [..., d]

        Returns
        -------
        Tensor [..., d]
        """
        x_tilde, _, _ = self._normalized(e)
        return round_half_up(x_tilde, self.levels) / self.levels

    @torch.no_grad()
    def codes(self, e: torch.Tensor) -> torch.Tensor:
        """Integer codes ``k`` in ``0..2^b-1``.

        Parameters
        ----------
        e : Tensor [..., d]

        Returns
        -------
        Tensor [..., d], int64
        """
        x_tilde, _, _ = self._normalized(e)
        return round_half_up(x_tilde, self.levels).to(torch.int64)

    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        """Map codes back to values, exactly as :meth:`forward` does.

        Parameters
        ----------
        codes : Tensor [..., d], integer
            Codes in ``0..2^b-1``.

        Returns
        -------
        Tensor [..., d], in the parameters' dtype
            ``l + (u - l) (k / (2^b - 1))`` (same operation order as ``forward``, so
            ``dequantize(codes(e)) == forward(e)`` bitwise for inputs of that dtype).
        """
        return self.from_unit(codes.to(self.lower_raw.dtype) / self.levels)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, init_std={self.init_std}, min_width={self.min_width}"


class ScaledSign(nn.Module):
    """Per-row scaled binarisation ``alpha * sign(x)``, ``alpha = mean(|x|)`` over the last dim.

    Parameters
    ----------
    estimator : {'ste', 'gaussian'}
        ``'ste'`` = identity through sign (base L2Q-GCN); ``'gaussian'`` = BiGeaR's
        Gaussian Dirac approximation (L2Q-GCN-anl).
    gamma : float
        Sharpness of the Gaussian estimator.
    scale_grad : bool
        Whether ``alpha`` is differentiable; default False, as in the BiGeaR code.

    Shapes
    ------
    ``forward: [..., d] -> [..., d]`` (or :class:`ScaledSignOutput` with
    ``return_parts=True``); ``encode: [..., d] -> ([..., d] int8, [..., 1])``.
    """

    def __init__(self, estimator: str = "ste", gamma: float = 1.0, scale_grad: bool = False):
        super().__init__()
        if estimator not in ("ste", "gaussian"):
            raise ValueError(f"estimator must be 'ste' or 'gaussian', got {estimator!r}")
        if not gamma > 0:
            raise ValueError(f"gamma must be > 0, got {gamma!r}")
        self.estimator = estimator
        self.gamma = float(gamma)
        self.scale_grad = bool(scale_grad)

    def forward(
        self, x: torch.Tensor, return_parts: bool = False
    ) -> Union[torch.Tensor, ScaledSignOutput]:
        """Binarise.

        Parameters
        ----------
        x : Tensor [..., d]
        return_parts : bool
            Return ``ScaledSignOutput(value, sign, scale)`` instead of ``value`` only.

        Returns
        -------
        Tensor [..., d] or ScaledSignOutput
        """
        parts = scaled_sign(x, self.estimator, self.gamma, self.scale_grad)
        return parts if return_parts else parts.value

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Codes and scales for storage / packing.

        Parameters
        ----------
        x : Tensor [..., d]

        Returns
        -------
        codes : Tensor [..., d], int8 in {-1, +1}
        scale : Tensor [..., 1], x.dtype
        """
        return hard_sign(x).to(torch.int8), x.abs().mean(dim=-1, keepdim=True)

    def extra_repr(self) -> str:
        return f"estimator={self.estimator!r}, gamma={self.gamma}, scale_grad={self.scale_grad}"


class TanhSign(nn.Module):
    """``tanh(tau x)`` while training, hard sign (``x >= 0 -> +1``) in eval mode.

    Parameters
    ----------
    schedule : TemperatureSchedule, optional
        If given, :meth:`set_epoch` sets ``tau = schedule(epoch)``; the initial ``tau`` is
        ``schedule(0)``.
    tau : float
        Initial temperature when no schedule is given.

    Attributes
    ----------
    tau : buffer [] float64
        Current temperature; saved with the model.

    Shapes
    ------
    ``[...] -> [...]``.
    """

    def __init__(self, schedule: Optional[TemperatureSchedule] = None, tau: float = 1.0):
        super().__init__()
        self.schedule = schedule
        initial = schedule(0) if schedule is not None else float(tau)
        if not initial > 0:
            raise ValueError(f"tau must be > 0, got {initial!r}")
        self.register_buffer("tau", torch.tensor(initial, dtype=torch.float64))

    def set_epoch(self, epoch: int) -> float:
        """Set ``tau`` from the schedule for this epoch; returns the new ``tau``."""
        if self.schedule is None:
            raise RuntimeError("TanhSign has no schedule; use set_tau()")
        return self.set_tau(self.schedule(epoch))

    def set_tau(self, tau: float) -> float:
        """Set the temperature directly (> 0); returns it."""
        tau = float(tau)
        if not (tau > 0 and math.isfinite(tau)):
            raise ValueError(f"tau must be a finite float > 0, got {tau!r}")
        self.tau.fill_(tau)
        return tau

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return tanh_relax(x, float(self.tau))
        return hard_sign(x)

    def extra_repr(self) -> str:
        return f"tau={float(self.tau):g}, schedule={self.schedule!r}"
