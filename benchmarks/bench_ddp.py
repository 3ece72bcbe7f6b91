"""Seconds per training epoch with 1 and with 2 processes (torch.distributed, gloo, CPU).

Runs HQ-GNN (plugin defaults) on ml-100k through ``run_recbole_quant`` with ``nproc=1`` and
``nproc=2``, one torch thread per process, alternating 1, 2, 1, 2, ... for ``--rounds``
rounds of ``--epochs`` epochs each (evaluation every ``--epochs`` epochs, so once per run).
Prints the median seconds per epoch of each, the largest difference of the test metrics
between the two (the split is exact, so they should agree), and as its last line
``ddp_speedup=<x>`` (median 1-process s/epoch / median 2-process s/epoch).

A metric difference above ``--tolerance`` exits with status 1 before any speed is printed.

    python benchmarks/bench_ddp.py
    python benchmarks/bench_ddp.py --model L2QGCN --rounds 3 --epochs 3
"""

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="HQGNN")
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--data_path", default=None)
    p.add_argument("--epochs", type=int, default=3, help="epochs per timed run")
    p.add_argument("--rounds", type=int, default=3, help="runs of each process count")
    p.add_argument("--tolerance", type=float, default=1e-3)
    return p.parse_args()


def main():
    args = parse_args()
    os.environ["OMP_NUM_THREADS"] = "1"  # inherited by the spawned workers
    import torch

    torch.set_num_threads(1)
    from recbole_quant.distributed import free_port
    from recbole_quant.quick_start import run_recbole_quant

    base = dict(
        show_progress=False,
        state="WARNING",
        epochs=args.epochs,
        eval_step=args.epochs,
        stopping_step=1000,
        use_gpu=False,
    )
    if args.data_path:
        base["data_path"] = args.data_path
    times = {1: [], 2: []}
    results = {}
    with tempfile.TemporaryDirectory() as work:
        os.chdir(work)
        for round_index in range(args.rounds):
            for nproc in (1, 2):
                config = dict(base, nproc=nproc, port=free_port())
                result = run_recbole_quant(model=args.model, dataset=args.dataset,
                                           config_dict=config)
                times[nproc].append(result["seconds_per_epoch"])
                results[nproc] = result["test_result"]
                print(f"round {round_index + 1}, {nproc} process(es): "
                      f"{result['seconds_per_epoch']:.2f} s/epoch", flush=True)
    diff = max(abs(results[1][k] - results[2][k]) for k in results[1])
    print(f"largest test-metric difference, 1 vs 2 processes: {diff:.2e}")
    if diff > args.tolerance:
        print(f"FAILED: metrics differ by more than {args.tolerance}", file=sys.stderr)
        return 1
    one, two = statistics.median(times[1]), statistics.median(times[2])
    print(f"{args.model} on {args.dataset}: 1 process {one:.2f} s/epoch, "
          f"2 processes {two:.2f} s/epoch (medians of {args.rounds})")
    print(f"ddp_speedup={one / two:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
