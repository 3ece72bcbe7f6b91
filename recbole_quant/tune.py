"""Hyper-parameter search, as RecBole's ``run_hyper`` does it, through the plugin's runner.

    python -m recbole_quant tune --model=HQGNN --params=hyper.test \\
        [--algo=exhaustive|random|bayes] [--max_evals=N] [--dataset=ml-100k] \\
        [--config_files="a.yaml"] [--out_dir=DIR] [--key=value ...]

The search space is RecBole's hyper-parameter file, one parameter a line::

    learning_rate choice [0.01,0.005,0.001]
    reg_weight loguniform -9,-4
    embedding_size quniform 32,128,32
    gamma uniform 0.1,1.0

RecBole reads ``choice`` values with ``eval``; here they are read with ``yaml.safe_load``
(data only: ``[0.01, 0.005]``, ``['ste', 'gste']``, ``[[10, 5], [20, 10]]``). The search itself
is RecBole's :class:`~recbole.trainer.hyper_tuning.HyperTuning` for ``random`` and ``bayes``
(hyperopt's random search and TPE), so it behaves as RecBole users know; ``exhaustive`` runs
the grid in file order (RecBole's own grid sampler breaks on current hyperopt); each trial runs through
:func:`recbole_quant.quick_start.run_recbole_quant`, so plugin models, the packed evaluation
and every config file and ``--key=value`` override apply to every trial.

Written to ``--out_dir`` (default ``results/tune-<model>-<dataset>-<time>``), rewritten after
every trial so a stopped search keeps what it found:

* ``tune.csv`` / ``tune.md``: one row per trial, best validation score first;
* ``best.yaml``: the best trial's parameters plus the fixed overrides, a config file that
  reproduces that trial (``--config_files=best.yaml``).

hyperopt is an optional extra, needed by ``random`` and ``bayes``:
``pip install "recbole-quant[tune]"``.
"""

import csv
import itertools
import math
import os
import time

import yaml

from recbole_quant.errors import RecboleQuantError

PARAM_TYPES = ("choice", "uniform", "quniform", "loguniform")
ALGOS = ("exhaustive", "random", "bayes")


class TuneUsageError(RecboleQuantError):
    """A tune command line, params file or search that cannot run."""


def require_hyperopt():
    try:
        import hyperopt  # noqa: F401
    except ImportError:
        raise TuneUsageError(
            "Hyper-parameter search needs hyperopt, an optional extra: "
            'pip install "recbole-quant[tune]" (or pip install hyperopt).'
        ) from None


def read_params_file(path):
    """RecBole's hyper-parameter file -> ``{type: {name: values}}`` (RecBole's params_dict).

    Raises :class:`TuneUsageError` naming the file and line for anything malformed.
    """
    if not os.path.isfile(path):
        raise TuneUsageError(f"Params file not found: {path}")
    space = {}
    seen = set()
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError as err:
        raise TuneUsageError(f"{path} is not UTF-8 text ({err}).") from None
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 2)
        where = f"{path}, line {number}"
        if len(parts) < 3:
            raise TuneUsageError(
                f"{where}: expected 'name type values' "
                f"(e.g. 'learning_rate choice [0.01,0.005]'), got {raw!r}."
            )
        name, kind, values = parts
        if kind not in PARAM_TYPES:
            raise TuneUsageError(
                f"{where}: unknown type {kind!r}; use one of {', '.join(PARAM_TYPES)}."
            )
        if name in seen:
            raise TuneUsageError(f"{where}: parameter {name!r} is given twice.")
        seen.add(name)
        space.setdefault(kind, {})[name] = _parse_values(kind, values, where)
    if not space:
        raise TuneUsageError(f"{path} defines no parameter to search.")
    return space


def _parse_values(kind, text, where):
    if kind == "choice":
        try:
            values = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise TuneUsageError(f"{where}: cannot read the choice list {text!r}: {err}") from None
        if not isinstance(values, list) or not values:
            raise TuneUsageError(f"{where}: choice needs a non-empty list, e.g. [0.01,0.005].")
        # RecBole's files quote list values ('[64,64]') for its eval; read them as data too
        return [yaml.safe_load(v) if isinstance(v, str) else v for v in values]
    expected = 3 if kind == "quniform" else 2
    try:
        numbers = [float(v) for v in text.replace(" ", "").split(",")]
    except ValueError:
        numbers = []
    if len(numbers) != expected or not all(math.isfinite(v) for v in numbers):
        form = "low,high,q" if kind == "quniform" else "low,high"
        raise TuneUsageError(f"{where}: {kind} needs {form} as numbers, got {text!r}.")
    if numbers[0] >= numbers[1]:
        raise TuneUsageError(f"{where}: {kind} needs low < high, got {text!r}.")
    return numbers


