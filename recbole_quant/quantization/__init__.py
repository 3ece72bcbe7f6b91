"""Quantisers, gradient estimators, schedules and the Hessian-trace utility.

Layers (``nn.Module``, :mod:`.quantizers`): :class:`UniformQuantizer`, :class:`ScaledSign`,
:class:`TanhSign`. Functional forms and ``autograd.Function`` classes live in
:mod:`.estimators`; epoch schedules in :mod:`.schedules`; the Hessian-aware ``delta`` of
HQ-GNN's GSTE in :mod:`.hessian`. Nothing here knows about RecBole. Each module's
``__all__`` is what this package exports.
"""

from . import estimators, hessian, quantizers, schedules
from .estimators import *  # noqa: F401,F403
from .hessian import *  # noqa: F401,F403
from .quantizers import *  # noqa: F401,F403
from .schedules import *  # noqa: F401,F403

__all__ = [*quantizers.__all__, *estimators.__all__, *schedules.__all__, *hessian.__all__]
