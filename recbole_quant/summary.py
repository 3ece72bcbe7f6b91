"""What a run shows on the terminal: one line about the configuration, a closing summary.

RecBole logs its ~100-line config dump and the model's structure to the terminal and the log
file alike, and ends with a raw ``test result:`` line. Here the dump goes to the log file
only (records logged with ``extra=LOG_FILE_ONLY``, dropped by the terminal handler's
:func:`skip_log_file_only`), the terminal gets the options that differ from the defaults
(:func:`changed_options`) and the run ends with :func:`run_summary`.
"""

import torch

# ``logger.info(text, extra=LOG_FILE_ONLY)``: written to the log file, not to the terminal
LOG_FILE_ONLY = {"log_file_only": True}

# keys shown on their own in the configuration line, or set by the runner itself
_NOT_OPTIONS = {"model", "dataset", "config_files"}


def skip_log_file_only(record):
    """Filter of the terminal handler: False (drop) for records marked ``LOG_FILE_ONLY``."""
    return not getattr(record, "log_file_only", False)


def device_used(config):
    """``cpu`` or ``cuda``: the device the run actually uses (RecBole keeps ``use_gpu =
    True`` and ``gpu_id = 0`` in its config when no GPU is there)."""
    return torch.device(config["device"]).type


def config_dump(config):
    """RecBole's config dump, with ``use_gpu`` saying when no GPU was used after all."""
    cfg = config.final_config_dict
    asked = cfg.get("use_gpu")
    used = device_used(config)
    if asked and used != "cuda":
        cfg["use_gpu"] = f"{asked} (no CUDA device here: the run uses device = {used})"
    try:
        return str(config)
    finally:
        cfg["use_gpu"] = asked


def changed_options(config):
    """``"bits=2, learning_rate=0.002"``: the options set by config files, the config dict or
    the command line to a value other than the default (RecBole's and the plugin's yaml)."""
    defaults = config.internal_config_dict
    final = config.final_config_dict
    missing = object()
    changed = [
        f"{key}={final.get(key)}"
        for key in config.external_config_dict
        if key not in _NOT_OPTIONS and defaults.get(key, missing) != final.get(key)
    ]
    return ", ".join(changed)


def _metric_lines(test_result):
    """``recall  @10 0.2144  @20 0.3179  @50 0.5067`` per metric, in RecBole's order."""
    by_name = {}
    for key, value in (test_result or {}).items():
        name, _, cut = key.partition("@")
        by_name.setdefault(name, []).append(f"@{cut} {value:.4f}" if cut else f"{value:.4f}")
    width = max((len(name) for name in by_name), default=0)
    return [f"{name:<{width}}  {'  '.join(parts)}" for name, parts in by_name.items()]


def _storage_line(storage):
    if storage is None:
        return "float32 embeddings (not a quantized model)"
    return (
        f"{storage.user_code_bits:,} bits per user, {storage.item_code_bits:,} bits per item "
        f"({storage.kind} codes, d={storage.dim * storage.groups}); "
        f"{storage.ratio_vs_float32:.1f}x smaller than float32 d={storage.dim}; tables "
        f"{storage.user_table_bytes + storage.item_table_bytes:,} B"
    )


def run_summary(result):
    """The closing block of a run, from the dict ``run_recbole_quant`` returns."""
    per_epoch = result.get("seconds_per_epoch")
    best = result.get("best_epoch")
    epochs = (
        f"{result['epochs']} trained"
        + (f", {per_epoch:.2f} s per epoch" if per_epoch is not None else "")
        + (f"; best validation epoch {best} (the checkpoint tested)" if best is not None else "")
        + (f"; {result['stop_reason']}" if result.get("stop_reason") else "")
    )
    rows = [("model", f"{result['model']} on {result['dataset']}")]
    rows += [("test" if i == 0 else "", line)
             for i, line in enumerate(_metric_lines(result.get("test_result")))]
    rows += [
        ("storage", _storage_line(result.get("storage"))),
        ("epochs", epochs),
        ("log", result.get("log_file") or "-"),
        ("checkpoint", result.get("checkpoint") or "- (saved=False)"),
        ("tensorboard", result.get("tensorboard_dir") or "- (off)"),
    ]
    width = max(len(label) for label, _ in rows)
    body = "\n".join(f"  {label:<{width}}  {text}" for label, text in rows)
    return f"run summary\n{body}"
