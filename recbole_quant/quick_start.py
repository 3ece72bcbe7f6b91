"""``run_recbole_quant``: train and test one model, RecBole's ``run_recbole`` without ray.

``recbole.quick_start`` imports ray (broken on new setuptools) and hyperopt; this module does
the same steps with the plugin's Config, dataset checks and trainers, and returns the same
dict as ``run_recbole`` plus run statistics used by the comparison report.
"""

import contextlib
import hashlib
import importlib
import logging
import os
import shlex
from collections import OrderedDict
from logging import getLogger
from time import perf_counter

import torch
from recbole.data import create_dataset, data_preparation
from recbole.data.utils import create_samplers, get_dataloader, save_split_dataloaders
from recbole.utils import ModelType, dict2str, get_local_time, init_logger, init_seed, set_color

from recbole_quant import compat, distributed
from recbole_quant.checkpoint import reserve_file_name
from recbole_quant.config import Config
from recbole_quant.data.checks import check_dataset_files
from recbole_quant.model import options
from recbole_quant.errors import (
    ConfigValueError,
    MalformedDatasetError,
    RecboleQuantError,
    TrainingInterrupted,
)
from recbole_quant.sparse.baselines import apply_fast_propagation
from recbole_quant.summary import (
    LOG_FILE_ONLY,
    changed_options,
    config_dump,
    device_used,
    run_summary,
    skip_log_file_only,
)
from recbole_quant.trainer import get_trainer

compat.apply_dataset_fixes()  # before any dataset is built (recbole_quant.compat, fix 4)


def load_data(config):
    """Check the files, build RecBole's dataset and its train/valid/test loaders.

    RecBole's ``create_dataset`` / ``data_preparation`` unpickle
    ``<checkpoint_dir>/<dataset>-<Class>.pth`` and ``<dataset>-for-<model>-dataloader.pth``
    whenever those files exist (even with ``save_dataset: False``): a file planted there
    would run code. Unless ``trust_saved_dataset: True``, the dataset and its loaders are
    built from the atomic files and those caches are never read.
    """
    check_dataset_files(config)
    trusted = bool(config["trust_saved_dataset"])
    try:
        dataset = create_dataset(config) if trusted else _build_dataset(config)
    except RecboleQuantError:
        raise
    except Exception as err:  # pandas / RecBole parsing errors: name the dataset and folder
        raise MalformedDatasetError(
            f"RecBole could not load dataset '{config['dataset']}' from "
            f"{config['data_path']}: {type(err).__name__}: {err}"
        ) from err
    with distributed.full_loaders(config):  # every rank draws the same global batches
        if trusted:
            train_data, valid_data, test_data = data_preparation(config, dataset)
        else:
            train_data, valid_data, test_data = _build_loaders(config, dataset)
    return dataset, train_data, valid_data, test_data


def _build_dataset(config):
    """RecBole's ``create_dataset`` without its pickle-loading branch (same class choice)."""
    module = importlib.import_module("recbole.data.dataset")
    name = config["model"] + "Dataset"
    if not hasattr(module, name):
        name = {
            ModelType.SEQUENTIAL: "SequentialDataset",
            ModelType.KNOWLEDGE: "KnowledgeBasedDataset",
        }.get(config["MODEL_TYPE"], "Dataset")
    dataset = getattr(module, name)(config)
    if config["save_dataset"]:
        dataset.save()
    return dataset


def _build_loaders(config, dataset):
    """RecBole's ``data_preparation`` without its pickle-loading branch."""
    from recbole.sampler import KGSampler

    built = dataset.build()
    train_sampler, valid_sampler, test_sampler = create_samplers(config, dataset, built)
    if config["MODEL_TYPE"] == ModelType.KNOWLEDGE:
        kg_sampler = KGSampler(
            dataset,
            config["train_neg_sample_args"]["distribution"],
            config["train_neg_sample_args"]["alpha"],
        )
        train = get_dataloader(config, "train")(
            config, built[0], train_sampler, kg_sampler, shuffle=True
        )
    else:
        train = get_dataloader(config, "train")(
            config, built[0], train_sampler, shuffle=config["shuffle"]
        )
    valid = get_dataloader(config, "valid")(config, built[1], valid_sampler, shuffle=False)
    test = get_dataloader(config, "test")(config, built[2], test_sampler, shuffle=False)
    if config["save_dataloaders"]:
        save_split_dataloaders(config, dataloaders=(train, valid, test))
    return train, valid, test


