"""Full-sort test evaluation: RecBole's standard path vs the packed fast path.

One full test evaluation (every test user ranked against every item, history
masked, Recall/NDCG/Hit/Precision/MRR at 10/20/50 by RecBole's metric classes)
on the Gowalla split (``../shared/data/gowalla`` through the LightGCN-split
importer; a synthetic set of the same shape when it is missing or with
``--synthetic``; ``--quick``: a 3,000 x 4,000 synthetic set), timed for:

(a) RecBole's standard evaluation of LightGCN d=64: RecBole's ``Trainer`` and
    ``Collector`` (scores ``[B, n_items]``, ``torch.topk``, dense positives matrix)
(b) LightGCN d=64 with the plugin's sparse collector (same scores, no dense matrix)
(c) HQGNN 1-bit d=64 through RecBole's path (``eval_path: standard``): packed
    scores -> ``[B, n_items]`` floats -> sparse collector
(d) HQGNN 1-bit d=64 on the fast path (``eval_path: auto``): fused packed top-k
    with history exclusion, no score matrix

All runs share one dataset, one config (users per batch = eval_batch_size //
n_items, the plugin default: 256 on Gowalla) and the same thread count. Models
are untrained (evaluation cost does not depend on training); HQGNN's quantizer
ranges are initialised from data by one training-mode forward. Each path is
warmed up once (LightGCN's propagation, packing the codes and loading the numba
kernels are cached by both models after their first call), then timed
``--repeats`` times, alternating paths within each round; medians are reported.
(c) and (d) must give identical metrics (checked). The last line is
``eval_speedup=<(a) / (d)>``.

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

GOWALLA = ROOT.parent / "shared" / "data" / "gowalla"
GOWALLA_SHAPE = (29_858, 40_981, 1_027_370)
QUICK_SHAPE = (3_000, 4_000, 100_000)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="3,000 x 4,000 synthetic set")
    p.add_argument("--synthetic", action="store_true", help="synthetic set of the Gowalla shape")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--work_dir", default=None, help="where the imported dataset goes (default: a temp dir)")
    return p.parse_args()


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
    if args.quick or args.synthetic or not (GOWALLA / "train.txt").exists():
        n_users, n_items, n_inter = QUICK_SHAPE if args.quick else GOWALLA_SHAPE
        src = write_lightgcn_files(os.path.join(work, "src"), n_users, n_items, n_inter)
        name, label = "synthetic", f"synthetic LightGCN-format split, {n_users:,} users x {n_items:,} items"
    else:
        src, name, label = str(GOWALLA), "gowalla", "Gowalla (LightGCN split, validation carved from train)"
    import_lightgcn(src, name, os.path.join(work, "data"))
    return name, os.path.join(work, "data"), label


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main():
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    work = args.work_dir or tempfile.mkdtemp(prefix="bench_eval_")
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

    recbole_trainer = Trainer(lgcn_config, lightgcn)  # RecBole's own trainer and collector
    assert type(recbole_trainer.eval_collector) is Collector
    sparse_trainer = get_trainer(lgcn_config, lgcn_config.model_class)(lgcn_config, lightgcn)
    hq_trainer = get_trainer(hq_config, hq_config.model_class)(hq_config, hqgnn)

    def hq_eval(path):
        def run():
            hq_trainer.config["eval_path"] = path
            return hq_trainer.evaluate(test_data, load_best_model=False)
        return run

    paths = [
        ("(a) LightGCN, RecBole standard evaluation", lambda: recbole_trainer.evaluate(test_data, load_best_model=False)),
        ("(b) LightGCN, sparse collector", lambda: sparse_trainer.evaluate(test_data, load_best_model=False)),
        ("(c) HQGNN 1-bit, standard path (packed scores)", hq_eval("standard")),
        ("(d) HQGNN 1-bit, fused packed top-k", hq_eval("auto")),
    ]
    first, results = {}, {}
    for title, fn in paths:  # warm-up: propagation, packing, kernel load
        first[title], results[title] = timed(fn)
    times = {title: [] for title, _ in paths}
    for _ in range(args.repeats):
        for title, fn in paths:
            seconds, out = timed(fn)
            times[title].append(seconds)
            assert out == results[title], f"{title}: metrics changed between runs"
    same_ab = results[paths[0][0]] == results[paths[1][0]]
    same_cd = results[paths[2][0]] == results[paths[3][0]]

    n_test_users = len(test_data.uid_list)
    users_per_batch = max(lgcn_config["eval_batch_size"] // dataset.item_num, 1)
    print(f"# data: {label}: {dataset.user_num - 1:,} users, {dataset.item_num - 1:,} items, "
          f"{n_test_users:,} test users, {users_per_batch} users per batch; loading {load_seconds:.1f}s")
    print(f"# machine: {os.cpu_count()} cores, torch threads {torch.get_num_threads()}; "
          f"{args.repeats} timed rounds after one warm-up; medians")
    print(f"# checks: metrics (a) == (b): {'ok' if same_ab else 'DIFFER (torch.topk tie order)'}; "
          f"(c) == (d): {'ok' if same_cd else 'FAILED'}")
    base = statistics.median(times[paths[0][0]])
    print()
    print("| path | first call (s) | evaluation (s) | speedup vs (a) | Recall@20 |")
    print("|---|---|---|---|---|")
    for title, _ in paths:
        med = statistics.median(times[title])
        print(f"| {title} | {first[title]:.2f} | {med:.3f} | {base / med:.1f}x | "
              f"{results[title]['recall@20']:.4f} |")
    print()
    if not same_cd:
        sys.exit("the fast and standard paths disagree")
    print(f"eval_speedup={base / statistics.median(times[paths[3][0]]):.1f}")


if __name__ == "__main__":
    main()
