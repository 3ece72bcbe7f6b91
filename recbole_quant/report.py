"""Side-by-side comparison reports: ``table.md``, ``table.csv`` and ``tradeoff.png``.

One row per trained model (and bit width). Rows are plain dicts: the keys of
:data:`COLUMNS` plus one key per test metric the run reported (``recall@20``, ``ndcg@50``,
... as RecBole names them; which ones depends on the configured ``topk`` and
``valid_metric``, see :func:`recbole_quant.compare.reported_metrics`). A model that failed
keeps its row with ``error`` filled and the numbers empty.

Several seeds (``--seeds``): each run's row carries its ``seed`` (and ``entry``, the model
entry it belongs to) and goes to ``runs.csv`` unchanged; :func:`aggregate_seeds` folds the
runs of one entry into one table row, every metric ``recall@20`` becoming the mean over the
seeds that succeeded plus ``recall@20 std``, their *sample* standard deviation (n - 1; empty
with fewer than two successful seeds), with ``seeds`` (all seeds run) and ``seeds_ok`` (how
many succeeded). Rows without these keys give the same table as before they existed.
"""

import csv
import math
import os
import statistics
import textwrap

# (key, header, format) of the fixed columns, in table order; the metric columns go after
# "bits" (see :func:`columns`).
COLUMNS = (
    ("model", "model", "{}"),
    ("variant", "options", "{}"),
    ("bits", "bits", "{}"),
    ("user_bits", "bits/user", "{:,}"),
    ("item_bits", "bits/item", "{:,}"),
    ("code_table_bytes", "code-table bytes", "{:,}"),
    ("compression", "vs float32", "{:.1f}x"),
    ("seconds_per_epoch", "s/epoch", "{:.2f}"),
    ("epochs", "epochs", "{}"),
    ("eval_seconds", "full-sort eval s", "{:.3f}"),
    ("error", "error", "{}"),
)
KEYS = tuple(key for key, _, _ in COLUMNS)
_METRICS_AFTER = "bits"
# Columns of seeded comparisons, before "error" and only when some row has them, so a table
# without seeds keeps exactly its old columns. "entry" numbers the model entry a per-seed
# row of runs.csv belongs to (so the runs can be aggregated again).
SEED_COLUMNS = (
    ("entry", "entry", "{}"),
    ("seed", "seed", "{}"),
    ("seeds", "seeds", "{}"),
    ("seeds_ok", "seeds ok", "{}"),
)
STD_SUFFIX = " std"
# CSV-only fields: whether the row is a quantized model (the plot needs it)
_EXTRA_KEYS = ("quantized",)
_INT_KEYS = ("bits", "user_bits", "item_bits", "code_table_bytes", "epochs", "entry", "seed",
             "seeds_ok")
_TEXT_KEYS = ("model", "variant", "error", "seeds")  # "seeds": "2020,2021" is not a number
# per-run measurements an aggregate row averages over its successful seeds; the storage
# columns are the same for every seed of an entry and are copied
_MEAN_KEYS = ("seconds_per_epoch", "epochs", "eval_seconds")
# RecBole's metric names as its papers and logs capitalise them
_METRIC_NAMES = {"recall": "Recall", "ndcg": "NDCG", "hit": "Hit", "precision": "Precision",
                 "mrr": "MRR", "map": "MAP"}


def is_metric_key(key):
    """``recall@20`` and the like: a test metric at a cut-off."""
    name, sep, cutoff = str(key).partition("@")
    return bool(sep) and cutoff.isdigit() and name.isidentifier()


def metric_header(key):
    """``recall@20`` -> ``Recall@20``."""
    name, _, cutoff = key.partition("@")
    return f"{_METRIC_NAMES.get(name, name)}@{cutoff}"


def metric_keys(rows):
    """The metric keys of ``rows``, in the order they first appear."""
    keys = []
    for row in rows:
        keys += [key for key in row if is_metric_key(key) and key not in keys]
    return keys


def std_key(key):
    """``recall@20`` -> ``recall@20 std`` (the column of its standard deviation over seeds)."""
    return key + STD_SUFFIX


def has_std(rows):
    """Whether ``rows`` are aggregated over seeds (some row has a std column)."""
    return any(key.endswith(STD_SUFFIX) for row in rows for key in row)


def columns(rows):
    """(key, header, format) of every column of ``rows``: the fixed ones, their metrics (each
    followed by its std column where some row has one) and the seed columns some row has."""
    at = KEYS.index(_METRICS_AFTER) + 1
    metrics = ()
    for key in metric_keys(rows):
        metrics += ((key, metric_header(key), "{:.4f}"),)
        if any(std_key(key) in row for row in rows):
            metrics += ((std_key(key), metric_header(key) + STD_SUFFIX, "{:.4f}"),)
    seeds = tuple(col for col in SEED_COLUMNS if any(col[0] in row for row in rows))
    end = KEYS.index("error")
    return COLUMNS[:at] + metrics + COLUMNS[at:end] + seeds + COLUMNS[end:]


