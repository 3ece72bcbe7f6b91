"""Full-sort test evaluation: RecBole's standard path vs the packed fast path, one change at a time.

One full test evaluation (every test user ranked against every item, history
masked, Recall/NDCG/Hit/Precision/MRR at 10/20/50 by RecBole's metric classes)
on the Gowalla split (``--gowalla DIR``, the LightGCN authors' train.txt/test.txt, through the LightGCN-split
importer; a synthetic set of the same shape when it is missing or with
``--synthetic``; ``--quick``: a 3,000 x 4,000 synthetic set), by five paths:

(a) LightGCN d=64, RecBole's ``Trainer`` + ``Collector`` (float scores ``[B, n_items]``,
    ``torch.topk``, dense positives matrix)
(b) LightGCN d=64, the plugin's trainer: same scores and ``torch.topk``, sparse collector
(c) HQGNN 1-bit d=64, RecBole's ``Trainer`` + ``Collector`` (packed scores from
    ``full_sort_predict`` -> ``[B, n_items]`` floats -> ``torch.topk`` -> dense positives)
(d) HQGNN 1-bit d=64, the plugin's trainer with ``eval_path: standard`` (packed scores ->
    sparse collector with the packed tie rule); run once, for the check only
(e) HQGNN 1-bit d=64, the plugin's fast path (``eval_path: auto``): fused packed top-k
    with the history excluded in the kernel, no score matrix

Three ratios, each over (e):

* ``same_model_speedup`` = (c) / (e): the same quantized model, RecBole's own evaluation
  against ours (collector, loader and scoring change; the model does not);
* ``float_sparse_speedup`` = (b) / (e): float LightGCN already on our sparse collector;
* ``eval_speedup`` = (a) / (e): RecBole's LightGCN, standard evaluation (model, collector,
  loader and scoring all change at once).

Metric checks (exit status 1, before any ratio is printed, if one fails): (a) == (b)
(same scores, same ``torch.topk``, only the collector differs) and (d) == (e) (same
codes, same tie rule); every path gives the same metrics in every round. (c) and (e)
rank the same scores but break ties differently (``torch.topk``'s implementation-defined
order vs higher score then lower item id), so their metrics may differ slightly: both
are printed, not required equal.

All runs share one dataset, one config (users per batch = eval_batch_size // n_items,
the plugin default: 255 on Gowalla) and the same thread count. Models are untrained
(evaluation cost does not depend on training); HQGNN's quantizer ranges are initialised
from data by one training-mode forward. Every path runs once untimed (warm-up: LightGCN's
propagation, packing the codes, loading the numba kernels), then ``--repeats`` timed
rounds alternate the paths; medians.

    python benchmarks/bench_eval.py            # Gowalla split
    python benchmarks/bench_eval.py --quick
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

# spinning OpenMP workers slow torch down badly on a loaded machine (see bench_full_sort.py);
# passive waiting only helps the float baselines. An explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import recbole_quant  # noqa: E402,F401  (compatibility layer)
from recbole.evaluator import Collector  # noqa: E402
from recbole.trainer import Trainer  # noqa: E402

from recbole_quant import Config  # noqa: E402
from recbole_quant.data.lightgcn_split import import_lightgcn  # noqa: E402
from recbole_quant.quick_start import load_data  # noqa: E402
from recbole_quant.trainer import get_trainer  # noqa: E402

GOWALLA = ROOT.parent / "shared" / "data" / "gowalla"  # default of --gowalla: where this project's machines keep it
GOWALLA_SHAPE = (29_858, 40_981, 1_027_370)
QUICK_SHAPE = (3_000, 4_000, 100_000)

PATHS = {
    "a": "(a) LightGCN, RecBole Trainer + Collector",
    "b": "(b) LightGCN, sparse collector",
    "c": "(c) HQGNN 1-bit, RecBole Trainer + Collector (packed scores)",
    "d": "(d) HQGNN 1-bit, eval_path=standard (packed scores, sparse collector)",
    "e": "(e) HQGNN 1-bit, fused packed top-k",
}
TIMED = ("a", "b", "c", "e")  # (d) is run once, for the (d) == (e) check
EQUAL_PAIRS = (("a", "b"), ("d", "e"))
RATIOS = (("same_model_speedup", "c"), ("float_sparse_speedup", "b"), ("eval_speedup", "a"))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="3,000 x 4,000 synthetic set")
    p.add_argument("--synthetic", action="store_true", help="synthetic set of the Gowalla shape")
    p.add_argument("--gowalla", default=str(GOWALLA),
                   help="folder with the Gowalla LightGCN split (train.txt, test.txt)")
    p.add_argument("--shape", type=int, nargs=3, metavar=("USERS", "ITEMS", "INTERACTIONS"),
                   help="synthetic set of this shape (tests)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--work_dir", default=None,
                   help="where the imported dataset goes (default: a temp dir); reused when present")
    return p.parse_args(argv)


def write_lightgcn_files(folder, n_users, n_items, n_inter, seed=0):
    """A synthetic LightGCN-format split: Zipf-like item popularity, ~80/20 per user."""
    rng = np.random.default_rng(seed)
    per_user = np.maximum(rng.poisson(n_inter / n_users, n_users), 10)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    popularity /= popularity.sum()
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "train.txt"), "w") as tr, open(os.path.join(folder, "test.txt"), "w") as te:
        for u in range(n_users):
            items = np.unique(rng.choice(n_items, size=min(per_user[u], n_items // 2), p=popularity))
            rng.shuffle(items)
            cut = max(1, int(0.8 * len(items)))
            tr.write(" ".join(map(str, [u, *items[:cut]])) + "\n")
            te.write(" ".join(map(str, [u, *items[cut:]])) + "\n")
    return folder


def prepare_dataset(args, work):
    synthetic = args.shape or args.quick or args.synthetic or not os.path.isfile(os.path.join(args.gowalla, "train.txt"))
    if synthetic:
        n_users, n_items, n_inter = args.shape or (QUICK_SHAPE if args.quick else GOWALLA_SHAPE)
        name, label = "synthetic", f"synthetic LightGCN-format split, {n_users:,} users x {n_items:,} items"
    else:
        name, label = "gowalla", "Gowalla (LightGCN split, validation carved from train)"
    data = os.path.join(work, "data")
    if not os.path.exists(os.path.join(data, name, f"{name}.test.inter")):
        src = (write_lightgcn_files(os.path.join(work, "src"), n_users, n_items, n_inter)
               if synthetic else args.gowalla)
        import_lightgcn(src, name, data)
    return name, data, label


def metric_failures(results, rounds):
    """Messages for every pair of paths that should give equal metrics and does not.

    ``results``: {path: metrics of its first run}; ``rounds``: {path: [metrics of later runs]}.
    """
    failures = []
    for x, y in EQUAL_PAIRS:
        if x in results and y in results and results[x] != results[y]:
            diff = {m: (v, results[y].get(m)) for m, v in results[x].items() if v != results[y].get(m)}
            failures.append(f"{PATHS[x]} and {PATHS[y]} should give equal metrics; differ in {diff}")
    for p, runs in rounds.items():
        if any(r != results[p] for r in runs):
            failures.append(f"{PATHS[p]}: metrics changed between runs")
    return failures


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    work = os.path.abspath(args.work_dir or tempfile.mkdtemp(prefix="bench_eval_"))
    os.makedirs(work, exist_ok=True)
    os.chdir(work)  # RecBole writes ./log and ./saved relative to the cwd
    name, data_path, label = prepare_dataset(args, work)
    common = dict(data_path=data_path, show_progress=False, state="WARNING", embedding_size=64,
                  use_gpu=False)

    start = time.perf_counter()
    lgcn_config = Config(model="LightGCN", dataset=name, config_dict=common, cmd_args=[])
    dataset, train_data, _, test_data = load_data(lgcn_config)
    load_seconds = time.perf_counter() - start
    hq_config = Config(model="HQGNN", dataset=name, config_dict=dict(common, bits=1), cmd_args=[])

    torch.manual_seed(0)
    lightgcn = lgcn_config.model_class(lgcn_config, train_data._dataset)
    hqgnn = hq_config.model_class(hq_config, train_data._dataset)
    with torch.no_grad():  # initialise the quantizer ranges from data, as training would
        hqgnn.train()
        hqgnn.calculate_loss(next(iter(train_data)))
        hqgnn.eval()

    lgcn_recbole = Trainer(lgcn_config, lightgcn)  # RecBole's own trainer and collector
    hq_recbole = Trainer(hq_config, hqgnn)
    assert type(lgcn_recbole.eval_collector) is Collector and type(hq_recbole.eval_collector) is Collector
    lgcn_sparse = get_trainer(lgcn_config, lgcn_config.model_class)(lgcn_config, lightgcn)
    hq_plugin = get_trainer(hq_config, hq_config.model_class)(hq_config, hqgnn)

    def evaluate(trainer, eval_path=None):
        def run():
            if eval_path is not None:
                trainer.config["eval_path"] = eval_path
            return trainer.evaluate(test_data, load_best_model=False)
        return run

    runs = {"a": evaluate(lgcn_recbole), "b": evaluate(lgcn_sparse), "c": evaluate(hq_recbole),
            "d": evaluate(hq_plugin, "standard"), "e": evaluate(hq_plugin, "auto")}
    first, results = {}, {}
    for p, fn in runs.items():  # warm-up round; (d) runs only here
        first[p], results[p] = timed(fn)
    failures = metric_failures(results, {})
    if failures:  # before spending the timed rounds
        for f in failures:
            print(f"FAILED: {f}")
        sys.exit(1)
    times, rounds = {p: [] for p in TIMED}, {p: [] for p in TIMED}
    for _ in range(args.repeats):
        for p in TIMED:
            seconds, out = timed(runs[p])
            times[p].append(seconds)
            rounds[p].append(out)
    failures = metric_failures(results, rounds)
    if failures:
        for f in failures:
            print(f"FAILED: {f}")
        sys.exit(1)

    n_test_users = len(test_data.uid_list)
    users_per_batch = max(lgcn_config["eval_batch_size"] // dataset.item_num, 1)
    print(f"# data: {label}: {dataset.user_num - 1:,} users, {dataset.item_num - 1:,} items, "
          f"{n_test_users:,} test users, {users_per_batch} users per batch; loading {load_seconds:.1f}s")
    print(f"# machine: {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, "
          f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}, load average {os.getloadavg()[0]:.1f}; "
          f"{args.repeats} timed rounds after one warm-up; medians")
    print("# checks: metrics (a) == (b): ok; (d) == (e): ok; every path stable across rounds: ok. "
          "(c) vs (e): " + ("equal" if results["c"] == results["e"] else
                            "differ (torch.topk's tie order vs the packed tie rule; not required equal)"))
    med = {p: statistics.median(t) for p, t in times.items()}
    print()
    print("| path | first call (s) | evaluation (s) | (e) is faster by | Recall@20 | NDCG@20 |")
    print("|---|---|---|---|---|---|")
    for p, title in PATHS.items():
        seconds = f"{med[p]:.3f}" if p in med else f"({first[p]:.3f}, once)"
        ratio = f"{med[p] / med['e']:.1f}x" if p in med else "-"
        print(f"| {title} | {first[p]:.2f} | {seconds} | {ratio} | {results[p]['recall@20']:.4f} | "
              f"{results[p]['ndcg@20']:.4f} |")
    print()
    for key, p in RATIOS:
        print(f"{key}={med[p] / med['e']:.1f}")


if __name__ == "__main__":
    main()
