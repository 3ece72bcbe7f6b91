"""The one place that lists the plugin's models, and model-name resolution.

``recbole.utils.get_model`` only searches ``recbole.model.*`` and, for a name it does not
know, fails with ``ModuleNotFoundError: No module named 'lightgbm'`` (it ends its search in
``exlib_recommender``). :func:`get_model` resolves the plugin's names first, then RecBole's
by looking for the module file, and raises :class:`UnknownModelError` naming what exists.
"""

import importlib
import importlib.util
import os

from recbole_quant.errors import UnknownModelError

# name -> (module, class). Add a model here and nowhere else.
PLUGIN_MODELS = {
    "HQGNN": ("recbole_quant.model.general_recommender.hqgnn", "HQGNN"),
    "HashGNN": ("recbole_quant.model.general_recommender.hashgnn", "HashGNN"),
    "L2QGCN": ("recbole_quant.model.general_recommender.l2qgcn", "L2QGCN"),
}

# RecBole's model packages, in the order recbole.utils.get_model searches them.
_RECBOLE_SUBMODULES = (
    "general_recommender",
    "context_aware_recommender",
    "sequential_recommender",
    "knowledge_aware_recommender",
    "exlib_recommender",
)


def plugin_model_names():
    """Names of the plugin's models whose module is present, in registry order."""
    return [
        name
        for name, (module, _) in PLUGIN_MODELS.items()
        if importlib.util.find_spec(module) is not None
    ]


def _recbole_model_dir():
    # find_spec of a top-level package does not import it: listing RecBole's models this way
    # costs no torch import, so an unknown name is reported in well under a second.
    spec = importlib.util.find_spec("recbole")
    return os.path.join(os.path.dirname(spec.origin), "model")


def _recbole_class_name(path, module_name):
    """The model class defined in ``path`` whose lower-cased name is ``module_name``."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("class "):
                cls = line[6:].split("(")[0].split(":")[0].strip()
                if cls.lower() == module_name:
                    return cls
    return None


def recbole_model_names(submodule="general_recommender"):
    """Class names of RecBole's models in one model package (read from the files)."""
    folder = os.path.join(_recbole_model_dir(), submodule)
    if not os.path.isdir(folder):
        return []
    names = []
    for file in sorted(os.listdir(folder)):
        if file.endswith(".py") and not file.startswith("_"):
            cls = _recbole_class_name(os.path.join(folder, file), file[:-3])
            if cls:
                names.append(cls)
    return names


def _find_recbole_model(name):
    """(module path, class name) of RecBole's model file for ``name``, or None."""
    lowered = name.lower()
    for submodule in _RECBOLE_SUBMODULES:
        path = os.path.join(_recbole_model_dir(), submodule, lowered + ".py")
        if os.path.isfile(path):
            return f"recbole.model.{submodule}.{lowered}", _recbole_class_name(path, lowered)
    return None


def get_model(name):
    """Return the model class for ``name``: a plugin model first, then RecBole's.

    Raises
    ------
    UnknownModelError
        ``name`` is neither; the message lists the available models.
    """
    if not isinstance(name, str) or not name:
        raise UnknownModelError(f"model must be a non-empty name, got {name!r}.")
    if name in PLUGIN_MODELS and importlib.util.find_spec(PLUGIN_MODELS[name][0]):
        module, cls = PLUGIN_MODELS[name]
        return getattr(importlib.import_module(module), cls)
    found = _find_recbole_model(name)
    if found is not None:
        module, cls = found
        if cls is not None and cls != name:
            raise UnknownModelError(
                f"Unknown model '{name}'. Did you mean '{cls}'? Model names are case-sensitive."
            )
        if cls is not None:
            return getattr(importlib.import_module(module), cls)
    raise UnknownModelError(unknown_model_message(name))


def unknown_model_message(name):
    plugin = ", ".join(plugin_model_names()) or "(none installed)"
    general = ", ".join(recbole_model_names("general_recommender"))
    hint = ""
    for candidate in plugin_model_names() + recbole_model_names("general_recommender"):
        if candidate.lower() == str(name).lower():
            hint = f" Did you mean '{candidate}'? Model names are case-sensitive."
    return (
        f"Unknown model '{name}'.{hint}\n"
        f"  recbole_quant models: {plugin}\n"
        f"  RecBole general recommenders: {general}\n"
        "  (RecBole's sequential, context-aware and knowledge-aware models are accepted too; "
        "`python run_recbole_quant.py --list-models` prints this list.)"
    )


def is_plugin_model(name_or_class):
    name = name_or_class if isinstance(name_or_class, str) else name_or_class.__name__
    return name in PLUGIN_MODELS