def _cell(value, fmt):
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return ""
    if fmt == "{}" and isinstance(value, float):  # a mean over seeds: epochs 53.7, 2
        return str(int(value)) if value.is_integer() else f"{value:.1f}"
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def markdown_table(rows):
    """The rows as a GitHub markdown table (only columns that some row fills, plus model)."""
    used = [
        (key, header, fmt)
        for key, header, fmt in columns(rows)
        if key == "model" or any(row.get(key) not in (None, "") for row in rows)
    ]
    lines = [
        "| " + " | ".join(header for _, header, _ in used) + " |",
        "|" + "|".join("---" for _ in used) + "|",
    ]
    for row in rows:
        cells = [_cell(row.get(key), fmt).replace("|", "/") for key, _, fmt in used]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_csv(rows, path):
    fields = [key for key, _, _ in columns(rows)] + list(_EXTRA_KEYS)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: row.get(key, "") for key in fields})


def read_csv(path):
    """Rows of a ``table.csv`` written by :func:`write_csv`, with numbers as numbers."""
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for raw in csv.DictReader(f):
            row = {}
            for key, value in raw.items():
                if value in ("", None) or key in _TEXT_KEYS:
                    row[key] = value if value is not None else ""
                elif key == "quantized":
                    row[key] = value == "True"
                elif key in _INT_KEYS:
                    number = float(value)  # a mean over seeds ("epochs" 1.5) stays a float
                    row[key] = int(number) if number.is_integer() else number
                else:
                    row[key] = float(value)
            if "quantized" not in row:  # tables written before the column existed
                row["quantized"] = row.get("bits") not in ("", None, 32)
            rows.append(row)
    return rows


def merge_reports(csv_paths, out_dir, title=None):
    """One report from several comparisons' ``table.csv`` (e.g. runs split across processes)."""
    rows = [row for path in csv_paths for row in read_csv(path)]
    return write_report(rows, out_dir, title)


def _mean_std(values):
    """(mean, sample std) of ``values``; std is None below two values, both None for none."""
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def aggregate_seeds(runs):
    """One table row per model entry from the per-seed rows of a seeded comparison.

    Args:
        runs (list of dict): rows as :func:`recbole_quant.compare.row_from_result` makes
            them (or failed rows with ``error``), each with its ``seed`` and, to tell entries
            apart, ``entry`` (default: the ``(model, variant, bits)`` of the row).

    Returns:
        list of dict: one row per entry, in the order entries first appear. Each metric is
        the mean over the seeds that succeeded (no ``error``), with ``<metric> std``, their
        sample standard deviation (n - 1 in the denominator: the seeds are a sample of the
        possible ones; None with fewer than two). Seconds per epoch, epochs and evaluation
        seconds are means too; the storage columns are the first successful run's (the same
        for every seed). ``seeds`` lists every seed run (``"2020,2021"``), ``seeds_ok``
        counts those that succeeded, ``error`` names each failed seed with its error.
    """
    metrics = metric_keys(runs)  # of all entries: one whose seeds all failed gets empty ones
    groups = {}
    for row in runs:
        key = row.get("entry") or (row.get("model"), row.get("variant"), row.get("bits"))
        groups.setdefault(key, []).append(row)
    table = []
    for rows in groups.values():
        ok = [row for row in rows if not row.get("error")]
        base = ok[0] if ok else rows[0]
        out = {key: value for key, value in base.items()
               if key not in ("entry", "seed", "error") and not is_metric_key(key)}
        for key in metrics:
            out[key], out[std_key(key)] = _mean_std(
                [row[key] for row in ok if row.get(key) not in (None, "")])
        for key in _MEAN_KEYS:
            values = [row[key] for row in ok if row.get(key) not in (None, "")]
            if values:
                mean = statistics.fmean(values)  # epochs 2 and 2 stay 2, 2 and 3 give 2.5
                out[key] = int(mean) if key in _INT_KEYS and mean.is_integer() else mean
        out["seeds"] = ",".join(str(row.get("seed", "")) for row in rows)
        out["seeds_ok"] = len(ok)
        out["error"] = "; ".join(f"seed {row.get('seed')}: {row['error']}"
                                 for row in rows if row.get("error"))
        table.append(out)
    return table


def seeds_footnote(rows):
    """The note under a table aggregated over seeds (empty for a table without std)."""
    if not has_std(rows):
        return ""
    return ("Metrics and times: mean over the seeds that succeeded (`seeds ok` of `seeds`); "
            "`std`: sample standard deviation over those seeds (n - 1; empty below two). "
            "Per-seed rows: `runs.csv`.\n")


