"""Full-sort top-k benchmark: float32 matmul + torch.topk vs packed codes vs faiss.

Every user is scored against every item and the top-k (default 20) kept, in
user batches of 256 (RecBole's full-sort evaluation path), with random codes
of the Gowalla shape (29,858 users x 40,981 items; ``--quick``: 2,000 x 4,000):

(a) float32 embeddings: ``U[batch] @ I.T`` + ``torch.topk`` (RecBole LightGCN)
(b) packed codes: ``PackedPredictor.topk`` (fused numba kernel, no score matrix);
    1 bit = sign codes (Hamming ranking, HashGNN), b >= 2 = uniform codes (HQ-GNN)
(c) faiss ``IndexBinaryFlat`` search (1 bit only, when faiss is installed)

Timings are medians over ``--repeats`` rounds; the methods alternate inside
every round so that machine noise hits all of them alike. The first call of
the numba kernels (JIT compile, and loading the on-disk cache) is measured
separately in fresh subprocesses. All paths use the same thread count (all
cores unless ``--threads``). The last line is ``speedup_vs_float32=<x>``: (a)
over (b) for 1-bit d=64.

    python benchmarks/bench_full_sort.py            # full size
    python benchmarks/bench_full_sort.py --quick
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numba  # noqa: E402
import torch  # noqa: E402
from numba import njit  # noqa: E402

from recbole_quant.packed import PackedPredictor, reference_topk  # noqa: E402
from recbole_quant.packed.bitops import POPCOUNT_IMPL, ctpop64, swar_popcount64  # noqa: E402

try:
    import faiss
except ImportError:  # optional
    faiss = None

FULL = (29_858, 40_981)
QUICK = (2_000, 4_000)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="2,000 users x 4,000 items")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batch", type=int, default=256, help="users per batch")
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--dims", type=int, nargs="+", default=[64, 256])
    p.add_argument("--bits", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-first-call", action="store_true", help="skip the JIT first-call subprocesses")
    return p.parse_args()


# --------------------------------------------------------------------------- methods


def float32_topk(u_emb, i_emb, batches, k):
    """(a) RecBole's path: dense float32 scores per batch, then torch.topk."""
    last = None
    for b in batches:
        last = torch.topk(u_emb[b] @ i_emb.T, k)
    return last


def packed_topk(pred, batches, k):
    """(b) fused packed top-k, one call per batch."""
    last = None
    for b in batches:
        last = pred.topk(b, k)
    return last


def faiss_topk(index, u_codes, batches, k):
    """(c) faiss exhaustive Hamming search per batch."""
    last = None
    for b in batches:
        last = index.search(u_codes[b], k)
    return last


# --------------------------------------------------------------------------- popcount micro-benchmark


def _make_microbench(popcount):
    @njit
    def xor_min(qu, qi, out):  # one-word Hamming: XOR + popcount + min
        for u in range(qu.shape[0]):
            a, m = qu[u], np.uint64(64)
            for i in range(qi.shape[0]):
                m = min(m, popcount(a ^ qi[i]))
            out[u] = m

    @njit
    def planes_max(qu, qi, out):  # 2-bit plane dot: 4 AND + popcount, weighted
        for u in range(qu.shape[0]):
            a0, a1, m = qu[u], ~qu[u], np.uint64(0)
            for i in range(qi.shape[0]):
                x0, x1 = qi[i], qi[i] >> np.uint64(1)
                k = (popcount(a0 & x0) + ((popcount(a1 & x0) + popcount(a0 & x1)) << np.uint64(1))
                     + (popcount(a1 & x1) << np.uint64(2)))
                m = max(m, k)
            out[u] = m

    return xor_min, planes_max


def popcount_microbench(n_items, repeats):
    """Median ms of two loop shapes with each popcount (1 thread, alternating)."""
    rng = np.random.default_rng(1)
    qu = rng.integers(0, 2**63, 256, dtype=np.uint64)
    qi = rng.integers(0, 2**63, n_items, dtype=np.uint64)
    out = np.empty(256, np.uint64)
    fns = {}
    for impl, pc in (("llvm.ctpop", ctpop64), ("swar", swar_popcount64)):
        xor_min, planes_max = _make_microbench(pc)
        fns[f"xor+min {impl}"] = xor_min
        fns[f"2-bit planes {impl}"] = planes_max
    times = {name: [] for name in fns}
    for f in fns.values():
        f(qu, qi, out)  # compile
    for _ in range(max(5, repeats)):
        for name, f in fns.items():
            times[name].append(timed(f, qu, qi, out))
    return {name: median_ms(t) for name, t in times.items()}


# --------------------------------------------------------------------------- first call (JIT)

_FIRST_CALL = r"""
import sys, time
t0 = time.perf_counter()
sys.path.insert(0, {root!r})
import numpy as np, torch
from recbole_quant.packed import PackedPredictor
t_import = time.perf_counter() - t0
g = torch.Generator().manual_seed(0)
sign = PackedPredictor.from_signs(torch.randn(8, 64, generator=g), torch.randn(100, 64, generator=g))
uni = PackedPredictor.from_uniform(torch.randint(0, 4, (8, 64), generator=g),
                                   torch.randint(0, 4, (100, 64), generator=g), 2, (-1, 1), (-1, 1))
u = torch.arange(8)
out = []
for name, f in (("sign topk", lambda: sign.topk(u, 5)), ("uniform topk", lambda: uni.topk(u, 5)),
                ("score", lambda: sign.score(u))):
    t = time.perf_counter(); f(); out.append("%s=%.2f" % (name, time.perf_counter() - t))
print("import=%.2f " % t_import + " ".join(out))
"""


