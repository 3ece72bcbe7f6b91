"""b-bit uniform quantiser (HQ-GNN): forward grid, STE/GSTE gradients, range handling."""

import io

import pytest
import torch

from recbole_quant.quantization import UniformQuantizer, hard_sign, normalize_to_unit


def _quantizer(bits, lower, upper, dtype=torch.float64, delta=0.0):
    """Quantiser with a fixed, already-initialised range."""
    quantizer = UniformQuantizer(bits).to(dtype)
    with torch.no_grad():
        quantizer.lower_raw.fill_(lower)
        quantizer.upper_raw.fill_(upper)
        quantizer.range_initialized.fill_(True)
    quantizer.set_delta(delta)
    return quantizer


def _grads(quantizer, e, upstream):
    """(dL/de, dL/dl, dL/du) for L = sum(upstream * quantizer(e))."""
    quantizer.zero_grad(set_to_none=True)
    e = e.clone().requires_grad_(True)
    (quantizer(e) * upstream).sum().backward()
    return e.grad, quantizer.lower_raw.grad, quantizer.upper_raw.grad


class _IdentityRound(torch.autograd.Function):
    """Independent reference STE rounding (ties up), identity backward."""

    @staticmethod
    def forward(ctx, x_tilde, levels):
        return torch.floor(x_tilde * levels + 0.5) / levels

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def _reference_ste(e, lower, upper, bits, min_width=1e-6):
    width = (upper - lower).clamp_min(min_width)
    x_tilde = ((e - lower) / width).clamp(0.0, 1.0)
    return lower + width * _IdentityRound.apply(x_tilde, 2**bits - 1)


# --------------------------------------------------------------------------- construction
@pytest.mark.parametrize("bits", [0, 9, -1, 2.0, True, "4"])
def test_bits_outside_range_raise(bits):
    with pytest.raises(ValueError, match="1..8"):
        UniformQuantizer(bits)


def test_properties():
    quantizer = _quantizer(3, -1.0, 6.0)
    assert quantizer.bits == 3 and quantizer.levels == 7
    assert quantizer.lower.item() == -1.0 and quantizer.upper.item() == 6.0
    assert quantizer.step.item() == pytest.approx(1.0)


# --------------------------------------------------------------------------- forward
def test_forward_codes_dequantize_hand_example():
    # 2 bits on [0, 3]: grid {0, 1, 2, 3}; 1.5 is a tie and goes up; outside values clip.
    quantizer = _quantizer(2, 0.0, 3.0).eval()
    e = torch.tensor([-1.0, 0.4, 1.25, 1.5, 2.9, 4.0], dtype=torch.float64)
    expected_codes = torch.tensor([0, 0, 1, 2, 3, 3])
    assert torch.equal(quantizer.codes(e), expected_codes)
    assert quantizer.codes(e).dtype == torch.int64
    torch.testing.assert_close(quantizer(e), expected_codes.double())
    assert torch.equal(quantizer.dequantize(quantizer.codes(e)), quantizer(e))


def test_one_bit_symmetric_range_is_scaled_sign():
    quantizer = _quantizer(1, -0.75, 0.75, dtype=torch.float32).eval()
    e = torch.tensor([[-2.0, -0.3, 0.0, 0.2, 5.0], [0.01, -0.01, 1.0, -1.0, 0.0]])
    assert torch.equal(quantizer(e), 0.75 * hard_sign(e))
    assert torch.equal(quantizer.codes(e), (e >= 0).long())


def test_grid_values_and_from_unit_compose_to_forward():
    quantizer = _quantizer(3, -1.0, 2.5, dtype=torch.float32).eval()
    e = torch.randn(16, 4)
    grid = quantizer.grid_values(e)
    assert grid.min() >= 0 and grid.max() <= 1 and not grid.requires_grad
    assert torch.equal(quantizer.from_unit(grid), quantizer(e))
    assert torch.equal(grid * quantizer.levels, quantizer.codes(e).float())


def test_degenerate_range_is_finite():
    for lower, upper in [(1.0, 0.5), (0.3, 0.3)]:
        quantizer = _quantizer(4, lower, upper, dtype=torch.float32).train()
        e = torch.tensor([0.0, 0.3, 0.31, 2.0])
        grads = _grads(quantizer, e, torch.ones(4))
        assert torch.isfinite(quantizer(e)).all()
        assert all(torch.isfinite(g).all() for g in grads)
    # Constant data: std 0 at initialisation -> min width, still finite.
    quantizer = UniformQuantizer(2).train()
    assert torch.isfinite(quantizer(torch.full((3, 4), 0.7))).all()


