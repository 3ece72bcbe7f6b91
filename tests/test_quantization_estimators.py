"""Sign estimators, scaled sign, tanh relaxation and HashGNN's guided mix."""

import math

import pytest
import torch

from recbole_quant.quantization import (
    ScaledSign,
    TanhSign,
    TemperatureSchedule,
    gaussian_dirac,
    guided_mask,
    guided_mix,
    hard_sign,
    scaled_sign,
    sign_gaussian,
    sign_ste,
    tanh_relax,
)


def _grad_of(fn, x, upstream):
    """Gradient of sum(upstream * fn(x)) w.r.t. x."""
    x = x.clone().requires_grad_(True)
    (fn(x) * upstream).sum().backward()
    return x.grad


# --------------------------------------------------------------------------- sign
def test_hard_sign_maps_zero_to_plus_one():
    x = torch.tensor([-2.0, -0.0, 0.0, 1e-30, -1e-30, 3.0])
    assert torch.equal(hard_sign(x), torch.tensor([-1.0, 1.0, 1.0, 1.0, -1.0, 1.0]))
    assert hard_sign(x.double()).dtype == torch.float64


def test_sign_ste_forward_and_identity_gradient():
    x = torch.tensor([-2.0, -0.5, 0.0, 0.3, 1.5])
    upstream = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    assert torch.equal(sign_ste(x), torch.tensor([-1.0, -1.0, 1.0, 1.0, 1.0]))
    assert torch.equal(_grad_of(sign_ste, x, upstream), upstream)


def test_sign_ste_clip_zeroes_gradient_outside():
    x = torch.tensor([-2.0, -1.0, 0.0, 0.3, 1.5])
    upstream = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    # |x| > 1 -> 0; |x| == 1 keeps its gradient.
    expected = torch.tensor([0.0, 2.0, 3.0, 4.0, 0.0])
    assert torch.equal(_grad_of(lambda t: sign_ste(t, clip=1.0), x, upstream), expected)
    with pytest.raises(ValueError):
        sign_ste(x, clip=0.0)


# --------------------------------------------------------------------------- gaussian
def test_gaussian_dirac_values_and_clamps():
    x = torch.tensor([0.0, 1.0, -2.0, 10.0], dtype=torch.float64)
    root_pi = math.sqrt(math.pi)
    expected = torch.tensor([1 / root_pi, math.exp(-1) / root_pi, math.exp(-4) / root_pi, 1e-8], dtype=torch.float64)
    torch.testing.assert_close(gaussian_dirac(x, 1.0), expected)
    # gamma = 3: 3/sqrt(pi) > 1 at x = 0 -> clamped to 1.
    assert gaussian_dirac(torch.tensor([0.0]), 3.0).item() == 1.0


def test_sign_gaussian_forward_and_gradient():
    x = torch.tensor([0.0, 1.0, -2.0], dtype=torch.float64)
    upstream = torch.tensor([1.0, 2.0, -3.0], dtype=torch.float64)
    assert torch.equal(sign_gaussian(x), torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64))
    root_pi = math.sqrt(math.pi)
    expected = upstream * torch.tensor([1 / root_pi, math.exp(-1) / root_pi, math.exp(-4) / root_pi], dtype=torch.float64)
    torch.testing.assert_close(_grad_of(sign_gaussian, x, upstream), expected)
    gamma = 0.5  # d/dx = gamma/sqrt(pi) exp(-(gamma x)^2)
    expected_half = upstream * (gamma / root_pi) * torch.exp(-((gamma * x) ** 2))
    torch.testing.assert_close(_grad_of(lambda t: sign_gaussian(t, gamma), x, upstream), expected_half)


# --------------------------------------------------------------------------- scaled sign
def test_scaled_sign_forward_parts_and_encode():
    x = torch.tensor([[1.0, -3.0, 0.0, 2.0], [-0.5, 0.5, -0.5, 0.5]])
    out = scaled_sign(x)
    torch.testing.assert_close(out.scale, torch.tensor([[1.5], [0.5]]))
    assert torch.equal(out.sign, torch.tensor([[1.0, -1.0, 1.0, 1.0], [-1.0, 1.0, -1.0, 1.0]]))
    torch.testing.assert_close(out.value, out.scale * out.sign)
    module = ScaledSign()
    torch.testing.assert_close(module(x), out.value)
    parts = module(x, return_parts=True)
    assert torch.equal(parts.sign, out.sign)
    codes, scale = module.encode(x)
    assert codes.dtype == torch.int8 and torch.equal(codes, out.sign.to(torch.int8))
    torch.testing.assert_close(scale, out.scale)


def test_scaled_sign_ste_gradient_without_and_with_scale_grad():
    x = torch.tensor([[1.0, -3.0, 0.0, 2.0]])
    upstream = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    # alpha = 1.5 is a constant: d value / dx = alpha (identity through sign).
    grad = _grad_of(ScaledSign("ste"), x, upstream)
    assert torch.equal(grad, torch.tensor([[1.5, 3.0, 4.5, 6.0]]))
    # scale_grad: + (sum_j g_j q_j) / d * sign(x) = (1 - 2 + 3 + 4)/4 * [1, -1, 0, 1].
    grad = _grad_of(ScaledSign("ste", scale_grad=True), x, upstream)
    torch.testing.assert_close(grad, torch.tensor([[3.0, 1.5, 4.5, 7.5]]))


