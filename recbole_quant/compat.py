"""Make RecBole 1.2.1 run on NumPy 2.x, SciPy >= 1.13 and torch >= 2.6.

RecBole 1.2.1 was released against NumPy 1.x, SciPy 1.10 and torch 2.0. On today's stack
it breaks in four places (reproduced in ``docs/compat.md``):

1. NumPy 2 removed the ``np.float``/``np.bool``/``np.int``/... aliases. RecBole's
   ``Config.compatibility_settings`` assigns ``np.float = np.float_`` (itself removed in
   NumPy 2), so every ``Config(...)`` raises, and ``recbole/evaluator/metrics.py`` still uses
   ``np.float`` and ``np.bool``. Fix: define the missing aliases once, pointing at the
   types NumPy 1.x used for them.
2. SciPy removed ``dok_matrix._update``, which RecBole's own LightGCN, NGCF, GCMC and NCL call
   to build their adjacency. Fix: restore it as a plain dict update (what it did).
3. torch >= 2.6 loads checkpoints with ``weights_only=True`` and RecBole pickles its whole
   ``Config`` into them, so reloading the best model fails after training. That one is not
   patched here: :mod:`recbole_quant.checkpoint` writes checkpoints that load with
   ``weights_only=True`` instead (no arbitrary pickle anywhere).

Warnings that RecBole 1.2.1 itself triggers on every run, and that a user can do nothing
about, are silenced by category and message, nothing else (:data:`RECBOLE_NOISE`, seven
entries, listed in ``docs/compat.md``): torch's ``torch.cuda.amp.GradScaler`` FutureWarning
from RecBole's trainer, pandas' chained-assignment and copy warnings from RecBole's dataset
code, torch's non-writable-array and list-of-arrays tensor warnings from RecBole's data code,
and torch's ``torch.sparse.FloatTensor`` deprecation from RecBole's graph models.

4. pandas 3 (copy-on-write): RecBole's ``Dataset._fill_nan`` fills missing values with
   ``feat[field].fillna(..., inplace=True)``, which now fills a temporary copy and leaves
   the frame as it was (pandas' ``ChainedAssignmentError`` warning, silenced with the rest
   of RECBOLE_NOISE): missing float values stay NaN. Fix: :func:`_fill_nan`, the same
   imputation assigned back to the frame (tokens -> 0, the ``[PAD]`` id; floats -> the
   column mean; sequences -> empty arrays), which is what RecBole does on pandas 2. Applied
   by :func:`apply_dataset_fixes` when :mod:`recbole_quant.quick_start` loads (importing
   RecBole's dataset module here would make ``import recbole_quant`` slow).

``recbole.quick_start`` is never imported by this package: it imports ``ray`` (which needs
``pkg_resources``, gone from setuptools >= 82). :mod:`recbole_quant.quick_start` replaces it.

:func:`apply` is idempotent and is called once by ``import recbole_quant``.
"""

import warnings

import numpy as np
import scipy.sparse as sp

# (category, message regex) of the warnings RecBole 1.2.1 raises from its own code.
RECBOLE_NOISE = (
    (FutureWarning, r".*torch\.cuda\.amp\.GradScaler.*"),
    (Warning, r".*[Cc]hained assignment.*"),
    (Warning, r".*A value is being set on a copy of a DataFrame.*"),
    (Warning, r".*The inplace keyword in DataFrame.*"),
    (UserWarning, r".*The given NumPy array is not writable.*"),
    (UserWarning, r".*torch\.sparse\.SparseTensor.*is deprecated.*"),
    (UserWarning, r".*Creating a tensor from a list of numpy\.ndarrays is extremely slow.*"),
)

# The NumPy 1.x meaning of each alias RecBole uses (np.float was Python float -> float64).
NUMPY_ALIASES = {
    "float": np.float64,
    "int": np.int_,
    "bool": np.bool_,
    "complex": np.complex128,
    "object": np.object_,
    "str": np.str_,
    "long": np.int_,
    "unicode": np.str_,
    # RecBole's own compatibility_settings reads these two, removed in NumPy 2.
    "float_": np.float64,
    "complex_": np.complex128,
    "unicode_": np.str_,
}

_applied = False
_dataset_fixed = False


def _dok_update(self, data):
    """``dok_matrix._update`` as SciPy < 1.13 had it: a raw dict update, no checks."""
    self._dict.update(data)


def apply():
    """Apply every fix once; later calls do nothing. Returns the list of fixes applied."""
    global _applied
    if _applied:
        return []
    applied = []
    for name, target in NUMPY_ALIASES.items():
        # hasattr on np.float etc. raises a FutureWarning/AttributeError on some versions:
        # look in the module dict instead.
        if name not in np.__dict__:
            setattr(np, name, target)
            applied.append(f"numpy.{name}")
    if not hasattr(sp.dok_matrix, "_update") and hasattr(sp.dok_matrix((1, 1)), "_dict"):
        sp.dok_matrix._update = _dok_update
        applied.append("scipy.sparse.dok_matrix._update")
    for category, message in RECBOLE_NOISE:
        warnings.filterwarnings("ignore", message=message, category=category)
    _applied = True
    return applied


def _fill_nan(self):
    """RecBole 1.2.1's ``Dataset._fill_nan`` with each filled column assigned back to its
    frame: ``feat[field].fillna(..., inplace=True)`` fills nothing under pandas 3."""
    from recbole.utils import FeatureType

    for feat_name in self.feat_name_list:
        feat = getattr(self, feat_name)
        for field in feat:
            ftype = self.field2type[field]
            if ftype == FeatureType.TOKEN:
                feat[field] = feat[field].fillna(value=0)
            elif ftype == FeatureType.FLOAT:
                feat[field] = feat[field].fillna(value=feat[field].mean())
            else:
                dtype = np.int64 if ftype == FeatureType.TOKEN_SEQ else np.float64
                feat[field] = feat[field].apply(
                    lambda x: np.array([], dtype=dtype) if isinstance(x, float) else x
                )


def apply_dataset_fixes():
    """Patch RecBole's ``Dataset`` (fix 4) once; later calls do nothing."""
    global _dataset_fixed
    if _dataset_fixed:
        return
    from recbole.data.dataset import Dataset

    Dataset._fill_nan = _fill_nan
    _dataset_fixed = True
