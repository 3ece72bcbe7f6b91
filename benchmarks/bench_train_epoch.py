"""Training cost per epoch of the plugin's models against RecBole's LightGCN.

Each model trains ``--epochs`` epochs (after one untimed warm-up epoch) on the
same dataset and the same split (ml-100k by default, shipped with RecBole): every
model's data is loaded after ``init_seed(seed)`` as ``run_recbole_quant`` does, and
the script exits with status 1 if any model's train/valid/test interactions differ
from the first model's. Plugin defaults, the same trainer path as
``run_recbole_quant`` (per-epoch hooks included: HQ-GNN's Hessian refresh, HashGNN's
beta schedule, L2Q-GCN's stage switch; RecBole's LightGCN with ``apply_fast_propagation``, as
``run_recbole_quant`` does, so every graph model propagates with the same CSR
kernels); no evaluation runs. Every model, HQ-GNN
included, is timed round-robin, one epoch each per round, so machine noise hits all
of them alike; the table gives the median epoch time and its ratio to LightGCN's
measured in the same run, both to RecBole's default LightGCN (2 layers) and to
LightGCN of the same size (same number of propagation layers; HQ-GNN's default is 3,
HashGNN's sage encoder and BPR have none and are compared with the default).

HQ-GNN refreshes its GSTE delta at the start of every ``hessian_refresh``-th epoch
(epochs 0, 10, 20, ...), which costs extra: the median is over its ordinary epochs,
and the "amortised" column adds the refresh epochs' median extra cost divided by
the period (needs ``--epochs`` >= ``hessian_refresh``, so that one refresh epoch is timed).

    python benchmarks/bench_train_epoch.py
    python benchmarks/bench_train_epoch.py --epochs 3 --dataset ml-100k
    python benchmarks/bench_train_epoch.py --models "LightGCN 3 layers" "HQGNN 1-bit"
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

import hashlib  # noqa: E402

import torch  # noqa: E402
from recbole.utils import init_seed  # noqa: E402

from recbole_quant import Config  # noqa: E402
from recbole_quant.quick_start import load_data  # noqa: E402
from recbole_quant.sparse.baselines import apply_fast_propagation  # noqa: E402
from recbole_quant.trainer import get_trainer  # noqa: E402

MODELS = [
    ("LightGCN", {}),
    ("LightGCN 3 layers", {"model": "LightGCN", "n_layers": 3}),
    ("BPR", {}),
    ("HQGNN 1-bit", {"model": "HQGNN", "bits": 1}),
    ("HQGNN 4-bit", {"model": "HQGNN", "bits": 4}),
    ("HashGNN sage", {"model": "HashGNN", "encoder": "sage"}),
    ("HashGNN lightgcn", {"model": "HashGNN", "encoder": "lightgcn"}),
    ("L2QGCN anl", {"model": "L2QGCN", "variant": "anl", "warmup_epochs": 0}),
]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--data_path", default=None)
    p.add_argument("--epochs", type=int, default=10, help="timed epochs per model")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--models", nargs="+", choices=[label for label, _ in MODELS], default=None,
                   metavar="LABEL", help="a subset of the rows (LightGCN is always first); "
                   f"labels: {', '.join(label for label, _ in MODELS)}")
    return p.parse_args()


def propagation_layers(config):
    """LightGCN-style propagation layers of a run's model (None for models without)."""
    model = config["model"]
    if model in ("LightGCN", "HQGNN", "L2QGCN") or (
        model == "HashGNN" and config["encoder"] == "lightgcn"
    ):
        return int(config["n_layers"])
    return None


def split_fingerprint(loaders):
    """SHA-1 of the (user, item) pairs of the train, valid and test loaders, in order."""
    h = hashlib.sha1()
    for loader in loaders:
        data = loader._dataset
        for field in (data.uid_field, data.iid_field):
            h.update(data.inter_feat[field].numpy().tobytes())
    return h.hexdigest()