def test_scaled_sign_gaussian_gradient_is_alpha_times_dirac():
    x = torch.tensor([[1.0, -3.0, 0.0, 2.0]], dtype=torch.float64)
    upstream = torch.tensor([[1.0, 2.0, 3.0, 4.0]], dtype=torch.float64)
    grad = _grad_of(ScaledSign("gaussian", gamma=1.0), x, upstream)
    expected = upstream * 1.5 * gaussian_dirac(x, 1.0)
    torch.testing.assert_close(grad, expected)


def test_scaled_sign_validation():
    with pytest.raises(ValueError):
        ScaledSign("hard")
    with pytest.raises(ValueError):
        ScaledSign("gaussian", gamma=0.0)


# --------------------------------------------------------------------------- tanh relaxation
def test_tanh_relax_gradcheck():
    x = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: tanh_relax(t, 2.5), (x,))
    module = TanhSign(tau=3.0).double().train()
    assert torch.autograd.gradcheck(module, (x,))


def test_tanh_sign_train_vs_eval_and_schedule():
    schedule = TemperatureSchedule(tau_start=1.0, tau_end=100.0, epochs=10, kind="exp")
    module = TanhSign(schedule)
    x = torch.tensor([-0.2, 0.0, 0.05])
    assert float(module.tau) == 1.0
    assert module.set_epoch(5) == pytest.approx(10.0)
    module.train()
    torch.testing.assert_close(module(x), torch.tanh(10.0 * x))
    module.eval()
    assert torch.equal(module(x), torch.tensor([-1.0, 1.0, 1.0]))
    module.set_epoch(50)
    assert float(module.tau) == 100.0
    # tau is a buffer: a reloaded model keeps it.
    clone = TanhSign(schedule)
    clone.load_state_dict(module.state_dict())
    assert float(clone.tau) == 100.0
    with pytest.raises(RuntimeError):
        TanhSign(tau=2.0).set_epoch(1)


# --------------------------------------------------------------------------- guided STE
def test_guided_mask_extremes_and_rate():
    generator = torch.Generator().manual_seed(0)
    assert not guided_mask(10_000, 0.0, generator).any()
    assert guided_mask(10_000, 1.0, generator).all()
    mask = guided_mask(40_000, 0.3, generator)
    assert mask.dtype == torch.bool and mask.shape == (40_000,)
    assert abs(mask.float().mean().item() - 0.3) < 0.015
    with pytest.raises(ValueError):
        guided_mask(5, 1.5)
    with pytest.raises(ValueError):
        guided_mask(5, -0.1)


def test_guided_mask_beta_zero_even_when_draw_is_exactly_zero(monkeypatch):
    # torch.rand can return exactly 0.0; r < beta keeps beta = 0 fully continuous.
    monkeypatch.setattr(torch, "rand", lambda n, **kwargs: torch.zeros(n))
    assert not guided_mask(8, 0.0).any()
    assert guided_mask(8, 1e-6).all()


def test_guided_mask_reproducible_with_generator():
    first = guided_mask(100, 0.5, torch.Generator().manual_seed(7))
    second = guided_mask(100, 0.5, torch.Generator().manual_seed(7))
    assert torch.equal(first, second)


def test_guided_mix_shared_draw_and_gradients():
    generator = torch.Generator().manual_seed(3)
    n_rows, n_bits = 64, 8
    z_user = torch.randn(n_rows, n_bits, requires_grad=True)
    z_pos = torch.randn(n_rows, n_bits, requires_grad=True)
    z_neg = torch.randn(n_rows, n_bits, requires_grad=True)
    pair_mask = guided_mask(n_rows, 0.5, generator)  # one draw per (user, positive) row
    neg_mask = guided_mask(n_rows, 0.5, generator)  # fresh draw for the negatives
    user = guided_mix(sign_ste(z_user), z_user, pair_mask)
    pos = guided_mix(sign_ste(z_pos), z_pos, pair_mask)
    neg = guided_mix(sign_ste(z_neg), z_neg, neg_mask)
    is_code = lambda mixed: (mixed.detach().abs() == 1).all(dim=1)  # noqa: E731
    assert torch.equal(is_code(user), pair_mask) and torch.equal(is_code(pos), pair_mask)
    assert torch.equal(is_code(neg), neg_mask) and not torch.equal(neg_mask, pair_mask)
    assert torch.equal(user[pair_mask], hard_sign(z_user[pair_mask]))
    assert torch.equal(user[~pair_mask], z_user[~pair_mask])


def test_guided_mix_routes_gradient_per_row():
    code_input = torch.randn(4, 3, requires_grad=True)
    cont = torch.randn(4, 3, requires_grad=True)
    mask = torch.tensor([True, False, True, False])
    upstream = torch.arange(12.0).view(4, 3)
    (guided_mix(sign_ste(code_input), cont, mask) * upstream).sum().backward()
    rows = mask.view(-1, 1).float()
    assert torch.equal(code_input.grad, upstream * rows)  # identity STE through sign
    assert torch.equal(cont.grad, upstream * (1 - rows))
    with pytest.raises(ValueError):
        guided_mix(torch.zeros(4, 3), torch.zeros(4, 3), torch.ones(3, dtype=torch.bool))