def _plain(value):
    """Values hyperopt hands back (numpy scalars, tuples) as plain yaml-able data."""
    if hasattr(value, "item") and not isinstance(value, (list, tuple, dict)):
        value = value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _quniform_ints(space, params):
    # hyperopt's quniform yields floats (64.0); RecBole models expect integers there
    names = set(space.get("quniform", {}))
    return {k: int(v) if k in names and float(v).is_integer() else v for k, v in params.items()}


class TuneRun:
    """One search: runs trials, keeps their rows, writes the report after each."""

    def __init__(self, model, dataset, space, out_dir, config_file_list=None, cmd_args=()):
        self.model, self.dataset, self.space = model, dataset, space
        self.out_dir = out_dir
        self.config_file_list = config_file_list
        self.cmd_args = list(cmd_args)
        self.rows = []
        # the fixed overrides as given, read as YAML scalars like the command line (not the
        # final config: RecBole rewrites some values, e.g. appends the dataset to data_path)
        self.fixed = {}
        for arg in self.cmd_args:
            key, _, value = arg[2:].partition("=")
            try:
                self.fixed[key] = yaml.safe_load(value)
            except yaml.YAMLError:
                self.fixed[key] = value
        tuned = {name for names in space.values() for name in names}
        both = sorted(tuned & set(self.fixed))
        if both:
            raise TuneUsageError(
                f"{', '.join('--' + k for k in both)} is both searched (params file) and fixed "
                "on the command line: drop one."
            )

    def objective(self, params, fixed_config_file_list=None):
        """Run one trial (the objective RecBole's HyperTuning calls)."""
        from recbole_quant.quick_start import run_recbole_quant

        params = _quniform_ints(self.space, {k: _plain(v) for k, v in params.items()})
        start = time.perf_counter()
        result = run_recbole_quant(
            model=self.model,
            dataset=self.dataset,
            config_file_list=self.config_file_list,
            config_dict=params,
            cmd_args=self.cmd_args,
        )
        config = result["config"]
        row = {
            "trial": len(self.rows) + 1,
            "params": params,
            "valid_metric": config["valid_metric"],
            "best_valid_score": result["best_valid_score"],
            "bigger": result["valid_score_bigger"],
            "test_result": result["test_result"],
            "epochs": result["epochs"],
            "seconds": time.perf_counter() - start,
            "fixed": self.fixed,
        }
        self.rows.append(row)
        self.write()
        print(
            f"[trial {row['trial']}] {_params_text(params)}: "
            f"valid {row['valid_metric']}={row['best_valid_score']:.4f}",
            flush=True,
        )
        return result

    def ranked(self):
        if not self.rows:
            return []
        bigger = self.rows[0]["bigger"]
        return sorted(self.rows, key=lambda r: (-r["best_valid_score"] if bigger else r["best_valid_score"], r["trial"]))

    def write(self):
        os.makedirs(self.out_dir, exist_ok=True)
        ranked = self.ranked()
        test_keys = sorted({k for r in ranked for k in (r["test_result"] or {})})
        header = ["rank", "trial", "params", "valid_metric", "best_valid_score"]
        header += [f"test_{k}" for k in test_keys] + ["epochs", "seconds"]
        table = []
        for rank, r in enumerate(ranked, start=1):
            cells = [rank, r["trial"], _params_text(r["params"]), r["valid_metric"],
                     f"{r['best_valid_score']:.4f}"]
            cells += [f"{(r['test_result'] or {}).get(k, float('nan')):.4f}" for k in test_keys]
            cells += [r["epochs"], f"{r['seconds']:.1f}"]
            table.append(cells)
        _write_atomic(os.path.join(self.out_dir, "tune.csv"), _csv_text(header, table))
        md = [f"# {self.model} on {self.dataset}: {len(ranked)} trials, best first", "",
              "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        md += ["| " + " | ".join(str(c) for c in row) + " |" for row in table]
        _write_atomic(os.path.join(self.out_dir, "tune.md"), "\n".join(md) + "\n")
        best = ranked[0]
        config = {"model": self.model, "dataset": self.dataset}
        config.update(best["fixed"])
        config.update(best["params"])
        text = (
            f"# best of {len(ranked)} trials ({best['valid_metric']} = "
            f"{best['best_valid_score']:.4f}, trial {best['trial']}); reproduce with\n"
            f"# python run_recbole_quant.py --config_files={os.path.join(self.out_dir, 'best.yaml')}"
            + "".join(f" {f}" for f in (self.config_file_list or []))
            + "\n"
            + yaml.safe_dump(config, sort_keys=False)
        )
        _write_atomic(os.path.join(self.out_dir, "best.yaml"), text)


def _params_text(params):
    return ", ".join(f"{k}={v}" for k, v in params.items())


def _csv_text(header, rows):
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def tune(model, params_file, dataset="ml-100k", algo="exhaustive", max_evals=100,
         early_stop=10, config_file_list=None, cmd_args=(), out_dir=None):
    """Search ``params_file``'s space for ``model``; returns ``(ranked rows, out_dir)``."""
    if algo not in ALGOS:
        raise TuneUsageError(f"--algo={algo!r} is not valid: choose one of {', '.join(ALGOS)}.")
    if isinstance(max_evals, bool) or not isinstance(max_evals, int) or max_evals < 1:
        raise TuneUsageError(f"--max_evals={max_evals!r} is not valid: a positive integer.")
    space = read_params_file(params_file)
    if algo == "exhaustive" and set(space) != {"choice"}:
        raise TuneUsageError(
            "--algo=exhaustive searches a grid: every parameter must be a 'choice' "
            "(use --algo=random or --algo=bayes for uniform / loguniform ranges)."
        )
    from recbole_quant.registry import get_model

    get_model(model)  # an unknown name fails before anything trains
    out_dir = out_dir or os.path.join(
        "results", f"tune-{model}-{dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    run = TuneRun(model, dataset, space, out_dir, config_file_list, cmd_args)
    if algo == "exhaustive":
        # The grid in file order. RecBole's exhaustive_search draws grid points with
        # np.random.RandomState, which hyperopt >= 0.2.8 rejects (it needs a Generator),
        # and its order is random; a plain product needs no hyperopt at all.
        names = list(space["choice"])
        for values in itertools.product(*(space["choice"][n] for n in names)):
            run.objective(dict(zip(names, values)))
    else:
        require_hyperopt()
        from recbole.trainer.hyper_tuning import HyperTuning

        tuner = HyperTuning(run.objective, params_dict=space, algo=algo, max_evals=max_evals,
                            early_stop=early_stop)
        tuner._print_result = lambda result: None  # our one line per trial says it
        tuner.run()
    print(f"tuning report written to {out_dir}: tune.md, tune.csv, best.yaml", flush=True)
    return run.ranked(), out_dir


USAGE = """usage: python -m recbole_quant tune --model=NAME --params=FILE [--algo=exhaustive|random|bayes]
                                [--max_evals=N] [--early_stop=N] [--dataset=NAME]
                                [--config_files="a.yaml b.yaml"] [--out_dir=DIR] [--key=value ...]

  --params      RecBole's hyper-parameter file: 'name choice [a,b]', 'name uniform low,high',
                'name quniform low,high,q', 'name loguniform low,high' (one per line)
  --algo        exhaustive grid (default; choice parameters only), random, or bayes (TPE)
  --max_evals   trials for random / bayes (default 100; exhaustive runs the whole grid)
  --early_stop  stop after this many trials without a better validation score (default 10)
  --key=value   fixed for every trial (any RecBole or model option)
"""

_OWN = ("model", "params", "algo", "max_evals", "early_stop", "dataset", "config_files", "out_dir")


def main(argv):
    """``python -m recbole_quant tune ...``; returns the exit status."""
    import sys

    from recbole_quant.cli import parse_args

    try:
        if any(a in ("-h", "--help") for a in argv):
            print(USAGE)
            return 0
        own, overrides = parse_args(argv)
        for key in list(own):
            if key not in _OWN and key not in ("help",):
                raise TuneUsageError(f"--{key} is not a tune option.\n{USAGE}")
        extra = {a[2:].split("=", 1)[0]: a for a in overrides}
        for key in ("params", "algo", "max_evals", "early_stop"):
            if key in extra:
                own[key] = extra.pop(key).split("=", 1)[1]
        overrides = list(extra.values())
        if "model" not in own or "params" not in own:
            raise TuneUsageError(f"tune needs --model and --params.\n{USAGE}")
        rows, out_dir = tune(
            own["model"],
            own["params"],
            dataset=own.get("dataset", "ml-100k"),
            algo=own.get("algo", "exhaustive"),
            max_evals=_int(own.get("max_evals", 100), "max_evals"),
            early_stop=_int(own.get("early_stop", 10), "early_stop"),
            config_file_list=own["config_files"].split() if own.get("config_files") else None,
            cmd_args=overrides,
            out_dir=own.get("out_dir"),
        )
        print(open(os.path.join(out_dir, "tune.md"), encoding="utf-8").read())
    except RecboleQuantError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def _int(value, key):
    try:
        return int(value)
    except (TypeError, ValueError):
        raise TuneUsageError(f"--{key}={value!r} is not valid: a positive integer.") from None