def primary_metric(rows, primary=None):
    """The metric the plot and the progress lines use: ``primary`` if given, else the first."""
    keys = metric_keys(rows)
    return primary if primary is not None else (keys[0] if keys else None)


def tradeoff_figure(rows, title=None, primary=None):
    """The trade-off figure: test ``primary`` (default: the first metric column) against
    bytes per item (log axis); full-precision baselines marked apart, legend right of the axes.

    Returns:
        matplotlib.figure.Figure (the caller saves and closes it).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = primary_metric(rows, primary)
    points = [r for r in rows if metric and r.get(metric) not in (None, "") and r.get("item_bits")]
    fig, ax = plt.subplots(figsize=(8.5, 4.5), dpi=120)
    for row in points:
        x = row["item_bits"] / 8.0
        quantized = row.get("quantized", False)
        color = "tab:blue" if quantized else "tab:red"
        ax.scatter(
            [x],
            [row[metric]],
            marker="o" if quantized else "s",
            s=60,
            color=color,
            zorder=3,
        )
        std = row.get(std_key(metric)) if metric else None
        if std not in (None, "") and not math.isnan(std):  # aggregated over seeds: +- 1 std
            ax.errorbar([x], [row[metric]], yerr=[std], fmt="none", ecolor=color, capsize=4,
                        elinewidth=1, zorder=2)
        label = row["model"] + (f" {row['bits']}b" if quantized and row.get("bits") else "")
        if row.get("variant"):
            label += f" ({row['variant']})"
        ax.annotate(label, (x, row[metric]), textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.set_xscale("log")
    ax.margins(x=0.25, y=0.08)  # room for the labels right of the last points
    ax.set_xlabel("bytes per item (code + scales; log scale)")
    ylabel = f"test {metric_header(metric)}" if metric else "test metric"
    if metric and any(r.get(std_key(metric)) not in (None, "") for r in points):
        ylabel += " (mean ± sample std over seeds)"
    ax.set_ylabel(ylabel)
    ax.set_title(textwrap.fill(title or "Quality vs item storage", 80), fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    handles = [
        plt.Line2D([], [], marker="o", ls="", color="tab:blue", label="quantized (recbole_quant)"),
        plt.Line2D([], [], marker="s", ls="", color="tab:red", label="full precision (float32)"),
    ]
    # outside the axes: inside, it can cover a point (it hid BPR's in the ml-100k plot)
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
              fontsize=8)
    fig.tight_layout()
    return fig


def plot_tradeoff(rows, path, title=None, primary=None):
    """Write :func:`tradeoff_figure` to ``path``."""
    import matplotlib.pyplot as plt

    fig = tradeoff_figure(rows, title, primary)
    fig.savefig(path)
    plt.close(fig)


def write_report(rows, out_dir, title=None, primary=None, runs=None):
    """Write ``table.md``, ``table.csv`` and ``tradeoff.png`` into ``out_dir``; return paths.

    ``primary``: the metric key plotted (default: the first metric column). ``runs``: the
    per-seed rows of a seeded comparison (``rows`` then being :func:`aggregate_seeds` of
    them), written to ``runs.csv`` as well.
    """
    os.makedirs(out_dir, exist_ok=True)
    paths = {
        "table.md": os.path.join(out_dir, "table.md"),
        "table.csv": os.path.join(out_dir, "table.csv"),
        "tradeoff.png": os.path.join(out_dir, "tradeoff.png"),
    }
    if runs is not None:
        paths["runs.csv"] = os.path.join(out_dir, "runs.csv")
    with open(paths["table.md"], "w", encoding="utf-8") as f:
        if title:
            f.write(f"# {title}\n\n")
        f.write(markdown_table(rows))
        footnote = seeds_footnote(rows)
        if footnote:
            f.write("\n" + footnote)
    write_csv(rows, paths["table.csv"])
    if runs is not None:
        write_csv(runs, paths["runs.csv"])
    plot_tradeoff(rows, paths["tradeoff.png"], title, primary)
    return paths


def main(argv=None):
    """``python -m recbole_quant.report merge OUT_DIR A/table.csv B/table.csv [--title T]``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m recbole_quant.report")
    sub = parser.add_subparsers(dest="command", required=True)
    merge = sub.add_parser("merge", help="merge comparison tables into one report")
    merge.add_argument("out_dir")
    merge.add_argument("csv", nargs="+")
    merge.add_argument("--title", default=None)
    args = parser.parse_args(argv)
    missing = [p for p in args.csv if not os.path.isfile(p)]
    if missing:
        parser.exit(2, f"error: no such table: {', '.join(missing)}\n")
    paths = merge_reports(args.csv, args.out_dir, args.title)
    print(f"report written to {args.out_dir}: " + ", ".join(paths))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