# --------------------------------------------------------------------------- gradients
def test_delta_zero_is_bitwise_ste():
    torch.manual_seed(0)
    e = torch.randn(32, 8) * 1.3
    upstream = torch.randn(32, 8)
    quantizer = _quantizer(3, -2.0, 2.5, dtype=torch.float32)
    quantizer.set_delta(0.7)
    gste_grad_e = _grads(quantizer, e, upstream)[0]  # a GSTE pass first: switching back must be clean
    quantizer.set_delta(0.0)
    grad_e, grad_l, grad_u = _grads(quantizer, e, upstream)

    lower = torch.tensor(-2.0, requires_grad=True)
    upper = torch.tensor(2.5, requires_grad=True)
    e_ref = e.clone().requires_grad_(True)
    (_reference_ste(e_ref, lower, upper, 3) * upstream).sum().backward()
    assert torch.equal(grad_e, e_ref.grad)
    assert not torch.equal(gste_grad_e, e_ref.grad)  # delta > 0 does change the gradient
    assert torch.equal(grad_l, lower.grad)
    assert torch.equal(grad_u, upper.grad)


def _hand_gradients(e, upstream, lower, upper, bits, delta):
    """Per-element chain rule of e^ = l + w x^(x~), round -> GSTE (see UniformQuantizer)."""
    levels = 2**bits - 1
    width = upper - lower
    grad_e, grad_l, grad_u = [], 0.0, 0.0
    for value, big_g in zip(e.tolist(), upstream.tolist()):
        t = (value - lower) / width
        inside = 0.0 <= t <= 1.0
        x_tilde = min(max(t, 0.0), 1.0)
        x_hat = int(x_tilde * levels + 0.5) / levels
        g = width * big_g  # dL/dx^
        g_tilde = g + delta * abs(g) * (x_tilde - x_hat)
        grad_e.append(g_tilde / width if inside else 0.0)
        grad_u += big_g * x_hat - (g_tilde * t / width if inside else 0.0)
        grad_l += big_g * (1 - x_hat) - (g_tilde * (1 - t) / width if inside else 0.0)
    return torch.tensor(grad_e, dtype=torch.float64), grad_l, grad_u


def test_gste_gradients_hand_example():
    # 2 bits on [0, 3], delta = 0.6. Element 1.25: x~ = 5/12, x^ = 1/3, g = 3*2 = 6,
    # g~ = 6 + 0.6*6*(1/12) = 6.3, dL/de = 6.3/3 = 2.1; element 0.4 (G = -3): g = -9,
    # g~ = -9 + 0.6*9*(0.4/3) = -8.28, dL/de = -2.76; -1 and 3.5 are clipped.
    e = torch.tensor([1.25, -1.0, 2.0, 3.5, 0.4], dtype=torch.float64)
    upstream = torch.tensor([2.0, 1.0, -1.0, 0.5, -3.0], dtype=torch.float64)
    quantizer = _quantizer(2, 0.0, 3.0, delta=0.6)
    grad_e, grad_l, grad_u = _grads(quantizer, e, upstream)
    torch.testing.assert_close(grad_e, torch.tensor([2.1, 0.0, -1.0, 0.0, -2.76], dtype=torch.float64))
    hand_e, hand_l, hand_u = _hand_gradients(e, upstream, 0.0, 3.0, 2, 0.6)
    torch.testing.assert_close(grad_e, hand_e)
    assert grad_l.item() == pytest.approx(hand_l, abs=1e-12)
    assert grad_u.item() == pytest.approx(hand_u, abs=1e-12)
    # delta = 0: the same derivation reduces to the STE.
    quantizer.set_delta(0.0)
    grad_e, grad_l, grad_u = _grads(quantizer, e, upstream)
    hand_e, hand_l, hand_u = _hand_gradients(e, upstream, 0.0, 3.0, 2, 0.0)
    torch.testing.assert_close(grad_e, hand_e)
    assert (grad_l.item(), grad_u.item()) == pytest.approx((hand_l, hand_u), abs=1e-12)