class Run:
    """One model with its trainer, stepping one epoch at a time."""

    def __init__(self, label, options, dataset, data_path):
        options = dict(options)
        model = options.pop("model", label)
        config_dict = dict(options, show_progress=False, state="WARNING", use_gpu=False)
        if data_path:
            config_dict["data_path"] = data_path
        self.config = Config(model=model, dataset=dataset, config_dict=config_dict, cmd_args=[])
        init_seed(self.config["seed"], self.config["reproducibility"])  # as run_recbole_quant
        _, self.train_data, valid, test = load_data(self.config)
        self.split = split_fingerprint((self.train_data, valid, test))
        init_seed(self.config["seed"], self.config["reproducibility"])
        self.model = self.config.model_class(self.config, self.train_data._dataset)
        # as run_recbole_quant: RecBole's LightGCN propagates on the same CSR kernels as ours
        self.fast_baseline = apply_fast_propagation(self.config, self.model)
        self.trainer = get_trainer(self.config, self.config.model_class)(self.config, self.model)
        self.label, self.epoch = label, 0
        self.times, self.periodic_times = [], []
        # HQ-GNN refreshes delta at the start of every `hessian_refresh`-th epoch
        self.period = int(self.config["hessian_refresh"]) if model == "HQGNN" else None

    def step(self, timed=True):
        start = time.perf_counter()
        self.model.train()
        self.trainer._train_epoch(self.train_data, self.epoch, show_progress=False)
        seconds = time.perf_counter() - start
        if timed:
            periodic = self.period is not None and self.epoch % self.period == 0
            (self.periodic_times if periodic else self.times).append(seconds)
        self.epoch += 1

    def median(self):
        return statistics.median(self.times)

    def amortised(self):
        """Median epoch plus the periodic epochs' median extra cost spread over the period."""
        if self.period is None:
            return self.median()
        if not self.periodic_times:
            return None
        return self.median() + (statistics.median(self.periodic_times) - self.median()) / self.period


def main():
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    os.chdir(tempfile.mkdtemp(prefix="bench_train_"))
    chosen = [(label, options) for label, options in MODELS
              if args.models is None or label in args.models or label == "LightGCN"]
    runs = [Run(label, options, args.dataset, args.data_path) for label, options in chosen]
    differ = [run.label for run in runs if run.split != runs[0].split]
    if differ:
        sys.exit(f"FAILED: the split of {', '.join(differ)} differs from {runs[0].label}'s")
    for run in runs:
        run.step(timed=False)  # warm-up (first sparse ops, allocator; HQ-GNN's epoch-0 refresh)
    for _ in range(args.epochs):
        for run in runs:
            run.step()
    base = runs[0].median()
    by_layers = {  # LightGCN's median epoch per number of layers
        int(run.config["n_layers"]): run.median()
        for run in runs if run.config["model"] == "LightGCN"
    }
    print(f"# {args.dataset}, plugin defaults, torch threads {torch.get_num_threads()}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; one split for every model "
          f"(seed {runs[0].config['seed']}, train/valid/test sha1 {runs[0].split[:12]}); "
          f"{args.epochs} timed epochs per model, round-robin; medians")
    fast = [run.label for run in runs if run.fast_baseline]
    print(f"# RecBole models switched to the CSR propagation (apply_fast_propagation): {', '.join(fast) or 'none'}")
    print()
    print("| model | layers | s/epoch (median) | s/epoch amortised | vs LightGCN (2 layers) | "
          "vs LightGCN, same layers |")
    print("|---|---|---|---|---|---|")
    for run in runs:
        amortised = run.amortised()
        cost = amortised if amortised is not None else run.median()
        layers = propagation_layers(run.config)
        same = by_layers.get(layers) if layers is not None else None
        note = (f" ({len(run.times)} ordinary epochs; refresh every {run.period})"
                if run.period is not None else "")
        amortised_cell = "-" if run.period is None else (
            f"{amortised:.2f} ({len(run.periodic_times)} refresh epochs timed)" if amortised is not None
            else "no refresh epoch timed")
        print(f"| {run.label}{note} | {layers if layers is not None else '-'} | {run.median():.2f} | "
              f"{amortised_cell} | {cost / base:.2f}x | {f'{cost / same:.2f}x' if same else '-'} |")
    print()
    print("# ratios use the amortised time where there is one (HQ-GNN), else the median")


if __name__ == "__main__":
    main()
