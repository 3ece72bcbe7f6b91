"""Full-sort top-k benchmark: every code kind the models produce vs float32 (and faiss).

Every user is scored against every item and the top-k (default 20) kept, in
user batches of 256 (RecBole's full-sort evaluation path), on the Gowalla shape
(29,858 users x 40,981 items; ``--quick``: 2,000 x 4,000; ``--users N``: only
the first N users, every item). One row per code kind, built without training
from random embeddings through the models' own quantizers and the same
``PackedPredictor`` constructors their ``build_predictor`` calls:

* ``hashgnn_sign32``: HashGNN hard, 32-bit sign codes (``from_signs``, plain Hamming)
* ``hqgnn_<b>bit_d<d>``: HQ-GNN, b = 1, 2, 4 bits at d = 64 and 256, uniform codes with
  the learnable ranges' affine terms (``UniformQuantizer`` -> ``from_uniform``)
* ``l2qgcn_anl``: L2Q-GCN-anl, 3 groups (layers 0..2) x 64 sign codes with per-node,
  per-layer scales (``ScaledSign.encode`` x linear layer weights -> ``from_signs``)

Each kind is timed against float32 embeddings of the same dimension (``U[batch] @ I.T``
+ ``torch.topk``, what RecBole does for LightGCN; 192 = 3 x 64 for L2Q-GCN) and, where
faiss computes the same ranking (plain Hamming: HashGNN), against faiss
``IndexBinaryFlat``. Two tables: with the training history excluded (as RecBole
evaluates: float32 scores of history items set to -inf before ``torch.topk``; the fused
kernel skips them; faiss searches k + the batch's longest history and drops history
items) and without exclusion. Histories are the Gowalla training lists
(``--history FILE``, the Gowalla split's train.txt; a synthetic Zipf history of the same mean length
when it is missing).

Checks run first, on 48 users of every kind, and any mismatch exits with status 1
before anything is timed: the packed scores equal an independent numpy evaluation of
the documented scoring formula on the same codes bit for bit and agree with the float64
dot product of the dequantized embeddings; the fused top-k (with and without exclusion)
equals the reference top-k of those numpy scores (tie rule: higher score, then lower
item id); faiss returns the same top-k score lists.

Timings are medians over ``--repeats`` rounds; all methods alternate inside every
round, so machine noise hits them alike; ratios come from the same rounds. All paths
use the same thread count (``--threads``, default all cores; the packed kernels follow
torch's). Output: the tables, one ``speedup_<kind>=<x>`` line per kind (history
excluded, over float32 of the same dimension) and, last, ``speedup_vs_float32=<x>`` for
HQ-GNN 1-bit d=64 (the default model).

    python benchmarks/bench_full_sort.py            # Gowalla shape
    python benchmarks/bench_full_sort.py --quick
    python benchmarks/bench_full_sort.py --users 8192 --repeats 3
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

# OpenMP workers that spin while waiting (the default) make torch's and faiss's thread
# pools slow each other down 10-40x on a loaded machine; passive waiting is fair to both
# baselines (it only speeds them up) and the packed kernels do not use OpenMP. Set before
# torch and faiss load their OpenMP runtimes; an explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numba  # noqa: E402
import torch  # noqa: E402
from numba import njit  # noqa: E402

from recbole_quant.packed import PackedPredictor, reference_topk  # noqa: E402
from recbole_quant.packed.bitops import POPCOUNT_IMPL, ctpop64, swar_popcount64  # noqa: E402
from recbole_quant.quantization import ScaledSign, UniformQuantizer  # noqa: E402

try:
    import faiss
except ImportError:  # optional
    faiss = None

FULL = (29_858, 40_981)
QUICK = (2_000, 4_000)
GOWALLA_TRAIN = ROOT.parent / "shared" / "data" / "gowalla" / "train.txt"
HEADLINE = "hqgnn_1bit_d64"  # the default model: its ratio is the last line
CHECK_USERS = 48
# HQ-GNN's initial range half-width in std units by code width (HQGNN.DEFAULT_INIT_STD)
HQGNN_INIT_STD = {1: 3.0, 2: 1.5, 4: 2.5}
KIND_NAMES = (["hashgnn_sign32"]
              + [f"hqgnn_{b}bit_d{d}" for d in (64, 256) for b in (1, 2, 4)]
              + ["l2qgcn_anl"])


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="2,000 users x 4,000 items")
    p.add_argument("--users", type=int, default=None,
                   help="score only the first N users (all items); ratios are per batch alike")
    p.add_argument("--kinds", nargs="+", choices=KIND_NAMES, default=KIND_NAMES)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batch", type=int, default=256, help="users per batch")
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--history", default=str(GOWALLA_TRAIN),
                   help="LightGCN-format train.txt whose lists are the excluded histories")
    p.add_argument("--no-first-call", action="store_true", help="skip the JIT first-call subprocesses")
    return p.parse_args(argv)


# --------------------------------------------------------------------------- code kinds


@dataclass
class Kind:
    """One code kind: its packed predictor, float32 counterpart and exact reference."""

    name: str
    label: str  # model and code, for the tables
    bits_per_item: int
    pred: PackedPredictor
    float_users: torch.Tensor  # float32 [n_users, D]: the baseline of the same dimension
    float_items: torch.Tensor
    # users -> (float32 scores by the documented formula, float64 dequantized scores, tolerance)
    reference: Callable
    faiss_codes: Optional[tuple] = None  # (index, packed user bytes, bits) where faiss applies
    times: dict = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return self.float_users.shape[1]


def _f32(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float32) + np.float32(0.0)  # -0.0 -> +0.0, as the kernels write


def hashgnn_kind(n_users, n_items, gen, bits=32):
    """HashGNN hard: ``sign(tanh(h))`` of ``bits`` coordinates, Hamming ranking."""
    zu = torch.tanh(torch.randn(n_users, bits, generator=gen))
    zi = torch.tanh(torch.randn(n_items, bits, generator=gen))
    pred = PackedPredictor.from_signs(zu, zi)  # as HashGNN.build_predictor (mode hard)
    qu = np.where(zu.numpy() >= 0, 1.0, -1.0)
    qi = np.where(zi.numpy() >= 0, 1.0, -1.0)

    def reference(users):
        dot = qu[users] @ qi.T  # exact: integers far below 2^53
        return _f32(dot), dot, 0.0

    fa = None
    if faiss is not None:
        index = faiss.IndexBinaryFlat(bits)
        index.add(np.packbits(zi.numpy() >= 0, axis=1))
        fa = (index, np.packbits(zu.numpy() >= 0, axis=1), bits)
    return Kind(f"hashgnn_sign{bits}", f"HashGNN hard, {bits}-bit signs", bits, pred, zu, zi,
                reference, fa)


def hqgnn_kind(n_users, n_items, gen, bits, d):
    """HQ-GNN: b-bit uniform codes of final embeddings, ranges initialised as in training.

    1 bit centres each side per dimension (the model's default); 2+ bits keep a shared
    offset (the popularity direction), so the affine terms of the ranges matter.
    """
    tables, quantizers = [], []
    for n in (n_users, n_items):
        e = 0.1 * torch.randn(n, d, generator=gen)
        if bits == 1:
            e = e - e.mean(dim=0, keepdim=True)
        else:
            e = e + 0.05 * torch.randn(1, d, generator=gen)
        q = UniformQuantizer(bits, init_std=HQGNN_INIT_STD[bits])
        q.initialize_range(e)
        tables.append(e)
        quantizers.append(q)
    (eu, ei), (uq, iq) = tables, quantizers
    with torch.no_grad():
        ku, ki = uq.codes(eu), iq.codes(ei)
        deq_u = uq.dequantize(ku).double().numpy()
        deq_i = iq.dequantize(ki).double().numpy()
    ranges = [(float(q.lower.detach()), float(q.upper.detach())) for q in (uq, iq)]
    pred = PackedPredictor.from_uniform(ku, ki, bits, user_range=ranges[0], item_range=ranges[1])
    (lu, hu), (li, hi) = ranges
    du, di = (hu - lu) / (2**bits - 1), (hi - li) / (2**bits - 1)
    ku64, ki64 = ku.double().numpy(), ki.double().numpy()
    s_u, s_i = ku64.sum(axis=1), ki64.sum(axis=1)

    def reference(users):
        # <e_u, e_i> = du di K + lu di S_i + li du S_u + d lu li, in the documented order:
        # float32((mult * K + item_bias) + user_const)
        k_dot = ku64[users] @ ki64.T  # exact integers
        exact = (du * di * k_dot + (lu * di) * s_i[None, :]) + (li * du * s_u[users] + d * lu * li)[:, None]
        deq = deq_u[users] @ deq_i.T
        tol = 1e-5 * (np.abs(deq_u[users]) @ np.abs(deq_i).T)  # float32 dequantization error
        return _f32(exact), deq, tol

    return Kind(f"hqgnn_{bits}bit_d{d}", f"HQGNN {bits}-bit uniform (affine), d={d}", bits * d,
                pred, eu, ei, reference)


def l2qgcn_kind(n_users, n_items, gen, groups=3, d=64):
    """L2Q-GCN-anl: per layer l, ``sign(e_l)`` with scale ``w_l * mean|e_l|`` (linear w_l)."""
    weight = torch.arange(1, groups + 1, dtype=torch.float32) / groups  # BiGeaR's linear w_l
    binarizer = ScaledSign("gaussian")
    parts = []
    for n in (n_users, n_items):
        layers = 0.1 * torch.randn(n, groups, d, generator=gen)
        codes, alpha = binarizer.encode(layers)  # as L2QGCN.binary_codes
        parts.append((layers, codes, alpha.squeeze(-1) * weight))
    (lu, cu, su), (li, ci, si) = parts
    pred = PackedPredictor.from_signs(cu, ci, su, si)  # as L2QGCN.build_predictor
    cu64, ci64 = cu.double().numpy(), ci.double().numpy()
    su64, si64 = su.double().numpy(), si.double().numpy()
    # the float counterpart: the layer-weighted concatenation, G x d = 192 dimensions
    fu = (lu * weight[:, None]).reshape(n_users, groups * d)
    fi = (li * weight[:, None]).reshape(n_items, groups * d)
    deq_u = (cu64 * su64[:, :, None]).reshape(n_users, -1)
    deq_i = (ci64 * si64[:, :, None]).reshape(n_items, -1)

    def reference(users):
        raw = np.zeros((len(users), n_items))
        for g in range(groups):  # sum_g (su * si) * dot_g, g ascending (documented order)
            raw = raw + (su64[users, g][:, None] * si64[None, :, g]) * (cu64[users, g] @ ci64[:, g].T)
        deq = deq_u[users] @ deq_i.T
        tol = 1e-9 * (np.abs(deq_u[users]) @ np.abs(deq_i).T)  # float64 summation order only
        return _f32(raw), deq, tol

    return Kind("l2qgcn_anl", f"L2QGCN-anl, {groups} groups x {d} signs + scales", groups * d + 32 * groups,
                pred, fu, fi, reference)


def build_kinds(n_users, n_items, seed=0, names=KIND_NAMES):
    """The requested kinds over the same users and items, each from its own seeded draw."""
    kinds = []
    for j, name in enumerate(KIND_NAMES):
        if name not in names:
            continue
        gen = torch.Generator().manual_seed(seed * 1000 + j)
        if name.startswith("hashgnn_sign"):
            kinds.append(hashgnn_kind(n_users, n_items, gen, int(name[len("hashgnn_sign"):])))
        elif name.startswith("hqgnn_"):
            b, d = name[len("hqgnn_"):].split("bit_d")
            kinds.append(hqgnn_kind(n_users, n_items, gen, int(b), int(d)))
        else:
            kinds.append(l2qgcn_kind(n_users, n_items, gen))
    return kinds


# --------------------------------------------------------------------------- histories


def load_histories(path, n_users, n_items, seed=0):
    """Per-user sorted item ids to exclude: the lists of a LightGCN train.txt, else synthetic.

    Returns (list of int64 arrays, one per user 0..n_users-1; a description).
    """
    path = Path(path)
    if path.is_file():
        hist = [np.zeros(0, np.int64)] * n_users
        with open(path) as f:
            for line in f:
                ids = np.array(line.split(), np.int64)
                if ids.size and ids[0] < n_users:
                    items = ids[1:]
                    hist[ids[0]] = np.unique(items[items < n_items])
        return hist, f"training lists of {path}"
    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.8
    pop /= pop.sum()
    lengths = np.minimum(rng.poisson(27, n_users) + 1, n_items // 2)
    hist = [np.unique(rng.choice(n_items, size=n, p=pop)) for n in lengths]
    return hist, "synthetic Zipf histories (mean 27 items; train.txt not found)"


def csr(lists):
    indptr = np.zeros(len(lists) + 1, np.int64)
    np.cumsum([len(x) for x in lists], out=indptr[1:])
    indices = np.concatenate(lists).astype(np.int64) if len(lists) else np.zeros(0, np.int64)
    return indptr, indices


@dataclass
class BatchExclusion:
    """One batch's history in the three forms the three paths take."""

    csr: tuple  # (indptr, indices) for PackedPredictor.topk
    rows_cols: tuple  # (row tensor, item tensor) for RecBole's ``scores[idx] = -inf``
    keys: np.ndarray  # sorted row * n_items + item, for filtering faiss results
    longest: int


def batch_exclusions(histories, bounds, n_items):
    out = []
    for start, stop in bounds:
        rows = histories[start:stop]
        indptr, indices = csr(rows)
        r = np.repeat(np.arange(stop - start), np.diff(indptr))
        out.append(BatchExclusion((indptr, indices), (torch.from_numpy(r), torch.from_numpy(indices)),
                                  np.sort(r * n_items + indices), max((len(x) for x in rows), default=0)))
    return out


# --------------------------------------------------------------------------- methods


def float32_topk(u_emb, i_emb, bounds, k, excl):
    """RecBole's path: dense float32 scores per batch, history to -inf, then torch.topk."""
    for j, (start, stop) in enumerate(bounds):
        scores = u_emb[start:stop] @ i_emb.T
        if excl is not None:
            scores[excl[j].rows_cols] = -np.inf
        torch.topk(scores, k)


def packed_topk(pred, bounds, k, excl):
    """The fused packed top-k, one call per batch, history skipped inside the kernel."""
    for j, (start, stop) in enumerate(bounds):
        pred.topk(np.arange(start, stop), k, exclude=None if excl is None else excl[j].csr)


def faiss_search(index, u_codes, users, k, n_items, ex=None):
    """faiss exhaustive Hamming search; with a history, k + longest history, then filtered.

    Returns (distances, ids) [B, k].
    """
    if ex is None:
        return index.search(u_codes[users], k)
    dist, ids = index.search(u_codes[users], k + ex.longest)
    keys = np.arange(len(users))[:, None] * n_items + ids
    drop = np.isin(keys, ex.keys) | (ids < 0)
    keep = np.argsort(drop, axis=1, kind="stable")[:, :k]  # first k kept, in faiss's order
    return np.take_along_axis(dist, keep, 1), np.take_along_axis(ids, keep, 1)


def faiss_topk(index, u_codes, bounds, k, n_items, excl):
    for j, (start, stop) in enumerate(bounds):
        faiss_search(index, u_codes, np.arange(start, stop), k, n_items, None if excl is None else excl[j])


# --------------------------------------------------------------------------- checks


def check_users(n_users, seed=0, n=CHECK_USERS):
    """First, last and random users (sorted, distinct)."""
    rng = np.random.default_rng(seed)
    third = n // 3
    picks = np.concatenate([np.arange(min(third, n_users)), np.arange(max(0, n_users - third), n_users),
                            rng.integers(0, n_users, n - 2 * third)])
    return np.unique(picks)


def check_kind(kind, users, histories, k):
    """Failure messages (empty when every check holds) for one kind on ``users``."""
    failures = []
    exact, deq, tol = kind.reference(users)
    n_items = exact.shape[1]
    got = kind.pred.score(users).numpy()
    if not np.array_equal(got, exact):
        bad = np.argwhere(got != exact)[0]
        failures.append(f"{kind.name}: score({users[bad[0]]}, {bad[1]}) = {got[tuple(bad)]!r}, "
                        f"the scoring formula on the same codes gives {exact[tuple(bad)]!r}")
    if not (np.abs(exact.astype(np.float64) - deq) <= tol + 1e-6 * np.abs(deq).max()).all():
        failures.append(f"{kind.name}: scores differ from the dequantized float64 dot product")
    indptr, indices = csr([histories[u] for u in users])
    for label, ex, ref_ex in (("no exclusion", None, (None, None)),
                              ("history excluded", (indptr, indices), (indptr, indices))):
        s, i = kind.pred.topk(users, k, exclude=ex)
        ref_s, ref_i = reference_topk(exact, k, *ref_ex)
        if not (np.array_equal(i.numpy(), ref_i) and np.array_equal(s.numpy(), ref_s)):
            failures.append(f"{kind.name}, {label}: fused top-k differs from the reference top-k "
                            "of the same scores (tie rule: higher score, then lower item id)")
        if kind.faiss_codes is not None:
            index, u_codes, bits = kind.faiss_codes
            fe = None
            if ex is not None:
                r = np.repeat(np.arange(len(users)), np.diff(indptr))
                fe = BatchExclusion(None, None, np.sort(r * n_items + indices), int(np.diff(indptr).max()))
            dist, _ = faiss_search(index, u_codes, users, k, n_items, fe)
            if not np.array_equal(np.sort(bits - 2 * dist, axis=1)[:, ::-1], ref_s):
                failures.append(f"{kind.name}, {label}: faiss top-k scores differ from the reference")
    return failures


def run_checks(kinds, histories, k, seed=0):
    """Every check of every kind; returns all failure messages."""
    failures = []
    for kind in kinds:
        failures += check_kind(kind, check_users(kind.pred.n_users, seed), histories, k)
    return failures


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
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


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


# --------------------------------------------------------------------------- timing


def timed(f, *args):
    t = time.perf_counter()
    f(*args)
    return time.perf_counter() - t


def time_table(kinds, bounds, k, n_items, excl, repeats):
    """Median seconds per method over interleaved rounds: {(kind or dim, method): s}."""
    methods = {}
    for kind in kinds:  # one float32 baseline per dimension, shared by the kinds of that size
        methods.setdefault(("float32", kind.dim), (lambda u=kind.float_users, i=kind.float_items:
                                                   float32_topk(u, i, bounds, k, excl)))
        methods[(kind.name, "packed")] = lambda p=kind.pred: packed_topk(p, bounds, k, excl)
        if kind.faiss_codes is not None:
            index, u_codes, _ = kind.faiss_codes
            methods[(kind.name, "faiss")] = (lambda index=index, u_codes=u_codes:
                                             faiss_topk(index, u_codes, bounds, k, n_items, excl))
    one = bounds[:1]  # warm-up on one batch: kernel load, allocator, faiss threads
    for kind in kinds:
        float32_topk(kind.float_users, kind.float_items, one, k, excl)
        packed_topk(kind.pred, one, k, excl)
        if kind.faiss_codes is not None:
            faiss_topk(*kind.faiss_codes[:2], one, k, n_items, excl)
    times = {key: [] for key in methods}
    for _ in range(repeats):
        for key, f in methods.items():
            times[key].append(timed(f))
    return {key: statistics.median(t) for key, t in times.items()}


def print_table(title, kinds, med, n_batches, batch):
    print(f"### {title}")
    print()
    print(f"| kind | code | bits per item | method | all users (s) | per {batch}-user batch (ms) | "
          "speedup vs float32 (same d) |")
    print("|---|---|---|---|---|---|---|")
    ratios = {}
    for kind in kinds:
        base = med[("float32", kind.dim)]
        rows = [("float32 matmul + torch.topk", f"float32 d={kind.dim}", 32 * kind.dim, base),
                ("packed fused top-k", kind.label, kind.bits_per_item, med[(kind.name, "packed")])]
        if (kind.name, "faiss") in med:
            rows.append(("faiss IndexBinaryFlat", kind.label, kind.bits_per_item, med[(kind.name, "faiss")]))
        for method, code, bits, s in rows:
            print(f"| {kind.name} | {code} | {bits} | {method} | {s:.3f} | {1e3 * s / n_batches:.2f} | "
                  f"{base / s:.1f}x |")
        ratios[kind.name] = base / med[(kind.name, "packed")]
    print()
    return ratios


def main(argv=None):
    args = parse_args(argv)
    n_users, n_items = QUICK if args.quick else FULL
    if args.users is not None:
        if not 1 <= args.users <= n_users:
            sys.exit(f"error: --users must be in 1..{n_users}")
        n_users = args.users
    torch.set_num_threads(args.threads)
    if faiss is not None:
        faiss.omp_set_num_threads(args.threads)

    kinds = build_kinds(n_users, n_items, args.seed, args.kinds)
    histories, hist_label = load_histories(args.history, n_users, n_items, args.seed)
    failures = run_checks(kinds, histories, args.k, args.seed)
    if failures:  # before anything is timed or any speedup printed
        for f in failures:
            print(f"FAILED: {f}")
        print(f"{len(failures)} check(s) failed: no timings reported", file=sys.stderr)
        sys.exit(1)

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), "?")
    print(f"# bench_full_sort: {n_users} users x {n_items} items, top-{args.k}, batches of {args.batch} "
          f"users, median of {args.repeats} interleaved rounds")
    print(f"# histories: {hist_label}; {sum(map(len, histories)):,} excluded pairs")
    print(f"# machine: {os.cpu_count()} cores, {cpu}; threads: torch={torch.get_num_threads()} "
          f"packed={torch.get_num_threads()} faiss={args.threads if faiss else 'n/a'} (same for every path); "
          f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}; load average at start {os.getloadavg()[0]:.1f}")
    print(f"# torch {torch.__version__}, numpy {np.__version__}, numba {numba.__version__}, "
          f"faiss {faiss.__version__ if faiss else 'not installed'}; popcount: {POPCOUNT_IMPL}")
    print(f"# checks ({CHECK_USERS} users per kind, with and without exclusion): all "
          f"{len(kinds)} kinds ok (packed scores == scoring formula on the codes, ~= dequantized "
          "float64; fused top-k == reference top-k; faiss top-k scores == reference)")
    if not args.no_first_call:
        for label, line in first_call_costs().items():
            print(f"# numba first call, {label}: {line} (s)")
    pc = popcount_microbench(n_items, args.repeats)
    print(f"# popcount micro-benchmark (256 x {n_items} one-word codes, 1 thread, median ms): "
          + ", ".join(f"{k} {v:.2f} ms" for k, v in pc.items()))

    bounds = [(s, min(s + args.batch, n_users)) for s in range(0, n_users, args.batch)]
    excl = batch_exclusions(histories, bounds, n_items)
    med_excl = time_table(kinds, bounds, args.k, n_items, excl, args.repeats)
    med_plain = time_table(kinds, bounds, args.k, n_items, None, args.repeats)
    print()
    ratios = print_table("History excluded (as RecBole evaluates)", kinds, med_excl, len(bounds), args.batch)
    print_table("No exclusion", kinds, med_plain, len(bounds), args.batch)
    print(f"# load average at end {os.getloadavg()[0]:.1f}")
    for name, r in ratios.items():
        print(f"speedup_{name}={r:.1f}")
    if HEADLINE in ratios:
        print(f"speedup_vs_float32={ratios[HEADLINE]:.1f}")


if __name__ == "__main__":
    main()