def run_recbole_quant(
    model=None,
    dataset=None,
    config_file_list=None,
    config_dict=None,
    saved=True,
    cmd_args=(),
):
    """Train ``model`` on ``dataset``, select on validation, evaluate on test.

    Args:
        model (str): a plugin model (``HQGNN``, ``HashGNN``, ``L2QGCN``) or any RecBole model.
        dataset (str): dataset name; default ``ml-100k`` (shipped with RecBole, offline).
        config_file_list (list of str): yaml config files.
        config_dict (dict): overrides above the files.
        saved (bool): save the best checkpoint and reload it for the test evaluation.
        cmd_args (list of str): ``--key=value`` overrides above everything (the CLI passes
            its own; the default ``()`` ignores ``sys.argv``, unlike RecBole).

    Returns:
        dict: ``best_valid_score``, ``valid_score_bigger``, ``best_valid_result``,
        ``test_result`` (as ``run_recbole``), plus ``model``, ``dataset``, ``epochs``,
        ``train_seconds``, ``seconds_per_epoch``, ``test_eval_seconds``, ``checkpoint``,
        ``config`` (the final Config), ``n_users`` / ``n_items`` (padding included),
        ``storage`` (a :class:`recbole_quant.packed.StorageReport` for quantized models, else
        ``None``), ``code_width`` (bits per code dimension of a quantized model),
        ``best_epoch`` (the epoch of the tested checkpoint), ``stop_reason`` (early
        stopping, or the epoch cap and whether validation was still improving), ``log_file`` and
        ``tensorboard_dir``. Rank 0 also logs :func:`recbole_quant.summary.run_summary`.
    """
    config = Config(
        model=model,
        dataset=dataset or "ml-100k",
        config_file_list=config_file_list,
        config_dict=config_dict,
        cmd_args=list(cmd_args),
    )
    _check_epochs(config)
    check_before_loading(config)  # bad options / a missing dataset: before any data loads
    settings = None if distributed.is_worker(config) else distributed.launch_settings(config)
    if settings is not None:  # --nproc / --world_size: this process launches the workers
        return distributed.launch(
            dict(model=model, dataset=dataset, config_file_list=config_file_list,
                 config_dict=config_dict, saved=saved, cmd_args=list(cmd_args)),
            settings,
            config,
        )
    with _cpu_threads(config):
        return _train_and_test(config, saved)


def _train_and_test(config, saved):
    """One process's run: log, load, train with early stopping, test, summarise."""
    _init_seed(config, config["seed"])
    _close_log_handlers()  # see _close_log_handlers: RecBole's init_logger needs a clean root
    log_file = None
    if distributed.is_rank_zero(config):
        log_file = _init_logger(config)
    else:
        distributed.quiet_logger()
    logger = getLogger()
    _log_config(config, logger, log_file)

    dataset_obj, train_data, valid_data, test_data = load_data(config)
    logger.info(dataset_obj)
    _check_topk(config, dataset_obj)

    # RecBole seeds seed + local_rank here; every rank must draw the same negatives (the split
    # is exact, see recbole_quant.distributed) and DDP copies rank 0's weights anyway
    _init_seed(config, config["seed"])
    model_obj = config.model_class(config, train_data._dataset).to(config["device"])
    if apply_fast_propagation(config, model_obj):  # RecBole's LightGCN / NGCF, same maths
        logger.info("fast_propagation: RecBole's graph products run on recbole_quant.sparse")
    logger.info(model_obj, extra=LOG_FILE_ONLY)

    trainer = get_trainer(config, config.model_class)(config, model_obj)
    if config["resume"]:
        trainer.resume_checkpoint(config["resume"])
        if trainer.start_epoch >= config["epochs"]:
            logger.warning(
                f"{config['resume']} is trained to epoch {trainer.start_epoch - 1} and "
                f"epochs={config['epochs']}: nothing left to train, testing the checkpoint."
            )
    start = perf_counter()
    try:
        best_valid_score, best_valid_result = trainer.fit(
            train_data, valid_data, saved=saved, show_progress=config["show_progress"]
        )
    except KeyboardInterrupt:
        _close_log_handlers()
        raise TrainingInterrupted(_interrupted_message(config, trainer, saved)) from None
    fit_seconds = perf_counter() - start
    distributed.barrier(config)  # rank 0 has written the best checkpoint

    start = perf_counter()
    test_result = trainer.evaluate(
        test_data, load_best_model=saved, show_progress=config["show_progress"]
    )
    test_eval_seconds = perf_counter() - start

    # plain floats: under NumPy 2 RecBole's np.float64 values print as "np.float64(0.37)"
    best_valid_result = _plain(best_valid_result)
    test_result = _plain(test_result)
    for label, values in (("best valid ", best_valid_result), ("test result", test_result)):
        logger.info(set_color(label, "yellow") + f": {dict2str(values) if values else values}")

    epoch_seconds = getattr(trainer, "epoch_seconds", [])
    storage = model_obj.storage() if hasattr(model_obj, "storage") else None
    result = {
        "best_valid_score": float(best_valid_score),
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": best_valid_result,
        "test_result": test_result,
        "model": config["model"],
        "dataset": config["dataset"],
        "epochs": len(epoch_seconds),
        "train_seconds": sum(epoch_seconds),
        "fit_seconds": fit_seconds,
        "seconds_per_epoch": sum(epoch_seconds) / len(epoch_seconds) if epoch_seconds else None,
        "test_eval_seconds": test_eval_seconds,
        "checkpoint": trainer.saved_model_file if saved else None,
        "storage": storage,
        "code_width": getattr(model_obj, "code_width", None),
        "n_users": dataset_obj.user_num,
        "n_items": dataset_obj.item_num,
        "config": config,
        "world_size": distributed.world_size(config),
        "ranks_ran": distributed.count_ranks(config),
        "best_epoch": getattr(trainer, "saved_epoch", None) if saved else None,
        "stop_reason": _stop_reason(config, trainer, len(epoch_seconds),
                                    getattr(trainer, "saved_epoch", None) if saved else None),
        "log_file": log_file,
        "tensorboard_dir": _tensorboard_dir(trainer),
    }
    logger.info(run_summary(result))  # rank 0 only: the other ranks log errors only
    distributed.shutdown(config)
    _close_log_handlers()
    return result


