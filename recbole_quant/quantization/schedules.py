"""Epoch-indexed schedules (pure functions of the epoch, so nothing to checkpoint).

* :class:`BetaSchedule` - HashGNN's guided-STE probability of using the code.
* :class:`TemperatureSchedule` - rising ``tau`` for the tanh relaxation (L2Q-GCN-anl).

Epochs count from 0, as RecBole's trainer does.
"""

from __future__ import annotations

import math

__all__ = ["BetaSchedule", "TemperatureSchedule"]


def _check_epoch(epoch: int) -> int:
    if isinstance(epoch, bool) or int(epoch) != epoch or epoch < 0:
        raise ValueError(f"epoch must be an int >= 0, got {epoch!r}")
    return int(epoch)


class BetaSchedule:
    """``beta(epoch) = min(1, step * floor(epoch / period))`` (HashGNN code: 0.02, 2).

    The released code falls back to ``beta = 0`` after its list ends; this clamps at 1.

    Parameters
    ----------
    step : float, > 0
        Increase of beta per period.
    period : int, >= 1
        Epochs per increase.
    """

    def __init__(self, step: float = 0.02, period: int = 2):
        step = float(step)
        if not (step > 0 and math.isfinite(step)):
            raise ValueError(f"step must be a finite float > 0, got {step!r}")
        if isinstance(period, bool) or int(period) != period or period < 1:
            raise ValueError(f"period must be an int >= 1, got {period!r}")
        self.step = step
        self.period = int(period)
        # Smallest number of increments whose float product reaches 1, found on the same
        # float expression __call__ uses, so epochs_to_full() and __call__ never disagree
        # (e.g. 0.1 * 10 is 1.0, but some steps land just below 1 after ceil(1/step)).
        increments = max(1, math.ceil(1.0 / step))
        while increments > 1 and step * (increments - 1) >= 1.0:
            increments -= 1
        while step * increments < 1.0:
            increments += 1
        self._increments_to_full = increments

    def __call__(self, epoch: int) -> float:
        """Beta for ``epoch`` (float in [0, 1])."""
        increments = _check_epoch(epoch) // self.period
        return min(1.0, self.step * increments)

    def epochs_to_full(self) -> int:
        """First epoch at which ``beta == 1`` (pure codes, plain STE)."""
        return self.period * self._increments_to_full

    def __repr__(self) -> str:
        return f"BetaSchedule(step={self.step}, period={self.period})"


class TemperatureSchedule:
    """Temperature rising from ``tau_start`` (epoch 0) to ``tau_end`` (epoch ``epochs``).

    ``kind='exp'``: geometric, ``tau_start * (tau_end / tau_start) ** (e / epochs)``;
    ``kind='linear'``: ``tau_start + (tau_end - tau_start) * e / epochs``.
    Constant at ``tau_end`` from epoch ``epochs`` on.

    Parameters
    ----------
    tau_start : float, > 0
    tau_end : float, >= tau_start
        Default 100: with embeddings of magnitude ~0.05 (LightGCN-propagated, N(0, 0.1^2)
        init) ``tanh(100 x)`` is within a few percent of ``sign(x)`` for most entries.
    epochs : int, >= 1
        Epochs to reach ``tau_end``.
    kind : {'exp', 'linear'}
    """

    KINDS = ("exp", "linear")

    def __init__(
        self, tau_start: float = 1.0, tau_end: float = 100.0, epochs: int = 100, kind: str = "exp"
    ):
        tau_start, tau_end = float(tau_start), float(tau_end)
        if not (tau_start > 0 and math.isfinite(tau_start)):
            raise ValueError(f"tau_start must be a finite float > 0, got {tau_start!r}")
        if not (tau_end >= tau_start and math.isfinite(tau_end)):
            raise ValueError(f"tau_end must be finite and >= tau_start, got {tau_end!r}")
        if isinstance(epochs, bool) or int(epochs) != epochs or epochs < 1:
            raise ValueError(f"epochs must be an int >= 1, got {epochs!r}")
        if kind not in self.KINDS:
            raise ValueError(f"kind must be one of {self.KINDS}, got {kind!r}")
        self.tau_start = tau_start
        self.tau_end = tau_end
        self.epochs = int(epochs)
        self.kind = kind

    def __call__(self, epoch: int) -> float:
        """Temperature for ``epoch`` (float > 0)."""
        progress = min(_check_epoch(epoch), self.epochs) / self.epochs
        if progress >= 1.0:
            return self.tau_end
        if self.kind == "exp":
            return self.tau_start * (self.tau_end / self.tau_start) ** progress
        return self.tau_start + (self.tau_end - self.tau_start) * progress

    def __repr__(self) -> str:
        return (
            f"TemperatureSchedule(tau_start={self.tau_start}, tau_end={self.tau_end}, "
            f"epochs={self.epochs}, kind={self.kind!r})"
        )
