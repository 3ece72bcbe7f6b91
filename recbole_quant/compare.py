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

``seeds`` (``--seeds=2020,2021,2022``) runs every entry once per seed, as RecBole's ``seed``
option, set the same way for every model of that seed (so all of them get the same split and
the same draws). The order is seed-major (:func:`plan_seed_runs`). ``runs.csv`` keeps one row
per run; ``table.md`` / ``table.csv`` give one row per entry with the mean and the sample
standard deviation of every metric over the seeds that succeeded
(:func:`recbole_quant.report.aggregate_seeds`). Without ``seeds`` nothing changes: one run
per entry, at the configured ``seed``.
"""

import os
import time

import yaml

from recbole_quant.errors import ConfigValueError
from recbole_quant.registry import get_model
from recbole_quant.report import aggregate_seeds, markdown_table, seeds_footnote, write_report

# numpy's RNG (seeded by RecBole's init_seed) takes seeds from 0 to 2**32 - 1
_MAX_SEED = 2**32 - 1
_SEEDS_EXAMPLE = "e.g. --seeds=2020,2021,2022"


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


def parse_seeds(seeds):
    """``"2020,2021,2022"`` (or a list of ints) -> ``[2020, 2021, 2022]``, checked.

    Raises:
        ConfigValueError: no seed, a part that is not an integer, a seed outside
            0 .. 2**32 - 1 or one listed twice (it would only repeat a run), each naming
            ``--seeds`` and how to write it.
    """
    text = seeds if isinstance(seeds, str) else ",".join(str(seed) for seed in seeds)
    shown = f"--seeds={text}"
    parts = [part.strip() for part in text.strip().strip("[]()").split(",")]
    if parts == [""]:
        raise ConfigValueError(f"{shown}: no seed given; list one or more integer seeds, "
                               f"{_SEEDS_EXAMPLE}.")
    values = []
    for part in parts:
        try:
            value = int(part)
        except ValueError:
            what = "an empty entry" if not part else f"'{part}' is not an integer"
            raise ConfigValueError(f"{shown}: {what}; give comma-separated integer seeds, "
                                   f"{_SEEDS_EXAMPLE}.") from None
        if not 0 <= value <= _MAX_SEED:
            raise ConfigValueError(f"{shown}: seed {value} is out of range; seeds are integers "
                                   f"from 0 to {_MAX_SEED}, {_SEEDS_EXAMPLE}.")
        if value in values:
            raise ConfigValueError(f"{shown}: seed {value} is listed twice; each seed runs every "
                                   f"entry once, so list it once, {_SEEDS_EXAMPLE}.")
        values.append(value)
    return values


def plan_seed_runs(runs, seeds):
    """Every run of :func:`plan_runs` once per seed.

    Order: seed-major, i.e. every entry with the first seed, then every entry with the
    second, and so on. A comparison stopped part-way then has all its entries on the same
    finished seeds, so the means in its report compare like with like.

    Args:
        runs (list of (name, overrides dict)): :func:`plan_runs`'s entries.
        seeds (list of int): checked seeds (:func:`parse_seeds`).

    Returns:
        list of (entry, name, overrides, seed): ``entry`` numbers the entry in ``runs``
        (from 1), the same for all its seeds; ``overrides`` is the entry's own (the seed
        goes to the run's config separately).
    """
    for name, overrides in runs:
        if "seed" in overrides:
            raise ConfigValueError(
                f"Model entry '{name}' sets seed={overrides['seed']}, and --seeds runs every "
                f"entry once per seed: drop one of the two."
            )
    return [
        (entry, name, overrides, seed)
        for seed in seeds
        for entry, (name, overrides) in enumerate(runs, start=1)
    ]


def _check_single_seed_absent(seeds, config_dict, cmd_args):
    """``--seed`` on the command line would override every run's seed (the command line wins
    over ``config_dict``): with ``--seeds`` that silently repeats one seed, so refuse it."""
    given = [arg for arg in cmd_args if arg.split("=", 1)[0] == "--seed"]
    given += [f"seed={config_dict['seed']}"] if "seed" in (config_dict or {}) else []
    if given:
        raise ConfigValueError(
            f"{given[-1]} and --seeds={','.join(map(str, seeds))} both set the seed: --seeds "
            f"sets it for every run; drop {given[-1].split('=')[0]} (one seed: --seeds=N)."
        )


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
    seeds=None,
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
        seeds (list of int or str, optional): run every entry once per seed
            (``"2020,2021"`` or ``[2020, 2021]``, see :func:`parse_seeds`); the table then
            holds the mean and sample std over the seeds that succeeded, ``runs.csv`` every
            run. A ``seed`` in ``cmd_args`` or ``config_dict`` is refused with it.

    Returns:
        tuple: ``(rows, paths)``: the table rows (dicts keyed as
        :data:`recbole_quant.report.COLUMNS`, the :func:`reported_metrics` of the run's
        config, and ``quantized``; with ``seeds``, :func:`recbole_quant.report.aggregate_seeds`
        of the runs) and the written files
        (``{"table.md": path, "table.csv": path, "tradeoff.png": path}``, plus ``"runs.csv"``
        with ``seeds``: one row per run, read back with :func:`recbole_quant.report.read_csv`).
    """
    from recbole_quant.quick_start import run_recbole_quant

    runs = plan_runs(models, bits)
    if seeds is not None:
        seeds = parse_seeds(seeds)
        _check_single_seed_absent(seeds, config_dict, cmd_args)
        plan = plan_seed_runs(runs, seeds)
    else:
        plan = [(entry, name, overrides, None) for entry, (name, overrides) in enumerate(runs, 1)]
    out_dir = out_dir or os.path.join(
        "results", f"{dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    title = f"{', '.join(models)} on {dataset}"
    if seeds is not None:
        title += f", seeds {','.join(map(str, seeds))} (mean and sample std)"
    if bits:
        fixed = sorted({name for name, _ in runs if not getattr(get_model(name), "bit_width_key", None)})
        if fixed:  # bits per coordinate: HashGNN's code length is code_length, not bits
            print(f"--bits={','.join(map(str, bits))} (bits per coordinate) does not apply to "
                  f"{', '.join(fixed)}: each runs once.", flush=True)
    rows, table, paths, primary = [], [], {}, None
    for index, (entry, name, overrides, seed) in enumerate(plan, start=1):
        start = time.perf_counter()
        # the seed goes into the run's config, not into the entry's options: the row's
        # "variant" stays the entry's, the same for all its seeds
        run_options = overrides if seed is None else dict(overrides, seed=seed)
        label = name + "".join(f" {k}={v}" for k, v in run_options.items())
        width_key = getattr(get_model(name), "bit_width_key", None)
        try:
            result = run_recbole_quant(
                model=name,
                dataset=dataset,
                config_file_list=config_file_list,
                config_dict=dict(config_dict or {}, **run_options),
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
        if seed is not None:
            row.update(entry=entry, seed=seed)
        rows.append(row)
        # one line per model on the terminal (RecBole's own log file has the details)
        print(f"[{index}/{len(plan)}] {label}: {status}, {time.perf_counter() - start:.1f}s", flush=True)
        # rewrite the report after every model: a long comparison that is stopped (or a
        # machine that goes away) keeps the rows finished so far
        if seeds is None:
            table = rows
            paths = write_report(rows, out_dir, title=title, primary=primary)
        else:
            table = aggregate_seeds(rows)
            paths = write_report(table, out_dir, title=title, primary=primary, runs=rows)
    print("\n" + markdown_table(table) + ("\n" + seeds_footnote(table) if seeds else ""), flush=True)
    print(f"report written to {out_dir}: " + ", ".join(paths), flush=True)
    return table, paths