def _stop_reason(config, trainer, epochs_trained, best_epoch):
    """Why training ended, for the summary: early stopping, or the epoch cap -- and then
    whether validation was still improving (so ``--epochs`` was too small)."""
    last = getattr(trainer, "start_epoch", 0) + epochs_trained - 1
    cap, patience = config["epochs"], config["stopping_step"]
    if last + 1 < cap:
        return f"early stopping at epoch {last} (no better validation score for {patience} evaluations)"
    reason = f"reached the cap epochs={cap}"
    eval_step = config["eval_step"] or 0
    if best_epoch is None or eval_step <= 0:
        return reason
    since = last - best_epoch
    if since < 2 * eval_step:  # the best is one of the last two evaluations
        reason += (f"; validation still improving (best epoch {best_epoch}, "
                   f"{since} before the end): raise --epochs")
    elif since < patience * eval_step:  # RecBole would have waited longer, but in vain so far
        reason += (f"; no better validation score for the last {since} epochs (best epoch "
                   f"{best_epoch}), within the patience of stopping_step={patience} "
                   "evaluations: more epochs are unlikely to help")
    return reason


def _plain(result):
    if result is None:
        return None
    return OrderedDict((key, float(value)) for key, value in result.items())


def _init_seed(config, seed):
    """RecBole's ``init_seed`` (python, numpy, torch RNGs; cuDNN) plus, with
    ``reproducibility: True``, torch's deterministic algorithms: without them two CPU runs
    of the same seed and thread count could differ in the last bits of the weights (and so
    in a few codes). ``warn_only``: an op with no deterministic version warns, never fails."""
    init_seed(seed, config["reproducibility"])
    torch.use_deterministic_algorithms(bool(config["reproducibility"]), warn_only=True)


@contextlib.contextmanager
def _cpu_threads(config):
    """torch's thread count (which the numba kernels follow) set to ``cpu_threads`` for the
    run and restored after it; ``~`` leaves torch's default (one per core)."""
    threads = config["cpu_threads"]
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _check_epochs(config):
    epochs = config["epochs"]
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ConfigValueError(
            f"epochs={epochs!r}: at least one training epoch is needed (an untrained model "
            "would be reported as a result). To test a saved checkpoint without training, "
            "pass --resume=CHECKPOINT with --epochs at most its epoch + 1."
        )


def _interrupted_message(config, trainer, saved):
    """One line: where the best checkpoint is and the commands that resume / export it."""
    epoch = getattr(trainer, "_current_epoch", None)
    at = f" at epoch {epoch}" if epoch is not None else ""
    path = getattr(trainer, "saved_model_file", None)
    best = getattr(trainer, "saved_epoch", None)
    if not saved or best is None or not path:
        return f"interrupted{at}: no checkpoint had been saved yet."
    quoted = shlex.quote(path)
    return (
        f"interrupted{at}: best checkpoint so far (epoch {best}) is {path}; resume: the same "
        f"command with --resume={quoted}; export: python -m recbole_quant export {quoted} "
        "OUT.npz"
    )


def check_before_loading(config):
    """Every check that needs only the config, so a mistake fails in seconds, before
    RecBole's config dump and the dataset load: the model's own options (its
    ``read_options``), the dataset's files (their presence and header; the rows are scanned
    by :func:`load_data`) and the validation metric (:func:`_complete_valid_metric`)."""
    read_options = getattr(config.model_class, "read_options", None)
    if read_options is not None:
        read_options(config)
    if config["cpu_threads"] is not None:
        options.integer(config, "cpu_threads", 1)
    check_dataset_files(config, scan_lines=False)
    _complete_valid_metric(config)