@pytest.mark.parametrize("delta", [0.0, 0.8])
def test_range_gradients_match_finite_differences_of_surrogate(delta):
    """FD of the surrogate whose rounding is linearised at the base point.

    Around (e0, l0, u0) the estimator treats x^ as x^0 + s (x~ - x~0) with slope
    s = 1 + delta sign(g) (x~0 - x^0); for L = sum(c e^) sign(g) = sign(c). The surrogate
    is smooth, so central differences give the gradient the backward must produce.
    """
    torch.manual_seed(1)
    bits, lower0, upper0 = 3, -1.2, 1.7
    e0 = torch.rand(40, dtype=torch.float64) * 4 - 2  # some inside, some clipped
    e0 = e0[((e0 - lower0).abs() > 1e-3) & ((e0 - upper0).abs() > 1e-3)]
    c = torch.randn(e0.shape, dtype=torch.float64)
    levels = 2**bits - 1
    x_tilde0 = normalize_to_unit(e0, torch.tensor(lower0), torch.tensor(upper0 - lower0))
    x_hat0 = torch.floor(x_tilde0 * levels + 0.5) / levels
    slope = 1 + delta * torch.sign(c) * (x_tilde0 - x_hat0)

    def surrogate(e, lower, upper):
        width = upper - lower
        x_tilde = ((e - lower) / width).clamp(0, 1)
        return ((lower + width * (x_hat0 + slope * (x_tilde - x_tilde0))) * c).sum()

    quantizer = _quantizer(bits, lower0, upper0, delta=delta)
    grad_e, grad_l, grad_u = _grads(quantizer, e0, c)
    eps = 1e-6
    fd_l = (surrogate(e0, lower0 + eps, upper0) - surrogate(e0, lower0 - eps, upper0)) / (2 * eps)
    fd_u = (surrogate(e0, lower0, upper0 + eps) - surrogate(e0, lower0, upper0 - eps)) / (2 * eps)
    assert grad_l.item() == pytest.approx(fd_l.item(), rel=1e-6, abs=1e-8)
    assert grad_u.item() == pytest.approx(fd_u.item(), rel=1e-6, abs=1e-8)
    e_var = e0.clone().requires_grad_(True)
    surrogate(e_var, torch.tensor(lower0), torch.tensor(upper0)).backward()
    torch.testing.assert_close(grad_e, e_var.grad)


def test_normalisation_gradcheck():
    e = torch.tensor([-0.9, -0.2, 0.1, 0.55, 1.4, 2.6], dtype=torch.float64, requires_grad=True)
    lower = torch.tensor(-0.5, dtype=torch.float64, requires_grad=True)
    width = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(normalize_to_unit, (e, lower, width))


def test_set_delta_validation():
    quantizer = UniformQuantizer(2)
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            quantizer.set_delta(bad)


# --------------------------------------------------------------------------- range init / state
def test_range_initialised_on_first_training_forward_only():
    torch.manual_seed(2)
    data = torch.randn(500, 8) * 2 + 1
    quantizer = UniformQuantizer(4, init_std=3.0)
    quantizer.eval()
    quantizer(data)
    assert not bool(quantizer.range_initialized)  # eval does not initialise
    quantizer.train()
    quantizer(data)
    assert bool(quantizer.range_initialized)
    expected_lower = data.mean() - 3 * data.std(correction=0)
    expected_upper = data.mean() + 3 * data.std(correction=0)
    torch.testing.assert_close(quantizer.lower.detach(), expected_lower)
    torch.testing.assert_close(quantizer.upper.detach(), expected_upper)
    quantizer(data * 10)  # no re-initialisation
    torch.testing.assert_close(quantizer.lower.detach(), expected_lower)


def test_state_dict_round_trip_keeps_range_and_delta():
    torch.manual_seed(3)
    trained = UniformQuantizer(2).train()
    optimizer = torch.optim.SGD(trained.parameters(), lr=0.1)
    data = torch.randn(64, 4)
    (trained(data) ** 2).sum().backward()
    optimizer.step()  # learned range differs from the data-driven init
    trained.set_delta(0.25)
    buffer = io.BytesIO()
    torch.save(trained.state_dict(), buffer)
    buffer.seek(0)
    restored = UniformQuantizer(2)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    restored.train()
    restored(torch.randn(64, 4) * 5 + 3)  # must not re-initialise from this batch
    assert torch.equal(restored.lower_raw, trained.lower_raw)
    assert torch.equal(restored.upper_raw, trained.upper_raw)
    assert float(restored.delta) == 0.25
    assert torch.equal(restored.codes(data), trained.codes(data))
