"""recbole_quant: quantized graph recommenders as RecBole models.

Importing the package applies the RecBole 1.2.1 compatibility fixes once
(:mod:`recbole_quant.compat`). Public API (imported lazily, so ``--list-models`` and name
errors answer without loading torch):

* :class:`Config` -- RecBole's Config, aware of the plugin's models and defaults;
* :func:`run_recbole_quant` -- train + evaluate one model (RecBole's ``run_recbole``);
* :func:`get_model`, :data:`PLUGIN_MODELS` -- the model registry.
"""

from recbole_quant import compat as _compat

_compat.apply()

__version__ = "0.1.0"

_LAZY = {
    "Config": ("recbole_quant.config", "Config"),
    "run_recbole_quant": ("recbole_quant.quick_start", "run_recbole_quant"),
    "get_model": ("recbole_quant.registry", "get_model"),
    "plugin_model_names": ("recbole_quant.registry", "plugin_model_names"),
    "PLUGIN_MODELS": ("recbole_quant.registry", "PLUGIN_MODELS"),
}

__all__ = list(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'recbole_quant' has no attribute {name!r}")
