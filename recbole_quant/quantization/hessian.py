"""Hessian-trace estimation and the Hessian-aware GSTE strength ``delta`` (HQ-GNN).

HQ-GNN's paper says the estimator uses a Hessian term; the formula here is this project's
reconstruction (``docs/models.md``): ``delta = (Tr(H) / N) / (3 std(g))``, clipped at 0,
with ``H = d2L / dx^2`` and ``g = dL / dx`` for the quantised embedding ``x``, ``N`` its
number of elements. ``Tr(H)`` comes from Hutchinson's estimator, the mean of ``v^T H v``
over Rademacher vectors ``v``; each ``H v`` is a double backward w.r.t. ``x`` only.
Averaged over a few mini-batches, refreshed every few epochs, constant in between.

Units: the GSTE scales the gradient at the unit-grid value ``x^ = k / (2^b - 1)``, so
``H`` and ``g`` should be taken w.r.t. ``x^`` (``UniformQuantizer.grid_values`` /
``from_unit``); w.r.t. the dequantised ``e^ = l + (u - l) x^`` the same formula gives
``delta / (u - l)``. Nothing here enforces either: the caller picks ``x``. How HQ-GNN calls
this (which batches, which side, how often): ``HQGNN._refresh_delta``.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional

import torch

__all__ = [
    "HessianStats",
    "hessian_statistics",
    "hutchinson_trace",
    "gste_delta",
    "HessianDeltaEstimator",
]


class HessianStats(NamedTuple):
    """One batch's curvature statistics.

    Attributes
    ----------
    trace : float
        Hutchinson estimate of ``Tr(d2L/dx2)``.
    n_elements : int
        ``x.numel()``.
    grad_std : float
        Population std (``correction=0``) of ``dL/dx`` over all elements; 0 for one element.
    """

    trace: float
    n_elements: int
    grad_std: float


def _rademacher_like(x: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
    # Draw on the generator's device (a CPU generator cannot fill a CUDA tensor), then move.
    draw_device = generator.device if generator is not None else x.device
    signs = torch.randint(0, 2, x.shape, generator=generator, device=draw_device, dtype=x.dtype)
    return (signs * 2 - 1).to(x.device)


def hessian_statistics(
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    n_probes: int = 1,
    generator: Optional[torch.Generator] = None,
) -> HessianStats:
    """Hutchinson trace of ``d2 loss_fn(x) / dx2`` plus the std of ``d loss_fn(x) / dx``.

    Parameters
    ----------
    loss_fn : callable ``Tensor -> Tensor []``
        Scalar loss as a function of ``x``.
    x : Tensor [...], requires_grad
        The point of evaluation. Pass a detached leaf (``x_hat.detach().requires_grad_()``)
        so the double backward never reaches the graph upstream of ``x`` (e.g. the sparse
        propagation). ``x.grad`` is not touched (``torch.autograd.grad`` is used).
    n_probes : int, >= 1
        Number of Rademacher vectors averaged.
    generator : torch.Generator, optional
        Randomness for the probes; pass a dedicated one to leave the global RNG stream
        (and thus the rest of training) unchanged.

    Returns
    -------
    HessianStats
        ``(trace, n_elements, grad_std)``. A loss linear in (or independent of) ``x`` has
        trace 0.
    """
    if isinstance(n_probes, bool) or int(n_probes) != n_probes or n_probes < 1:
        raise ValueError(f"n_probes must be an int >= 1, got {n_probes!r}")
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ValueError("x must be a floating-point tensor")
    if not x.requires_grad:
        raise ValueError("x must require grad (pass x.detach().requires_grad_(True))")
    n_elements = x.numel()
    with torch.enable_grad():
        loss = loss_fn(x)
        if loss.numel() != 1:
            raise ValueError(f"loss_fn must return a scalar, got shape {tuple(loss.shape)}")
        if not loss.requires_grad:  # loss does not depend on x at all
            return HessianStats(0.0, n_elements, 0.0)
        (grad,) = torch.autograd.grad(loss.reshape(()), x, create_graph=True, allow_unused=True)
        if grad is None:  # no path from x to the loss
            return HessianStats(0.0, n_elements, 0.0)
        grad_std = float(grad.detach().std(correction=0)) if n_elements > 1 else 0.0
        if not grad.requires_grad:  # gradient constant in x: loss is linear, H = 0
            return HessianStats(0.0, n_elements, grad_std)
        total = 0.0
        for probe in range(n_probes):
            v = _rademacher_like(x, generator)
            (hv,) = torch.autograd.grad(
                grad, x, grad_outputs=v, retain_graph=probe < n_probes - 1, allow_unused=True
            )
            if hv is not None:
                # Accumulate v^T H v in float64: the trace is a sum of N terms.
                total += float((v.double() * hv.double()).sum())
    return HessianStats(total / n_probes, n_elements, grad_std)


def hutchinson_trace(
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    n_probes: int = 1,
    generator: Optional[torch.Generator] = None,
) -> float:
    """Hutchinson estimate of ``Tr(d2 loss_fn(x) / dx2)``.

    Exact (for any probe) when the Hessian is diagonal, since ``v_i^2 = 1``. See
    :func:`hessian_statistics` for the parameters.

    Returns
    -------
    float
        Mean of ``v^T H v`` over ``n_probes`` Rademacher vectors.
    """
    return hessian_statistics(loss_fn, x, n_probes, generator).trace


def gste_delta(trace: float, n_elements: int, grad_std: float) -> float:
    """``delta = max(0, (trace / n_elements) / (3 grad_std))``.

    Parameters
    ----------
    trace : float
        Hessian trace (sum over ``n_elements`` diagonal entries).
    n_elements : int, >= 1
    grad_std : float
        Std of the gradient; ``<= 0`` (no gradient spread) gives 0.

    Returns
    -------
    float
        Finite, >= 0; a non-finite result (NaN/inf curvature) falls back to 0, i.e. plain STE.
    """
    if isinstance(n_elements, bool) or int(n_elements) != n_elements or n_elements < 1:
        raise ValueError(f"n_elements must be an int >= 1, got {n_elements!r}")
    if not grad_std > 0:  # also catches NaN
        return 0.0
    delta = (trace / n_elements) / (3.0 * grad_std)
    if not math.isfinite(delta):
        return 0.0
    return max(0.0, delta)


class HessianDeltaEstimator:
    """Averages a few batches' curvature statistics into one GSTE ``delta``.

    ``delta = max(0, mean_b(trace_b / N_b) / (3 mean_b(grad_std_b)))`` over the batches
    accumulated since the last :meth:`refresh` (per-batch quantities averaged first, then
    combined). When to refresh is the model's business (HQ-GNN: ``hessian_refresh``).
    """

    def __init__(self):
        self._sum_trace_per_element = 0.0
        self._sum_grad_std = 0.0
        self._batches_seen = 0

    @property
    def pending_batches(self) -> int:
        """Batches accumulated since the last refresh."""
        return self._batches_seen

    def accumulate(self, trace: float, n_elements: int, grad_std: float) -> None:
        """Add one batch's statistics (the fields of :class:`HessianStats`)."""
        if isinstance(n_elements, bool) or int(n_elements) != n_elements or n_elements < 1:
            raise ValueError(f"n_elements must be an int >= 1, got {n_elements!r}")
        self._sum_trace_per_element += float(trace) / int(n_elements)
        self._sum_grad_std += float(grad_std)
        self._batches_seen += 1

    def refresh(self) -> float:
        """The ``delta`` (finite, >= 0) of the accumulated batches; starts a new average."""
        if self._batches_seen == 0:
            raise RuntimeError("refresh() called before any batch was accumulated")
        delta = gste_delta(
            self._sum_trace_per_element / self._batches_seen,
            1,
            self._sum_grad_std / self._batches_seen,
        )
        self.__init__()
        return delta
