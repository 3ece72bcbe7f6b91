"""Side-by-side comparison reports: ``table.md``, ``table.csv`` and ``tradeoff.png``.

One row per trained model (and bit width). Rows are plain dicts: the keys of
:data:`COLUMNS` plus one key per test metric the run reported (``recall@20``, ``ndcg@50``,
... as RecBole names them; which ones depends on the configured ``topk`` and
``valid_metric``, see :func:`recbole_quant.compare.reported_metrics`). A model that failed
keeps its row with ``error`` filled and the numbers empty.
"""

import csv
import math
import os
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
# CSV-only fields: whether the row is a quantized model (the plot needs it)
_EXTRA_KEYS = ("quantized",)
_INT_KEYS = ("bits", "user_bits", "item_bits", "code_table_bytes", "epochs")
_TEXT_KEYS = ("model", "variant", "error")
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


def columns(rows):
    """(key, header, format) of every column of ``rows``: the fixed ones and their metrics."""
    at = KEYS.index(_METRICS_AFTER) + 1
    metrics = tuple((key, metric_header(key), "{:.4f}") for key in metric_keys(rows))
    return COLUMNS[:at] + metrics + COLUMNS[at:]


def _cell(value, fmt):
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return ""
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
                    row[key] = int(float(value))
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
        ax.scatter(
            [x],
            [row[metric]],
            marker="o" if quantized else "s",
            s=60,
            color="tab:blue" if quantized else "tab:red",
            zorder=3,
        )
        label = row["model"] + (f" {row['bits']}b" if quantized and row.get("bits") else "")
        if row.get("variant"):
            label += f" ({row['variant']})"
        ax.annotate(label, (x, row[metric]), textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.set_xscale("log")
    ax.margins(x=0.25, y=0.08)  # room for the labels right of the last points
    ax.set_xlabel("bytes per item (code + scales; log scale)")
    ax.set_ylabel(f"test {metric_header(metric)}" if metric else "test metric")
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


def write_report(rows, out_dir, title=None, primary=None):
    """Write ``table.md``, ``table.csv`` and ``tradeoff.png`` into ``out_dir``; return paths.

    ``primary``: the metric key plotted (default: the first metric column).
    """
    os.makedirs(out_dir, exist_ok=True)
    paths = {
        "table.md": os.path.join(out_dir, "table.md"),
        "table.csv": os.path.join(out_dir, "table.csv"),
        "tradeoff.png": os.path.join(out_dir, "tradeoff.png"),
    }
    with open(paths["table.md"], "w", encoding="utf-8") as f:
        if title:
            f.write(f"# {title}\n\n")
        f.write(markdown_table(rows))
    write_csv(rows, paths["table.csv"])
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
