"""Quantisers, gradient estimators, schedules and the Hessian-trace utility.

Layers (``nn.Module``): :class:`UniformQuantizer`, :class:`ScaledSign`, :class:`TanhSign`. Functional forms and ``autograd.Function`` classes live in
:mod:`.estimators`; epoch schedules in :mod:`.schedules`; the Hessian-aware ``delta`` of
HQ-GNN's GSTE in :mod:`.hessian`. Nothing here knows about RecBole.
"""

from .estimators import (
    GaussianSignFunction,
    RoundGSTEFunction,
    ScaledSignOutput,
    SignSTEFunction,
    gaussian_dirac,
    guided_mask,
    guided_mix,
    hard_sign,
    round_gste,
    round_half_up,
    scaled_sign,
    sign_gaussian,
    sign_ste,
    tanh_relax,
)
from .hessian import (
    HessianDeltaEstimator,
    HessianStats,
    gste_delta,
    hessian_statistics,
    hutchinson_trace,
)
from .quantizers import ScaledSign, TanhSign, UniformQuantizer, normalize_to_unit
from .schedules import BetaSchedule, TemperatureSchedule

__all__ = [
    # layers
    "UniformQuantizer",
    "ScaledSign",
    "TanhSign",
    # functional estimators
    "hard_sign",
    "sign_ste",
    "sign_gaussian",
    "gaussian_dirac",
    "round_half_up",
    "round_gste",
    "normalize_to_unit",
    "scaled_sign",
    "ScaledSignOutput",
    "tanh_relax",
    "guided_mask",
    "guided_mix",
    # autograd Functions
    "SignSTEFunction",
    "GaussianSignFunction",
    "RoundGSTEFunction",
    # schedules
    "BetaSchedule",
    "TemperatureSchedule",
    # Hessian-aware delta
    "hessian_statistics",
    "hutchinson_trace",
    "gste_delta",
    "HessianStats",
    "HessianDeltaEstimator",
]
