"""Training speed of RecBole's LightGCN with and without the fast CSR propagation.

One run, on the Gowalla split by default, same batches and hyper-parameters for both:

* **check** first: the fast path's propagation outputs and gradients equal
  ``torch.sparse.mm``'s (float32 tolerances), and one batch's loss and parameter gradients
  are equal between the two models; any mismatch exits with status 1 before a speed is printed.
* **training step** per batch (``zero_grad``, ``calculate_loss``, ``backward``, Adam
  ``step`` -- RecBole's ``_train_epoch`` body) of RecBole's stock LightGCN and of the same model
  after :func:`recbole_quant.sparse.baselines.apply_fast_propagation`, timed on the same
  ``--batches`` pre-drawn batches, in ``--rounds`` interleaved rounds (the order alternates),
  median per batch over rounds. Seconds per epoch are an **estimate**: (median step + median
  data-loading time per batch) x batches per epoch; no full epoch is run.
* **propagation forward + backward** for one batch's rows (upstream gradient on the
  batch's distinct users and items): RecBole's (``n_layers`` full ``torch.sparse.mm``
  products, stack, mean, index) against the fast path's
  (:func:`recbole_quant.sparse.lightgcn_rows`, what the switched-in model trains with), and a
  **memory floor** measured in the same rounds: a streaming pass
  (:func:`recbole_quant.sparse.kernels.stream_blocks`, same threads, same row blocks) that
  reads the CSR arrays (int64 row pointers, int32 columns, float32 values) and the input
  matrix once and writes the output matrix once, with no arithmetic to speak of: the least
  memory traffic one full product must move. Floor per batch = that pass x 2 x n_layers
  (n_layers full products forward and backward, what the propagation is made of; the fast
  path computes some of them on part of the rows only, so it can in principle go below it).

The last line is ``train_speedup=<stock s/epoch / fast s/epoch>``.

    python -m recbole_quant.data import-lightgcn path/to/gowalla --name gowalla --out /tmp/rq_data
    python benchmarks/bench_train_speed.py --data_path /tmp/rq_data
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from recbole_quant import Config  # noqa: E402
from recbole_quant.errors import RecboleQuantError  # noqa: E402
from recbole_quant.packed.threads import run_ranges  # noqa: E402
from recbole_quant.quick_start import load_data  # noqa: E402
from recbole_quant.sparse import CSRAdjacency, kernels, lightgcn_rows, sparse_matmul  # noqa: E402
from recbole_quant.sparse.baselines import apply_fast_propagation  # noqa: E402

RTOL, ATOL = 1e-5, 1e-6  # float32, sums of up to a few thousand terms in another order


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="gowalla")
    p.add_argument("--data_path", default=None, help="folder holding <dataset>/ atomic files")
    p.add_argument("--batches", type=int, default=6, help="timed batches per model per round")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--n_layers", type=int, default=None, help="default: RecBole LightGCN's (2)")
    p.add_argument("--train_batch_size", type=int, default=None, help="default: RecBole's (2048)")
    return p.parse_args()


def median_ms(samples):
    return 1e3 * statistics.median(samples)


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def adam(config, model):
    """RecBole's default optimizer as its trainer builds it (learner: adam)."""
    return torch.optim.Adam(
        model.parameters(), lr=config["learning_rate"], weight_decay=config["weight_decay"] or 0.0
    )


def train_step(model, optimizer, interaction):
    optimizer.zero_grad()
    loss = model.calculate_loss(interaction)
    loss.backward()
    optimizer.step()
    return loss


def check_equal(stock, fast, csr, batch):
    """Fast == stock on propagation values/gradients and on one batch's loss/gradients."""
    x = torch.cat([stock.user_embedding.weight, stock.item_embedding.weight]).detach()
    upstream = torch.randn_like(x, generator=torch.Generator().manual_seed(0))
    problems = []

    def value_and_grad(product):
        e = x.clone().requires_grad_(True)
        y = product(e)
        (g,) = torch.autograd.grad((y * upstream).sum(), e)
        return y.detach(), g

    y_fast, g_fast = value_and_grad(lambda e: sparse_matmul(csr, e))
    y_ref, g_ref = value_and_grad(lambda e: torch.sparse.mm(stock.norm_adj_matrix, e))
    for label, a, b in (("propagation output", y_fast, y_ref), ("propagation gradient", g_fast, g_ref)):
        if not torch.allclose(a, b, rtol=RTOL, atol=ATOL):
            problems.append(f"{label}: max abs diff {float((a - b).abs().max()):.3g}")
    grads = []
    for model in (fast, stock):
        model.zero_grad()
        loss = model.calculate_loss(batch)
        loss.backward()
        grads.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
        model.zero_grad()
    (loss_f, grads_f), (loss_s, grads_s) = grads
    if not torch.allclose(loss_f, loss_s, rtol=RTOL, atol=ATOL):
        problems.append(f"batch loss {float(loss_f)} != {float(loss_s)}")
    for a, b in zip(grads_f, grads_s):
        if not torch.allclose(a, b, rtol=1e-4, atol=ATOL):
            problems.append(f"parameter gradient: max abs diff {float((a - b).abs().max()):.3g}")
    return float((y_fast - y_ref).abs().max()), float((g_fast - g_ref).abs().max()), problems


