"""Hutchinson trace, the GSTE delta formula and the stateful delta estimator."""

import math

import pytest
import torch

from recbole_quant.quantization import (
    HessianDeltaEstimator,
    UniformQuantizer,
    gste_delta,
    hessian_statistics,
    hutchinson_trace,
)


def _leaf(tensor):
    return tensor.detach().clone().requires_grad_(True)


def test_diagonal_quadratic_is_exact_with_one_probe():
    # L = sum(a x^2): H = diag(2a), v^T H v = sum 2 a v_i^2 = Tr(H) for every Rademacher v.
    torch.manual_seed(0)
    a = torch.rand(5, 3, dtype=torch.float64) + 0.1
    x = _leaf(torch.randn(5, 3, dtype=torch.float64))
    generator = torch.Generator().manual_seed(1)
    trace = hutchinson_trace(lambda t: (a * t**2).sum(), x, n_probes=1, generator=generator)
    assert trace == pytest.approx(2 * a.sum().item(), rel=1e-12)


def test_quartic_diagonal_trace_depends_on_point():
    # L = sum(x^4): H = diag(12 x^2).
    x = _leaf(torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64))
    assert hutchinson_trace(lambda t: (t**4).sum(), x, n_probes=2) == pytest.approx(12 * 5.25)


def test_dense_quadratic_converges_to_trace():
    # L = 0.5 x^T A x: H = A. Var(v^T A v) = 2 sum_{i != j} A_ij^2.
    generator = torch.Generator().manual_seed(5)
    base = torch.randn(6, 6, dtype=torch.float64, generator=generator)
    matrix = (base + base.T) / 2
    x = _leaf(torch.randn(6, dtype=torch.float64, generator=generator))
    n_probes = 2000
    trace = hutchinson_trace(lambda t: 0.5 * t @ matrix @ t, x, n_probes=n_probes, generator=generator)
    off_diagonal = matrix - torch.diag(torch.diagonal(matrix))
    sigma = math.sqrt(2 * (off_diagonal**2).sum().item() / n_probes)
    assert abs(trace - torch.trace(matrix).item()) < 5 * sigma
    # Same generator seed -> same estimate.
    again = hutchinson_trace(
        lambda t: 0.5 * t @ matrix @ t, x, n_probes=3, generator=torch.Generator().manual_seed(9)
    )
    assert again == hutchinson_trace(
        lambda t: 0.5 * t @ matrix @ t, x, n_probes=3, generator=torch.Generator().manual_seed(9)
    )


def test_linear_and_independent_losses_have_zero_trace():
    x = _leaf(torch.randn(4, 2))
    weights = torch.randn(4, 2)
    stats = hessian_statistics(lambda t: (weights * t).sum(), x)
    assert stats.trace == 0.0 and stats.n_elements == 8
    assert stats.grad_std == pytest.approx(weights.std(correction=0).item())
    assert hutchinson_trace(lambda t: torch.tensor(1.0), x) == 0.0


def test_no_side_effects_upstream_and_on_grad():
    weight = torch.randn(3, 3, requires_grad=True)
    x = _leaf(weight @ torch.randn(3, 4))  # the caller detaches the quantised embedding
    hutchinson_trace(lambda t: (t**2).sum(), x, n_probes=2)
    assert x.grad is None and weight.grad is None


def test_input_validation():
    with pytest.raises(ValueError):
        hutchinson_trace(lambda t: (t**2).sum(), torch.randn(3))  # no requires_grad
    with pytest.raises(ValueError):
        hutchinson_trace(lambda t: t**2, _leaf(torch.randn(3)))  # not a scalar
    with pytest.raises(ValueError):
        hutchinson_trace(lambda t: (t**2).sum(), _leaf(torch.randn(3)), n_probes=0)


def test_gste_delta_formula():
    assert gste_delta(12.0, 4, 0.5) == pytest.approx((12.0 / 4) / 1.5)
    assert gste_delta(-3.0, 4, 0.5) == 0.0  # negative curvature clipped
    assert gste_delta(3.0, 4, 0.0) == 0.0  # no gradient spread
    assert gste_delta(float("nan"), 4, 1.0) == 0.0
    assert gste_delta(3.0, 4, float("nan")) == 0.0
    with pytest.raises(ValueError):
        gste_delta(1.0, 0, 1.0)


def test_estimator_averages_batches_then_starts_over():
    estimator = HessianDeltaEstimator()
    batches = [(8.0, 4, 0.5), (2.0, 2, 1.0), (30.0, 10, 1.5)]  # trace/N = 2, 1, 3
    for batch in batches:
        estimator.accumulate(*batch)
    assert estimator.pending_batches == 3
    assert estimator.refresh() == pytest.approx(2.0 / (3 * 1.0))  # mean(trace/N) / (3 mean std)
    assert estimator.pending_batches == 0
    with pytest.raises(RuntimeError):
        estimator.refresh()  # nothing accumulated since
    estimator.accumulate(-6.0, 3, 1.0)  # negative curvature: clipped to plain STE
    assert estimator.refresh() == 0.0
    with pytest.raises(ValueError):
        estimator.accumulate(1.0, 0, 1.0)


def test_estimator_on_hessian_statistics_of_a_quadratic():
    estimator = HessianDeltaEstimator()
    a = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    x = _leaf(torch.tensor([[1.0, -1.0], [0.5, 2.0]], dtype=torch.float64))
    for _ in range(2):
        estimator.accumulate(*hessian_statistics(lambda t: (a * t**2).sum(), x))
    grad = 2 * a * x.detach()
    expected = (2 * a.sum().item() / 4) / (3 * grad.std(correction=0).item())
    assert estimator.refresh() == pytest.approx(expected)


def test_delta_on_unit_grid_is_width_times_delta_on_dequantised():
    # x^ (unit grid) vs e^ = l + w x^: Tr scales by w^2 and std(g) by w, so delta by w.
    quantizer = UniformQuantizer(2).double().eval()
    with torch.no_grad():
        quantizer.lower_raw.fill_(-1.0)
        quantizer.upper_raw.fill_(3.0)  # w = 4
    target = torch.randn(6, 3, dtype=torch.float64)
    loss_of = lambda values: ((values - target) ** 2 * torch.arange(1.0, 4.0, dtype=torch.float64)).sum()  # noqa: E731
    e = torch.randn(6, 3, dtype=torch.float64)
    x_hat = quantizer.grid_values(e).requires_grad_(True)
    unit = hessian_statistics(lambda xh: loss_of(quantizer.from_unit(xh)), x_hat)
    e_hat = quantizer(e).detach().requires_grad_(True)
    dequantised = hessian_statistics(loss_of, e_hat)
    assert gste_delta(*unit) == pytest.approx(4.0 * gste_delta(*dequantised))
    assert quantizer.lower_raw.grad is None  # only x is differentiated
