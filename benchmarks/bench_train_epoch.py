"""Training cost per epoch of the plugin's models against RecBole's LightGCN.

Each model trains ``--epochs`` epochs (after one untimed warm-up epoch) on the
same dataset and split (ml-100k by default, shipped with RecBole), with its
plugin defaults, through the same trainer path as ``run_recbole_quant``
(per-epoch hooks included: HQ-GNN's Hessian refresh, HashGNN's beta schedule,
L2Q-GCN's stage switch). No evaluation runs. Models are timed round-robin,
one epoch each per round, so machine noise hits all of them alike; the table
gives the median epoch time and its ratio to LightGCN's measured in the same
run, both to RecBole's default LightGCN (2 layers) and to LightGCN of the same size
(same number of propagation layers; HQ-GNN's default is 3, HashGNN's sage encoder
and BPR have none and are compared with the default). HQ-GNN's delta refresh (every ``hessian_refresh`` epochs) is amortised by
timing whole refresh periods: the reported HQ-GNN figure is the mean epoch
time over ``hessian_refresh`` consecutive epochs, refresh included.

    python benchmarks/bench_train_epoch.py
    python benchmarks/bench_train_epoch.py --epochs 3 --dataset ml-100k
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

import torch  # noqa: E402

from recbole_quant import Config  # noqa: E402
from recbole_quant.quick_start import load_data  # noqa: E402
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
    return p.parse_args()


def propagation_layers(config):
    """LightGCN-style propagation layers of a run's model (None for models without)."""
    model = config["model"]
    if model in ("LightGCN", "HQGNN", "L2QGCN") or (
        model == "HashGNN" and config["encoder"] == "lightgcn"
    ):
        return int(config["n_layers"])
    return None


class Run:
    """One model with its trainer, stepping one epoch at a time."""

    def __init__(self, label, options, dataset, data_path):
        options = dict(options)
        model = options.pop("model", label)
        config_dict = dict(options, show_progress=False, state="WARNING", use_gpu=False)
        if data_path:
            config_dict["data_path"] = data_path
        self.config = Config(model=model, dataset=dataset, config_dict=config_dict, cmd_args=[])
        _, self.train_data, _, _ = load_data(self.config)
        self.model = self.config.model_class(self.config, self.train_data._dataset)
        self.trainer = get_trainer(self.config, self.config.model_class)(self.config, self.model)
        self.label, self.epoch, self.times = label, 0, []
        # HQ-GNN refreshes delta every `hessian_refresh` epochs: time whole periods
        self.period = int(self.config["hessian_refresh"]) if model == "HQGNN" else 1

    def step(self, timed=True):
        start = time.perf_counter()
        for _ in range(self.period):
            self.model.train()
            self.trainer._train_epoch(self.train_data, self.epoch, show_progress=False)
            self.epoch += 1
        if timed:
            self.times.append((time.perf_counter() - start) / self.period)


def main():
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    os.chdir(tempfile.mkdtemp(prefix="bench_train_"))
    runs = [Run(label, options, args.dataset, args.data_path) for label, options in MODELS]
    for run in runs:
        run.step(timed=False)  # warm-up (first sparse ops, allocator)
    for _ in range(args.epochs):
        for run in runs:
            if len(run.times) * run.period < args.epochs:
                run.step()
    base = statistics.median(runs[0].times)
    by_layers = {  # LightGCN's median epoch per number of layers
        int(run.config["n_layers"]): statistics.median(run.times)
        for run in runs if run.config["model"] == "LightGCN"
    }
    print(f"# {args.dataset}, plugin defaults, torch threads {torch.get_num_threads()}, "
          f"{os.cpu_count()} cores; {args.epochs} timed epochs per model, round-robin; medians")
    print()
    print("| model | layers | s/epoch | vs LightGCN (2 layers) | vs LightGCN, same layers |")
    print("|---|---|---|---|---|")
    for run in runs:
        med = statistics.median(run.times)
        note = f" (mean over {run.period}-epoch refresh periods)" if run.period > 1 else ""
        layers = propagation_layers(run.config)
        same = by_layers.get(layers) if layers is not None else None
        print(f"| {run.label}{note} | {layers if layers is not None else '-'} | {med:.2f} | "
              f"{med / base:.2f}x | {f'{med / same:.2f}x' if same else '-'} |")


if __name__ == "__main__":
    main()