def _complete_valid_metric(config):
    """The rule for ``valid_metric`` (RecBole fails with ``KeyError: 'recall@20'`` after the
    first epoch otherwise): it is always computed, so a cut-off missing from ``topk`` is
    added to ``topk`` (``--topk=[10]`` with ``valid_metric: Recall@20`` reports @10 and @20)
    and a metric missing from ``metrics`` is added to ``metrics``; a metric RecBole does not
    know, or a malformed cut-off, is a :class:`ConfigValueError`."""
    from recbole.evaluator.register import metrics_dict

    text = str(config["valid_metric"])
    name, at, cut = text.partition("@")
    metrics = config["metrics"]
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    if name.lower() not in metrics_dict:
        raise ConfigValueError(
            f"valid_metric={text!r}: RecBole has no metric '{name}'. Use one of "
            f"{', '.join(sorted(metrics_dict))} (with @K for top-k metrics), e.g. Recall@20."
        )
    if name.lower() not in {m.lower() for m in metrics}:
        config["metrics"] = metrics + [name]
    if not at:
        return
    if not cut.isdigit() or int(cut) < 1:
        raise ConfigValueError(
            f"valid_metric={text!r}: the cut-off after '@' must be a positive integer, "
            f"e.g. {name}@20."
        )
    topk = config["topk"]
    topk = [topk] if isinstance(topk, int) else list(topk)
    if int(cut) not in topk:
        config["topk"] = sorted(topk + [int(cut)])


def _log_config(config, logger, log_file):
    """RecBole's full config dump goes to the log file; the terminal gets one line with the
    device actually used and the options that differ from the defaults (``show_config:
    True`` prints the full dump there too)."""
    show = bool(config["show_config"])
    logger.info(config_dump(config), extra=None if show else LOG_FILE_ONLY)
    changed = changed_options(config)
    logger.info(
        f"{config['model']} on {config['dataset']}, device {device_used(config)}; options that "
        f"differ from the defaults: {changed or 'none'}"
        + ("" if show or not log_file else f" (full configuration in {log_file}; "
           "--show_config=True prints it here)")
    )


def _tensorboard_dir(trainer):
    writer = getattr(trainer, "tensorboard", None)
    return getattr(writer, "log_dir", None) if writer is not None else None


def _check_topk(config, dataset):
    # RecBole fails deep inside torch.topk ("selected index k out of range") otherwise
    n_real_items = dataset.item_num - 1  # item id 0 is padding
    mode = config["eval_args"]["mode"]
    modes = set(mode.values()) if isinstance(mode, dict) else {mode}
    if "full" in modes:
        largest = max(config["topk"])
        if largest > n_real_items:
            fitting = [k for k in config["topk"] if k <= n_real_items] or [n_real_items]
            raise ConfigValueError(
                f"topk={config['topk']}: dataset '{config['dataset']}' has only "
                f"{n_real_items} items, so top-{largest} lists cannot be ranked. "
                f"Use e.g. --topk={fitting} (and a valid_metric at one of those cut-offs)."
            )


def _init_logger(config):
    """RecBole's ``init_logger``, writing to a log file no other run shares.

    RecBole names the file ``<model>-<dataset>-<time to the second>-<config hash>.log``:
    two runs of the same config started in the same second would write into one file. The
    name is computed as RecBole does and reserved on disk first; RecBole's file handler is
    then pointed at the reserved name.
    """
    config_str = "".join(str(value) for value in config.final_config_dict.values())
    md5 = hashlib.md5(config_str.encode("utf-8")).hexdigest()[:6]
    model, dataset = config["model"], config["dataset"]
    folder = os.path.join("log", model)
    wanted = os.path.join(folder, f"{model}-{dataset}-{get_local_time()}-{md5}.log")
    reserved = os.path.abspath(reserve_file_name(wanted))
    existing = set(os.listdir(folder))
    init_logger(config)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler) and handler.baseFilename != reserved:
            opened = handler.baseFilename  # the clock ticked, or another run holds the name
            handler.close()
            handler.baseFilename = reserved
            handler.stream = handler._open()
            if os.path.basename(opened) not in existing and os.path.getsize(opened) == 0:
                os.remove(opened)  # the empty file RecBole's handler created just now
        elif not isinstance(handler, logging.FileHandler):  # the terminal
            handler.addFilter(skip_log_file_only)
    return reserved


def _close_log_handlers():
    # RecBole's init_logger installs a stream and a file handler through logging.basicConfig,
    # which does nothing while the root logger has handlers: without this, the second run of
    # a process (comparisons, tests) would log to the first run's handlers and leave its own
    # log file empty. Closed after each run (no leaked files) and before the next.
    root = logging.getLogger()
    for handler in list(root.handlers):
        handler.close()
        root.removeHandler(handler)
