"""Guided-STE beta schedule and tanh temperature schedule."""

import math

import pytest

from recbole_quant.quantization import BetaSchedule, TemperatureSchedule


def test_beta_schedule_hashgnn_defaults():
    schedule = BetaSchedule()  # step 0.02, period 2
    assert [schedule(epoch) for epoch in range(5)] == [0.0, 0.0, 0.02, 0.02, 0.04]
    assert schedule(99) == pytest.approx(0.98)
    assert schedule(100) == 1.0 and schedule(10_000) == 1.0  # clamped, not reset to 0
    assert schedule.epochs_to_full() == 100


@pytest.mark.parametrize("step", [0.02, 0.1, 0.3, 0.07, 1 / 3, 0.001, 1.0, 2.5])
@pytest.mark.parametrize("period", [1, 3])
def test_beta_epochs_to_full_is_first_full_epoch(step, period):
    schedule = BetaSchedule(step=step, period=period)
    full = schedule.epochs_to_full()
    assert schedule(full) == 1.0
    assert full == 0 or schedule(full - 1) < 1.0
    assert all(schedule(e) <= schedule(e + 1) for e in range(full + 3))


@pytest.mark.parametrize("kwargs", [{"step": 0}, {"step": -0.1}, {"step": float("nan")}, {"period": 0}, {"period": 1.5}])
def test_beta_schedule_validation(kwargs):
    with pytest.raises(ValueError):
        BetaSchedule(**kwargs)


def test_beta_rejects_negative_epoch():
    with pytest.raises(ValueError):
        BetaSchedule()(-1)


def test_temperature_exp_and_linear():
    exp = TemperatureSchedule(tau_start=1.0, tau_end=100.0, epochs=10, kind="exp")
    assert exp(0) == 1.0 and exp(10) == 100.0 and exp(25) == 100.0
    assert exp(5) == pytest.approx(10.0)
    linear = TemperatureSchedule(tau_start=2.0, tau_end=12.0, epochs=5, kind="linear")
    assert [linear(e) for e in range(7)] == pytest.approx([2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 12.0])
    values = [exp(e) for e in range(12)]
    assert all(a <= b for a, b in zip(values, values[1:]))
    assert all(math.isfinite(v) and v > 0 for v in values)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tau_start": 0.0},
        {"tau_start": 5.0, "tau_end": 1.0},
        {"epochs": 0},
        {"kind": "cosine"},
        {"tau_end": float("inf")},
    ],
)
def test_temperature_validation(kwargs):
    with pytest.raises(ValueError):
        TemperatureSchedule(**kwargs)