def batch_rows(model, interaction):
    """Sorted distinct node ids a BPR batch reads, and each triple's positions among them."""
    nodes = torch.cat([
        interaction[model.USER_ID],
        interaction[model.ITEM_ID] + model.n_users,
        interaction[model.NEG_ITEM_ID] + model.n_users,
    ])
    return torch.unique(nodes, return_inverse=True)


def propagation_torch(model, x, rows, upstream):
    """RecBole's propagation for one batch: L full products, stack, mean, the batch's rows;
    then backward with ``upstream`` on those rows."""
    e = x.clone().requires_grad_(True)
    layers = [e]
    for _ in range(model.n_layers):
        layers.append(torch.sparse.mm(model.norm_adj_matrix, layers[-1]))
    final = torch.stack(layers, dim=1).mean(dim=1)[rows]
    final.backward(upstream)


def propagation_fast(csr, n_layers, x, rows, upstream):
    """The same with :func:`recbole_quant.sparse.lightgcn_rows` (what the switch trains with)."""
    e = x.clone().requires_grad_(True)
    lightgcn_rows(csr, e, n_layers, rows).backward(upstream)


def main():
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config_dict = {"show_progress": False, "state": "WARNING", "use_gpu": False}
    for key in ("data_path", "n_layers", "train_batch_size"):
        if getattr(args, key) is not None:
            config_dict[key] = getattr(args, key)
    try:
        config = Config(model="LightGCN", dataset=args.dataset, config_dict=config_dict, cmd_args=[])
        _, train_data, _, _ = load_data(config)
    except RecboleQuantError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    dataset = train_data._dataset
    torch.manual_seed(config["seed"])
    stock = config.model_class(config, dataset)
    fast = config.model_class(config, dataset)
    fast.load_state_dict(stock.state_dict())
    if not apply_fast_propagation(config, fast):
        print("error: apply_fast_propagation did not switch the fast path in", file=sys.stderr)
        return 1
    csr = CSRAdjacency.from_torch(stock.norm_adj_matrix)
    n_layers, dim = int(config["n_layers"]), int(config["embedding_size"])
    n_batches = len(train_data)
    threads = torch.get_num_threads()
    print(
        f"{args.dataset}: {dataset.user_num:,} users, {dataset.item_num:,} items (padding "
        f"included), {csr.n:,} nodes, {csr.nnz:,} adjacency entries; d={dim}, {n_layers} layers, "
        f"batch {config['train_batch_size']}, {n_batches} batches/epoch; {threads} threads"
    )

    # batches drawn once (negative sampling included) and replayed to both models;
    # drawing them is timed per batch: the data loading both models share
    loader_s, batches = [], []
    it = iter(train_data)
    for _ in range(args.batches + 1):
        start = time.perf_counter()
        batch = next(it, None)
        if batch is None:
            print(f"error: the training data has fewer than --batches + 1 = {args.batches + 1} "
                  "batches; lower --batches or --train_batch_size", file=sys.stderr)
            return 2
        loader_s.append(time.perf_counter() - start)
        batches.append(batch)
    check_batch, batches = batches[0], batches[1:]

    out_diff, grad_diff, problems = check_equal(stock, fast, csr, check_batch)
    if problems:
        print("check FAILED: fast path differs from torch.sparse.mm: " + "; ".join(problems))
        return 1
    print(
        f"check: fast propagation == torch.sparse.mm (max abs diff: output {out_diff:.2g}, "
        f"gradient {grad_diff:.2g}); LightGCN batch loss and gradients equal: ok"
    )

    # warm-up (numba compile on a cold cache, allocator, Adam state)
    optimizers = {"stock": adam(config, stock), "fast": adam(config, fast)}
    models = {"stock": stock, "fast": fast}
    for name in models:
        train_step(models[name], optimizers[name], batches[0])

    x = torch.cat([stock.user_embedding.weight, stock.item_embedding.weight]).detach()
    rows, _ = batch_rows(stock, batches[0])
    upstream = torch.randn(len(rows), dim)
    xa, scratch = x.numpy(), np.empty_like(x.numpy())
    value_bits = csr.values(np.float32).view(np.int32)

    def stream():
        run_ranges(kernels.stream_blocks, len(csr.bounds) - 1, csr.bounds, csr.indptr,
                   csr.indices, value_bits, xa, scratch)

    propagations = {
        "torch": lambda: propagation_torch(stock, x, rows, upstream),
        "fast": lambda: propagation_fast(csr, n_layers, x, rows, upstream),
    }
    products = {
        "torch": lambda: torch.sparse.mm(stock.norm_adj_matrix, x),
        "fast": lambda: csr.matmul(x),
    }
    step_s = {name: [] for name in models}
    prop_s = {name: [] for name in propagations}
    product_s = {name: [] for name in products}
    floor_s = []
    stream()
    for r in range(args.rounds):
        order = ["stock", "fast"] if r % 2 == 0 else ["fast", "stock"]
        for name in order:
            model, opt = models[name], optimizers[name]
            total = sum(timed(lambda b=b: train_step(model, opt, b)) for b in batches)
            step_s[name].append(total / len(batches))
        for name in (["torch", "fast"] if order[0] == "stock" else ["fast", "torch"]):
            prop_s[name].append(timed(propagations[name]))
            product_s[name].append(timed(products[name]))
        floor_s.append(statistics.median(timed(stream) for _ in range(5)))

    stream_ms = median_ms(floor_s)
    floor_ms = stream_ms * 2 * n_layers
    traffic = csr.indptr.nbytes + csr.indices.nbytes + csr.values(np.float32).nbytes + 2 * x.nbytes
    print(
        f"floor: streaming pass over one product's arrays ({traffic / 1e6:.1f} MB: CSR "
        f"{(traffic - 2 * x.nbytes) / 1e6:.1f} MB + x {x.nbytes / 1e6:.1f} MB read + out "
        f"{x.nbytes / 1e6:.1f} MB written) {stream_ms:.2f} ms = {traffic / stream_ms / 1e6:.1f} GB/s; "
        f"per batch (2 x {n_layers} products): {floor_ms:.2f} ms"
    )
    torch_ms, fast_ms = median_ms(prop_s["torch"]), median_ms(prop_s["fast"])
    product_torch, product_fast = median_ms(product_s["torch"]), median_ms(product_s["fast"])
    print(
        f"one full product A @ x, forward only: torch.sparse.mm {product_torch:.1f} ms, fast "
        f"{product_fast:.1f} ms ({product_torch / product_fast:.1f}x; "
        f"{product_fast / stream_ms:.2f}x the streaming pass)"
    )
    ball = csr.neighborhood(rows.numpy())
    degree = np.diff(csr.indptr)
    print(
        f"batch rows: {len(rows):,} distinct nodes holding {degree[rows.numpy()].sum() / csr.nnz:.0%} "
        f"of the entries; with their neighbours {len(ball):,} nodes ({len(ball) / csr.n:.0%}), "
        f"{degree[ball].sum() / csr.nnz:.0%} of the entries"
    )
    print(
        f"propagation forward+backward per batch ({len(rows):,} distinct batch rows): "
        f"RecBole (torch.sparse.mm, stack, mean) {torch_ms:.1f} ms, fast (lightgcn_rows) "
        f"{fast_ms:.1f} ms ({torch_ms / fast_ms:.1f}x faster; {fast_ms / floor_ms:.2f}x the floor)"
    )
    load_ms = median_ms(loader_s)
    stock_ms, ours_ms = median_ms(step_s["stock"]), median_ms(step_s["fast"])
    print(
        f"training step per batch (median of {args.rounds} interleaved rounds x "
        f"{len(batches)} batches): RecBole LightGCN {stock_ms:.1f} ms, fast {ours_ms:.1f} ms "
        f"(of which propagation ~{fast_ms:.1f} ms); data loading {load_ms:.1f} ms per batch (shared)"
    )
    stock_epoch = (stock_ms + load_ms) * n_batches / 1e3
    ours_epoch = (ours_ms + load_ms) * n_batches / 1e3
    print(
        f"s/epoch (estimate: (step + loading) x {n_batches} batches): "
        f"RecBole LightGCN {stock_epoch:.1f} s, fast {ours_epoch:.1f} s"
    )
    print(f"train_speedup={stock_epoch / ours_epoch:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
