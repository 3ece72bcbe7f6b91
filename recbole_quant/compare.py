"""Train several models on the same data, split and seed, and report them side by side.

    python run_recbole_quant.py --model=HQGNN,HashGNN,L2QGCN,LightGCN,BPR --dataset=ml-100k
    python run_recbole_quant.py --model=HQGNN,LightGCN --bits=1,2,4 --out_dir=results/ml100k

Each model runs through :func:`recbole_quant.quick_start.run_recbole_quant` in turn (so the
seed, split and evaluation are RecBole's, identical for all). Models with a bit-width option
(``bit_width_key``, e.g. HQ-GNN's ``bits``) run once per width in ``bits``. A model that fails
keeps its row with the error; the others still run.

A model entry may carry its own options after colons, so variants of one model share the
table: ``HQGNN:grad_estimator=ste``, ``HashGNN:mode=soft``, ``HashGNN:quantize=False``.
"""

import os
import time
from logging import getLogger

import yaml

from recbole_quant.errors import ConfigValueError
from recbole_quant.registry import get_model


def parse_model_spec(spec):
    """``"HQGNN:bits=2:grad_estimator=ste"`` -> ``("HQGNN", {"bits": 2, "grad_estimator": "ste"})``.

    Values are read as YAML scalars (``False``, ``0.5``, ``[10, 5]``), as in RecBole's yaml files.
    """
    name, *options = spec.strip().split(":")
    overrides = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or not key.strip():
            raise ConfigValueError(
                f"Model entry '{spec}': options are written NAME:key=value[:key=value], "
                f"e.g. HQGNN:grad_estimator=ste."
            )
        overrides[key.strip()] = yaml.safe_load(value)
    return name.strip(), overrides
from recbole_quant.report import write_report


def plan_runs(models, bits=None):
    """Expand model names and widths into runs.

    Args:
        models (list of str): model entries (plugin or RecBole names, optionally with
            ``:key=value`` options, see :func:`parse_model_spec`), in order.
        bits (list of int, optional): widths for models with a bit-width option (an entry
            that sets its own width keeps it).

    Returns:
        list of (name, overrides dict): one entry per run. Unknown names raise
        :class:`UnknownModelError` here, before anything trains.
    """
    runs = []
    for spec in models:
        name, options = parse_model_spec(spec)
        model_class = get_model(name)
        width_key = getattr(model_class, "bit_width_key", None)
        if bits and width_key and width_key not in options:
            runs.extend((name, dict(options, **{width_key: int(b)})) for b in bits)
        else:
            runs.append((name, options))
    return runs


def row_from_result(result, overrides, width_key=None):
    """One table row from :func:`run_recbole_quant`'s result."""
    test = result["test_result"] or {}
    config = result["config"]
    row = {key: test.get(key) for key in ("recall@20", "ndcg@20", "recall@50", "ndcg@50")}
    row.update(
        model=result["model"],
        variant=" ".join(f"{k}={v}" for k, v in overrides.items() if k != width_key),
        seconds_per_epoch=result["seconds_per_epoch"],
        epochs=result["epochs"],
        eval_seconds=result["test_eval_seconds"],
        error="",
    )
    storage = result["storage"]
    if storage is not None:
        row.update(
            quantized=True,
            bits=result["code_width"],
            user_bits=storage.user_code_bits,
            item_bits=storage.item_code_bits,
            code_table_bytes=storage.user_table_bytes + storage.item_table_bytes,
            compression=storage.ratio_vs_float32,
        )
    else:
        dim = config["embedding_size"] if "embedding_size" in config else None
        row.update(quantized=False, bits=32)
        if dim:
            n = result["n_users"] + result["n_items"]
            row.update(
                user_bits=32 * dim,
                item_bits=32 * dim,
                code_table_bytes=4 * dim * n,
                compression=1.0,
            )
    return row


def compare(
    models,
    dataset="ml-100k",
    bits=None,
    config_file_list=None,
    config_dict=None,
    cmd_args=(),
    out_dir=None,
    saved=True,
):
    """Train each model in turn and write the comparison report.

    Args:
        models (list of str): e.g. ``["HQGNN", "LightGCN", "BPR"]``.
        dataset (str): dataset name (default ml-100k, offline).
        bits (list of int, optional): widths for models with a bit-width option.
        config_file_list, config_dict, cmd_args: as :func:`run_recbole_quant`, applied to
            every model (a key a model does not know is an error for that model's row only).
        out_dir (str, optional): where ``table.md``, ``table.csv`` and ``tradeoff.png`` go;
            default ``results/<dataset>-<timestamp>``.
        saved (bool): keep best checkpoints and test the best model (RecBole's default).

    Returns:
        tuple: ``(rows, paths)``: the table rows (dicts keyed as
        :data:`recbole_quant.report.COLUMNS`, plus ``quantized``) and the written files
        (``{"table.md": path, "table.csv": path, "tradeoff.png": path}``).
    """
    from recbole_quant.quick_start import run_recbole_quant

    runs = plan_runs(models, bits)
    out_dir = out_dir or os.path.join(
        "results", f"{dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    logger = getLogger()
    rows, paths = [], {}
    for index, (name, overrides) in enumerate(runs, start=1):
        start = time.perf_counter()
        label = name + "".join(f" {k}={v}" for k, v in overrides.items())
        width_key = getattr(get_model(name), "bit_width_key", None)
        try:
            result = run_recbole_quant(
                model=name,
                dataset=dataset,
                config_file_list=config_file_list,
                config_dict=dict(config_dict or {}, **overrides),
                cmd_args=list(cmd_args),
                saved=saved,
            )
            row = row_from_result(result, overrides, width_key)
            status = f"test recall@20={row['recall@20']:.4f}"
        except Exception as err:  # one failing model must not stop the comparison
            row = dict(model=name, variant=" ".join(f"{k}={v}" for k, v in overrides.items()),
                       error=f"{type(err).__name__}: {err}")
            if width_key in overrides:
                row["bits"] = overrides[width_key]
            status = f"FAILED ({row['error'].splitlines()[0]})"
        rows.append(row)
        message = (
            f"[{index}/{len(runs)}] {label}: {status}, {time.perf_counter() - start:.1f}s"
        )
        logger.warning(message)  # WARNING so it shows even with state=WARNING
        print(message, flush=True)
        # rewrite the report after every model: a long comparison that is stopped (or a
        # machine that goes away) keeps the rows finished so far
        paths = write_report(rows, out_dir, title=f"{', '.join(models)} on {dataset}")
    print(f"report written to {out_dir}: " + ", ".join(paths), flush=True)
    return rows, paths
