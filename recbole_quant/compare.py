"""Train several models on the same data, split and seed, and report them side by side.

    python run_recbole_quant.py --model=HQGNN,HashGNN,L2QGCN,LightGCN,BPR --dataset=ml-100k
    python run_recbole_quant.py --model=HQGNN,LightGCN --bits=1,2,4 --out_dir=results/ml100k

Each model runs through :func:`recbole_quant.quick_start.run_recbole_quant` in turn (so the
seed, split and evaluation are RecBole's, identical for all). Models with a bit-width option
(``bit_width_key``, e.g. HQ-GNN's ``bits``) run once per width in ``bits``. ``bits`` always
means bits per coordinate, as in a single run: sign-code models (HashGNN, L2Q-GCN) have one
bit per coordinate and run once (HashGNN's code length is its own option, ``code_length``).
A model that fails keeps its row with the error; the others still run.

The reported test metrics follow the configured ``valid_metric`` and ``topk``
(:func:`reported_metrics`). The terminal shows one line per finished model, then the table.

A model entry may carry its own options after colons, so variants of one model share the
table: ``HQGNN:grad_estimator=ste``, ``HashGNN:mode=soft``, ``HashGNN:quantize=False``.
"""

import os
import time

import yaml

from recbole_quant.errors import ConfigValueError
from recbole_quant.registry import get_model
from recbole_quant.report import markdown_table, write_report


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


def reported_metrics(config):
    """The test metrics a comparison reports, from the run's ``valid_metric`` and ``topk``.

    Recall and NDCG at the validation cut-off and at the largest ``topk``, plus the
    validation metric itself: ``valid_metric: Recall@20``, ``topk: [10, 20, 50]`` gives
    ``recall@20, ndcg@20, recall@50, ndcg@50``; ``topk: [10]`` with ``Recall@10`` gives
    ``recall@10, ndcg@10``. The first key is the one progress lines and the plot use.
    """
    valid = str(config["valid_metric"]).lower()
    topk = config["topk"]
    topk = [topk] if isinstance(topk, int) else list(topk)
    name, _, cutoff = valid.partition("@")
    cutoffs = [int(cutoff)] if cutoff.isdigit() and int(cutoff) in topk else []
    cutoffs += [k for k in [max(topk)] if k not in cutoffs]
    keys = [valid] if "@" in valid else []
    keys += [f"{m}@{k}" for k in cutoffs for m in ("recall", "ndcg") if f"{m}@{k}" not in keys]
    return keys


def row_from_result(result, overrides, width_key=None):
    """One table row from :func:`run_recbole_quant`'s result."""
    test = result["test_result"] or {}
    config = result["config"]
    row = {key: test.get(key) for key in reported_metrics(config)}
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
        :data:`recbole_quant.report.COLUMNS`, the :func:`reported_metrics` of the run's
        config, and ``quantized``) and the written files
        (``{"table.md": path, "table.csv": path, "tradeoff.png": path}``).
    """
    from recbole_quant.quick_start import run_recbole_quant

    runs = plan_runs(models, bits)
    out_dir = out_dir or os.path.join(
        "results", f"{dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    title = f"{', '.join(models)} on {dataset}"
    if bits:
        fixed = sorted({name for name, _ in runs if not getattr(get_model(name), "bit_width_key", None)})
        if fixed:  # bits per coordinate: HashGNN's code length is code_length, not bits
            print(f"--bits={','.join(map(str, bits))} (bits per coordinate) does not apply to "
                  f"{', '.join(fixed)}: each runs once.", flush=True)
    rows, paths, primary = [], {}, None
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
            primary = primary or reported_metrics(result["config"])[0]
            value = row.get(primary)
            status = f"test {primary}=" + ("(not reported)" if value is None else f"{value:.4f}")
        except Exception as err:  # one failing model must not stop the comparison
            row = dict(model=name, variant=" ".join(f"{k}={v}" for k, v in overrides.items()),
                       error=f"{type(err).__name__}: {err}")
            if width_key in overrides:
                row["bits"] = overrides[width_key]
            status = f"FAILED ({row['error'].splitlines()[0]})"
        rows.append(row)
        # one line per model on the terminal (RecBole's own log file has the details)
        print(f"[{index}/{len(runs)}] {label}: {status}, {time.perf_counter() - start:.1f}s", flush=True)
        # rewrite the report after every model: a long comparison that is stopped (or a
        # machine that goes away) keeps the rows finished so far
        paths = write_report(rows, out_dir, title=title, primary=primary)
    print("\n" + markdown_table(rows), flush=True)
    print(f"report written to {out_dir}: " + ", ".join(paths), flush=True)
    return rows, paths