def first_call_costs():
    """Seconds of the first kernel calls in fresh processes: cold cache, then warm cache."""
    code = _FIRST_CALL.format(root=str(ROOT))
    lines = {}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for label in ("cold cache (JIT compile)", "warm cache (load from disk)"):
            r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
            lines[label] = r.stdout.strip() if r.returncode == 0 else "failed: " + r.stderr.strip()[-300:]
    return lines


# --------------------------------------------------------------------------- helpers


def timed(f, *args):
    t = time.perf_counter()
    f(*args)
    return time.perf_counter() - t


def median_ms(xs):
    return 1e3 * statistics.median(xs)


def check_packed(pred, k, users):
    """The fused top-k equals score matrix + reference sort, exactly."""
    s, i = pred.topk(users, k)
    ref_s, ref_i = reference_topk(pred.score(users).numpy(), k)
    return bool(np.array_equal(i.numpy(), ref_i) and np.array_equal(s.numpy(), ref_s))


def check_faiss(pred, index, u_codes, d, k, users):
    """faiss breaks Hamming ties its own way: compare the top-k score lists."""
    dist, _ = index.search(u_codes[users.numpy()], k)
    s, _ = pred.topk(users, k)
    return bool(np.array_equal(np.sort(d - 2 * dist, axis=1), np.sort(s.numpy(), axis=1)))


def main():
    args = parse_args()
    n_users, n_items = QUICK if args.quick else FULL
    torch.set_num_threads(args.threads)
    if faiss is not None:
        faiss.omp_set_num_threads(args.threads)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    print(f"# bench_full_sort: {n_users} users x {n_items} items, top-{args.k}, batches of {args.batch} users, "
          f"median of {args.repeats} rounds")
    print(f"# machine: {os.cpu_count()} cores, {cpu}; threads: torch={torch.get_num_threads()} "
          f"packed={torch.get_num_threads()} faiss={args.threads if faiss else 'n/a'} (same for every path)")
    print(f"# torch {torch.__version__}, numpy {np.__version__}, numba {numba.__version__}, "
          f"faiss {faiss.__version__ if faiss else 'not installed'}; popcount: {POPCOUNT_IMPL}")

    if not args.no_first_call:
        for label, line in first_call_costs().items():
            print(f"# numba first call, {label}: {line} (s)")
    pc = popcount_microbench(n_items, args.repeats)
    print(f"# popcount micro-benchmark (256 x {n_items} one-word codes, 1 thread, median ms): "
          + ", ".join(f"{k} {v:.2f} ms" for k, v in pc.items()))

    rng = np.random.default_rng(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    batches = [torch.arange(s, min(s + args.batch, n_users)) for s in range(0, n_users, args.batch)]
    np_batches = [b.numpy() for b in batches]
    check_users = torch.arange(min(64, n_users))
    rows = []
    speedup_1bit_d64 = None
    for d in args.dims:
        u_emb = torch.randn(n_users, d, generator=gen)
        i_emb = torch.randn(n_items, d, generator=gen)
        methods = [("(a) float32 matmul + torch.topk", "-", lambda: float32_topk(u_emb, i_emb, batches, args.k))]
        checks = {}
        for b in args.bits:
            if b == 1:
                pred = PackedPredictor.from_signs(u_emb, i_emb)
                label = "(b) packed sign codes, fused top-k"
            else:
                ku = torch.from_numpy(rng.integers(0, 2**b, (n_users, d)))
                ki = torch.from_numpy(rng.integers(0, 2**b, (n_items, d)))
                pred = PackedPredictor.from_uniform(ku, ki, b, (-1.0, 1.0), (-1.0, 1.0))
                label = "(b) packed uniform codes, fused top-k"
            pred.topk(batches[0], args.k)  # warm-up (the first call is reported above)
            checks[f"b={b} fused == reference"] = check_packed(pred, args.k, check_users)
            methods.append((label, b, lambda pred=pred: packed_topk(pred, batches, args.k)))
            if b == 1 and faiss is not None and d % 8 == 0:
                index = faiss.IndexBinaryFlat(d)
                index.add(np.packbits(i_emb.numpy() >= 0, axis=1))
                u_codes = np.packbits(u_emb.numpy() >= 0, axis=1)
                checks["faiss scores == packed"] = check_faiss(pred, index, u_codes, d, args.k, check_users)
                methods.append(("(c) faiss IndexBinaryFlat", 1,
                                lambda index=index, u_codes=u_codes: faiss_topk(index, u_codes, np_batches, args.k)))
        for _, _, f in methods:  # warm-up round, not timed
            f()
        times = {m[0] + str(m[1]): [] for m in methods}
        for _ in range(args.repeats):
            for name, b, f in methods:
                times[name + str(b)].append(timed(f))
        base = statistics.median(times[methods[0][0] + "-"])
        for name, b, _ in methods:
            med = statistics.median(times[name + str(b)])
            rows.append((d, b, name, med, 1e3 * med / len(batches), base / med))
            if d == 64 and b == 1 and name.startswith("(b)"):
                speedup_1bit_d64 = base / med
        print(f"# d={d} checks: " + ", ".join(f"{k}: {'ok' if v else 'FAILED'}" for k, v in checks.items()))

    print()
    print(f"| d | bits | method | all users (s) | per {args.batch}-user batch (ms) | speedup vs (a) |")
    print("|---|---|---|---|---|---|")
    for d, b, name, med, per_batch, ratio in rows:
        print(f"| {d} | {b} | {name} | {med:.3f} | {per_batch:.2f} | {ratio:.1f}x |")
    print()
    if speedup_1bit_d64 is not None:
        print(f"speedup_vs_float32={speedup_1bit_d64:.1f}")


if __name__ == "__main__":
    main()
