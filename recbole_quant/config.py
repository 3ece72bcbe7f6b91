"""``recbole_quant.Config``: RecBole's Config, aware of the plugin's models and defaults.

Three overrides of ``recbole.config.Config`` (the RecBole-GNN recipe), nothing else rewritten:

* model lookup: plugin models first, then RecBole's (:func:`recbole_quant.registry.get_model`);
* internal defaults: after RecBole's own ``overall.yaml`` / ``model/<Model>.yaml`` /
  ``dataset/<dataset>.yaml``, the plugin's ``properties/overall.yaml`` and
  ``properties/model/<Model>.yaml`` are loaded, so the priority is
  RecBole internals < plugin properties < config files < config dict < command line;
* the command line is taken from ``cmd_args`` (default: ``sys.argv[1:]``, as RecBole does), and
  a key that no part of the configuration knows -- on the command line, in a config file or in
  a config dict -- is an error naming the closest known keys, not silently kept.

Nothing read from the command line, a file or a checkpoint runs as code: RecBole converts
strings with ``eval`` and reads yaml with ``yaml.FullLoader``; here strings are read as YAML
scalars / flow values (:func:`parse_config_value`) and yaml files with a safe loader.

It also points fixed-split datasets at their files: if ``<data_path>/<dataset>/`` holds
``<dataset>.train.inter``, ``.valid.inter`` and ``.test.inter`` and no ``benchmark_filename``
is given, ``benchmark_filename`` becomes ``[train, valid, test]``; and a given ``data_path``
wins for ``ml-100k`` too (RecBole always points that name at its bundled copy).
"""

import difflib
import functools
import glob
import os
import re
import sys

import yaml
from recbole.config import Config as RecBoleConfig

from recbole_quant import compat
from recbole_quant.errors import ConfigFileError, ConfigValueError, UnknownOptionError
from recbole_quant.registry import get_model

PROPERTIES_DIR = os.path.join(os.path.dirname(os.path.realpath(__file__)), "properties")
PRESETS_DIR = os.path.join(PROPERTIES_DIR, "presets")
BENCHMARK_PARTS = ("train", "valid", "test")
BUNDLED_DATASET = "ml-100k"  # shipped inside RecBole's wheel


class ConfigYamlLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` plus RecBole's float resolver (``1e-3`` is a float, not a string).

    RecBole adds that resolver to ``yaml.FullLoader``, which can build Python objects from
    tags; the safe loader builds plain values only.
    """


ConfigYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:
     [-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def parse_config_value(text):
    """A ``--key=value`` string as RecBole users write it, read as a YAML scalar or flow value.

    ``0.01`` -> 0.01, ``1e9`` -> 1e9, ``[10,20]`` -> [10, 20], ``False`` / ``false`` -> False,
    ``None`` / ``~`` -> None, ``"{'split': {'RS': [0.8,0.1,0.1]}}"`` -> a dict (RecBole's
    single-quoted dicts are YAML flow mappings), anything else (``[0,inf)``, ``a: b``) stays
    the string it is.
    Never evaluated: ``__import__('os')...`` is just a string.
    """
    if not isinstance(text, str):
        return text
    stripped = text.strip()
    if stripped == "None":  # Python's spelling, accepted by RecBole's eval
        return None
    try:
        value = yaml.load(stripped, Loader=ConfigYamlLoader)
    except yaml.YAMLError:
        return text  # e.g. RecBole's intervals '[0,inf)': text, as RecBole's eval left them
    if isinstance(value, (dict, list)) and stripped[:1] not in "[{":
        return text  # 'a: b' or '- a' are block YAML, not a flow value: keep the text
    return value


def plugin_property_files(model_name):
    """The plugin's yaml files for ``model_name``, in load order (existing ones only)."""
    files = [
        os.path.join(PROPERTIES_DIR, "overall.yaml"),
        os.path.join(PROPERTIES_DIR, "model", f"{model_name}.yaml"),
    ]
    return [f for f in files if os.path.isfile(f)]


def _yaml_keys(path):
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    return set(data) if isinstance(data, dict) else set()


@functools.lru_cache(maxsize=None)
def _recbole_known_keys():
    """Every key RecBole itself defines or reads, independent of the model."""
    import recbole

    root = os.path.dirname(recbole.__file__)
    keys = set()
    props = os.path.join(root, "properties")
    for path in [os.path.join(props, "overall.yaml")] + glob.glob(
        os.path.join(props, "dataset", "*.yaml")
    ) + glob.glob(os.path.join(props, "quick_start_config", "*.yaml")):
        keys |= _yaml_keys(path)
    pattern = re.compile(r"config\[[\"'](\w+)[\"']\]")
    for dirpath, _, files in os.walk(root):
        if os.sep + "model" + os.sep in dirpath + os.sep:
            continue  # model-specific keys come from the model's own yaml
        for name in files:
            if name.endswith(".py"):
                with open(os.path.join(dirpath, name), encoding="utf-8") as f:
                    keys |= set(pattern.findall(f.read()))
    from recbole.utils import (
        dataset_arguments,
        evaluation_arguments,
        general_arguments,
        training_arguments,
    )

    keys |= set(general_arguments + training_arguments + evaluation_arguments + dataset_arguments)
    # what RecBole's run_recboles puts into the config dict of a distributed run
    keys |= {"world_size", "ip", "port", "nproc", "offset"}
    return frozenset(keys)


@functools.lru_cache(maxsize=None)
def _plugin_read_keys():
    """Keys the plugin's own code reads for every model (e.g. ``fast_propagation``)."""
    root = os.path.dirname(os.path.realpath(__file__))
    pattern = re.compile(r"config\[[\"'](\w+)[\"']\]")
    keys = set()
    for dirpath, _, files in os.walk(root):
        if os.sep + "model" + os.sep in dirpath + os.sep:
            continue  # model-specific keys come from the model's own yaml and source
        for name in files:
            if name.endswith(".py"):
                with open(os.path.join(dirpath, name), encoding="utf-8") as f:
                    keys |= set(pattern.findall(f.read()))
    return frozenset(keys)


def preset_names():
    """Names of the shipped presets (``properties/presets/<name>.yaml``)."""
    if not os.path.isdir(PRESETS_DIR):
        return []
    return sorted(f[:-5] for f in os.listdir(PRESETS_DIR) if f.endswith(".yaml"))


def preset_file(name):
    """The yaml file of preset ``name`` (None for no preset); an unknown name lists them."""
    if name is None:
        return None
    if name not in preset_names():
        raise ConfigValueError(
            f"Unknown preset {name!r}. Presets: {', '.join(preset_names()) or '(none)'} "
            f"(files in {PRESETS_DIR}); or pass your own yaml with --config_files."
        )
    return os.path.join(PRESETS_DIR, f"{name}.yaml")


def _preset_name(cmd_args, config_dict):
    for arg in cmd_args:
        if arg.startswith("--preset="):
            value = arg.split("=", 1)[1].strip()
            return value or None
    value = (config_dict or {}).get("preset")
    return None if value in (None, "") else str(value)


def known_keys(model_name, model_class=None):
    """Keys that make sense for ``model_name``: RecBole's, the plugin's, the model's own."""
    import recbole

    keys = set(_recbole_known_keys()) | _plugin_read_keys()
    keys |= {"model", "dataset", "config_files"}
    recbole_model_yaml = os.path.join(
        os.path.dirname(recbole.__file__), "properties", "model", f"{model_name}.yaml"
    )
    for path in plugin_property_files(model_name) + [recbole_model_yaml]:
        if os.path.isfile(path):
            keys |= _yaml_keys(path)
    if model_class is not None:
        # RecBole models read keys without a yaml default (e.g. NGCF's require_pow):
        # accept what the model's source reads.
        try:
            import inspect

            source = inspect.getsource(sys.modules[model_class.__module__])
            keys |= set(re.findall(r"config\[[\"'](\w+)[\"']\]", source))
        except (OSError, TypeError, KeyError):
            pass
    return keys


class Config(RecBoleConfig):
    """RecBole's ``Config`` with the plugin's models, defaults and checks.

    Args:
        model (str or type): model name (plugin or RecBole) or class.
        dataset (str): dataset name; ``ml-100k`` is shipped with RecBole and works offline.
        config_file_list (list of str): yaml files, later files win.
        config_dict (dict): overrides, above the files.
        cmd_args (list of str, optional): ``--key=value`` overrides, above everything.
            ``None`` reads ``sys.argv[1:]`` like RecBole; pass ``[]`` to ignore the command line.
    """

    def __init__(
        self, model=None, dataset=None, config_file_list=None, config_dict=None, cmd_args=None
    ):
        self._cmd_args = list(sys.argv[1:] if cmd_args is None else cmd_args)
        preset = preset_file(_preset_name(self._cmd_args, config_dict))
        if preset is not None:  # --preset=NAME is passing its file first in --config_files
            config_file_list = [preset] + list(config_file_list or [])
        super().__init__(
            model=model,
            dataset=dataset,
            config_file_list=config_file_list,
            config_dict=config_dict,
        )
        self._check_keys()

    def compatibility_settings(self):
        compat.apply()

    def _build_yaml_loader(self):
        return ConfigYamlLoader

    def _convert_config_dict(self, config_dict):
        # RecBole evals every string here; read them as YAML values instead (never code)
        return {key: parse_config_value(value) for key, value in config_dict.items()}

    def _load_config_files(self, file_list):
        self._file_keys = {}
        merged = {}
        for path in file_list or []:
            data = read_config_file(path)
            self._file_keys.update({key: path for key in data})
            merged.update(data)
        return merged

    def _load_cmd_line(self):
        cmd_config_dict = {}
        for arg in self._cmd_args:
            if not arg.startswith("--") or "=" not in arg:
                raise UnknownOptionError(
                    f"Cannot read command-line argument '{arg}': overrides are written "
                    "--key=value (e.g. --learning_rate=0.01)."
                )
            key, value = arg[2:].split("=", 1)
            if key in cmd_config_dict and cmd_config_dict[key] != value:
                raise UnknownOptionError(
                    f"--{key} is given twice with different values "
                    f"({cmd_config_dict[key]!r} and {value!r})."
                )
            cmd_config_dict[key] = value
        return self._convert_config_dict(cmd_config_dict)

    def _get_model_and_dataset(self, model, dataset):
        if model is None:
            model = self.external_config_dict.get("model")
            if model is None:
                raise UnknownOptionError(
                    "No model given: pass --model=NAME (or `model:` in a config file)."
                )
        if dataset is None:
            dataset = self.external_config_dict.get("dataset", "ml-100k")
        if isinstance(model, str):
            model_class = get_model(model)
        else:
            model_class, model = model, model.__name__
        return model, model_class, dataset

    def _load_internal_config_dict(self, model, model_class, dataset):
        super()._load_internal_config_dict(model, model_class, dataset)
        for path in plugin_property_files(model):
            self._update_internal_config_dict(path)

    def _init_device(self):
        # A worker of a multi-process run (config_dict carries its local_rank): RecBole would
        # ask for nccl and a GPU; recbole_quant.distributed picks gloo on CPU.
        cfg = self.final_config_dict
        if "local_rank" not in cfg:
            return super()._init_device()
        from recbole_quant import distributed

        gpu_id = cfg["gpu_id"]
        cfg["gpu_id"] = ",".join(map(str, gpu_id)) if isinstance(gpu_id, (tuple, list)) else str(gpu_id)
        os.environ["CUDA_VISIBLE_DEVICES"] = cfg["gpu_id"]
        distributed.init_process_group(cfg)

    def _set_default_parameters(self):
        given_data_path = self.external_config_dict.get("data_path")
        super()._set_default_parameters()
        if self.dataset == BUNDLED_DATASET and given_data_path is not None:
            # RecBole points ml-100k at its bundled copy whatever data_path says
            self.final_config_dict["data_path"] = os.path.join(given_data_path, self.dataset)
        self._detect_benchmark_files()
        eval_path = self.final_config_dict.get("eval_path", "auto")
        if eval_path not in ("auto", "standard"):
            raise ConfigValueError(
                f"eval_path={eval_path!r} is not valid: choose 'auto' (packed top-k) or 'standard'."
            )

    def _detect_benchmark_files(self):
        cfg = self.final_config_dict
        if cfg.get("benchmark_filename") or uses_bundled_dataset(cfg):
            return
        folder = cfg["data_path"]
        files = [os.path.join(folder, f"{self.dataset}.{p}.inter") for p in BENCHMARK_PARTS]
        if all(os.path.isfile(f) for f in files):
            cfg["benchmark_filename"] = list(BENCHMARK_PARTS)

    def _check_keys(self):
        """Unknown keys from the command line, config files and the config dict are errors."""
        sources = [(key, f"--{key}") for key in self.cmd_config_dict]
        sources += [
            (key, f"'{key}' in config file {path}") for key, path in self._file_keys.items()
        ]
        sources += [(key, f"'{key}' in config_dict") for key in self.variable_config_dict]
        if not sources:
            return
        known = known_keys(self.model, self.model_class)
        for key, where in sources:
            if key not in known:
                close = difflib.get_close_matches(key, sorted(known), n=3)
                prefix = "--" if where.startswith("--") else ""
                hint = f" Did you mean: {', '.join(prefix + c for c in close)}?" if close else ""
                raise UnknownOptionError(
                    f"Unknown option {where} for model {self.model}.{hint} "
                    f"The model's options are in properties/model/{self.model}.yaml; "
                    "RecBole's are in its documentation (config settings)."
                )


def bundled_data_path():
    """Where RecBole's wheel keeps ml-100k (RecBole's own ``data_path`` for that name)."""
    import recbole

    return os.path.join(os.path.dirname(recbole.__file__), "dataset_example", BUNDLED_DATASET)


def uses_bundled_dataset(config):
    """True when the config reads RecBole's bundled ml-100k (no files of the user's)."""
    return config["dataset"] == BUNDLED_DATASET and os.path.realpath(
        config["data_path"]
    ) == os.path.realpath(bundled_data_path())


def read_config_file(path):
    """A yaml config file as a dict, read safely; clear errors naming the file and line."""
    if not os.path.isfile(path):
        where = "is a folder, not a yaml file" if os.path.isdir(path) else "does not exist"
        raise ConfigFileError(
            f"Config file {path} {where} (--config_files takes space-separated yaml files)."
        )
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as err:
        line = text_line_of_byte(path, err.start)
        raise ConfigFileError(
            f"{path}, line {line}: byte 0x{err.object[err.start]:02x} is not UTF-8; "
            "save the file as UTF-8."
        ) from None
    try:
        data = yaml.load(text, Loader=ConfigYamlLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}, line {mark.line + 1}" if mark is not None else path
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigFileError(
            f"{where}: not valid YAML ({problem}). Expected 'key: value' lines, "
            "e.g. 'learning_rate: 0.001'."
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigFileError(
            f"{path}: expected 'key: value' lines (a YAML mapping), found a "
            f"{type(data).__name__}."
        )
    return data


def text_line_of_byte(path, offset):
    """1-based line number of byte ``offset`` in ``path``."""
    with open(path, "rb") as f:
        return f.read(offset).count(b"\n") + 1
