"""Exact popcount scoring kernels and a fused top-k, compiled with numba (CPU).

Inputs are packed codes (see :mod:`.bitpack`): user codes row-major
``uint64 [B, L]``, item codes word-major ``uint64 [L, N]`` (``L = G * W`` words
for sign codes with ``G`` groups of ``W`` words, ``L = b * W`` for ``b`` bit
planes). Word-major items make every inner loop a contiguous scan over items,
which LLVM vectorises (AVX2: popcount by nibble lookup). Tail bits past ``d``
must be zero, as :mod:`.bitpack` writes them: the scores rely on it.

Scores
------
Sign codes (``q`` in {-1,+1}^d per group)::

    dot_g[u, i] = d - 2 * popcount(qu[u, g] xor qi[i, g])           exact
    raw[u, i]   = sum_g dot_g                                        unscaled
    raw[u, i]   = sum_g (su[u, g] * si[i, g]) * dot_g                scaled (float64, g ascending)

Bit planes (unsigned codes ``k`` in [0, 2^b); users and items may differ in b)::

    raw[u, i] = K[u, i] = sum_{p, q} popcount(a_p & b_q) << (p + q)   exact <k_u, k_i>

Float scores (both kinds) are computed in float64 and rounded once::

    score[u, i] = float32((mult * raw[u, i] + bias[i]) + c[u]) + 0.0

(``+ 0.0`` turns a -0.0 into +0.0 so that equal scores are equal bit for bit.)
This operation order is fixed and shared by every path (score matrix, fused
top-k, the torch path in :mod:`.torch_kernels`): all return bit-identical
float32 scores. Unscaled sign scores with ``mult = 1`` and no bias or user
constant are small integers and take an integer-only top-k path.

Tie rule
--------
Top-k orders by **higher score first; among equal scores, lower item id
first**; identical to a stable sort of the float32 score matrix by
``(-score, id)`` (:func:`.reference.reference_topk`). If fewer than ``k``
items remain after exclusion, the tail is padded with score ``-inf`` and id
``-1``. ``k <= 0`` raises ``ValueError``.

Exclusion lists are CSR for the batch: ``indptr [B + 1]`` and ``indices`` sorted
ascending within each row (duplicates allowed; ids outside [0, N) never match).

How the fused top-k works
-------------------------
Scores are mapped to int64 keys with the same order (integer path: ``-popcount``;
float path: the float32 bit pattern with the magnitude bits of negatives
flipped), so every comparison is an integer one and vectorises.

1. Items are processed in chunks of ``CHUNK`` (shared in L1 by a block of
   ``USER_BLOCK`` users). Each user computes the maximum key of every
   ``BLOCK`` items, in registers: no ``[B, N]`` matrix, no per-item heap work.
   Bit-plane codes use an integer proxy instead of float scores here (see
   :func:`plane_bound_params`) and keep a lower and an upper bound per block.
2. Per user: blocks holding excluded items get their maximum recomputed
   without them; ``M`` = the k-th largest block maximum (lower bound). At least
   ``k`` eligible items score >= M, so every top-k item does too.
3. Only blocks whose maximum (upper bound) reaches M, about k of them, are
   scored exactly and scanned in increasing id order into a k-heap whose root
   is the worst kept entry; a later (higher id) item replaces it only with a
   strictly greater key, which is exactly the tie rule.

1-bit uniform codes of one word (HQ-GNN's default) take a fourth kind,
``PLANE_SORTED``: the kernel scans a copy of the items stored by decreasing
score bias (:mod:`.sorted_items`), so step 1 needs only each block's largest
popcount (as cheap as the Hamming path) and turns it into exact key bounds;
excluded blocks get new bounds from integer work only; the heap breaks ties by
the original item id, since the stored order is not the id order.

Shapes are runtime arguments, so three kernels cover every code width (no
per-shape compilation). Kernels are serial ``nogil`` functions over a range of
users (or user blocks); :mod:`.threads` spreads the range over threads.
Helpers that never allocate are compiled with ``_nrt=False``: numba's
reference counting of array arguments (atomic ops on every call) otherwise
cost about a fifth of the run time.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .blocks import (
    BLOCK,
    KEY_MIN,
    NO_BOUNDS,
    block_keys,
    block_max,
    block_maxima,
    key_f32,
    mark_excluded,
    plane_bound_params,
    sorted_block_bounds,
    sorted_block_k_max,
    sorted_bounds,
)
from .exclusion import exclusion_csr
from .limits import check_bits, check_k
from .heap import kth_largest, offer_block, offer_block_ids, sift_down
from .passes import CHUNK, PLANE, PLANE_SORTED, SIGN, SIGN_INT, plane_dot_chunk, score, xor_popcount_chunk, z_chunk
from .threads import run_ranges

__all__ = [
    "BLOCK",
    "CHUNK",
    "USER_BLOCK",
    "sign_dot",
    "sign_scores",
    "sign_topk",
    "plane_dot",
    "plane_scores",
    "plane_topk",
    "plane_bound_params",
]

USER_BLOCK = 8  # users sharing one item chunk (the unit of work of one task)


@njit(cache=True, nogil=True)
def _int_scores_kernel(start, stop, kind, codes_u, codes_i_t, n_groups, d, pu, pi, out):
    """out[u, i] = exact integer raw score (SIGN: sum_g dot_g, PLANE: K), start <= u < stop."""
    n_items = codes_i_t.shape[1]
    gd = n_groups * d
    buf = np.empty(CHUNK, np.int64)
    for u in range(start, stop):
        for i0 in range(0, n_items, CHUNK):
            o = np.uint64(i0)
            n = np.uint64(min(CHUNK, n_items - i0))
            if kind == PLANE:
                plane_dot_chunk(codes_u, u, codes_i_t, pu, pi, o, n, buf)
                for j in range(n):
                    out[u, o + j] = buf[j]
            else:
                xor_popcount_chunk(codes_u, u, codes_i_t, 0, codes_i_t.shape[0], o, n, buf)
                for j in range(n):
                    out[u, o + j] = gd - 2 * buf[j]


@njit(cache=True, nogil=True)
def _float_scores_kernel(start, stop, kind, codes_u, codes_i_t, n_groups, d, su, si_t, pu, pi,
                         small, mult, bias, ucons, out):
    """out[u, i] = float32((mult * raw + bias[i]) + ucons[u]) + 0.0, start <= u < stop."""
    n_items = codes_i_t.shape[1]
    buf = np.empty(CHUNK, np.int64)
    acc = np.empty(CHUNK, np.float64)
    for u in range(start, stop):
        for i0 in range(0, n_items, CHUNK):
            o = np.uint64(i0)
            n = np.uint64(min(CHUNK, n_items - i0))
            z_chunk(kind, codes_u, u, codes_i_t, n_groups, d, su, si_t, pu, pi, small, mult, bias,
                     o, n, buf, acc)
            c = ucons[u]
            for j in range(n):
                out[u, o + j] = score(acc[j], c)


@njit(cache=True, _nrt=False)
def _stored_exclusions(indices, e0, e1, inverse, n_items, out):
    """out[:e1 - e0] = one user's excluded ids as stored positions (PLANE_SORTED; ids
    outside [0, n_items) -> -1), sorted by insertion (a history is short); returns the count."""
    m = 0
    for p in range(e0, e1):
        i = indices[p]
        v = inverse[i] if 0 <= i < n_items else np.int64(-1)
        j = m
        while j > 0 and out[j - 1] > v:
            out[j] = out[j - 1]
            j -= 1
        out[j] = v
        m += 1
    return m


@njit(cache=True, nogil=True)
def _topk_kernel(start, stop, kind, codes_u, codes_i_t, n_groups, d, su, si_t, pu, pi, small,
                 mult, bias, ucons, bnd, k, indptr, indices, perm, inverse, out_s, out_i):
    """Fused top-k of the user blocks start <= ub < stop (see "How the fused top-k works").

    PLANE_SORTED: items are stored by bias (``perm[p]`` = id of stored item p, ``inverse``
    its inverse; see :mod:`.sorted_items`); exact scores use the PLANE passes.
    """
    n_users = codes_u.shape[0]
    n_items = codes_i_t.shape[1]
    n_blk = (n_items + BLOCK - 1) // BLOCK
    stored = kind == PLANE_SORTED
    exact_kind = PLANE if stored else kind  # how candidate blocks are scored
    for ub in range(start, stop):
        u0 = ub * USER_BLOCK
        nb = min(USER_BLOCK, n_users - u0)
        buf = np.empty(CHUNK, np.int64)
        acc = np.empty(CHUNK, np.float64)
        keys = np.empty(BLOCK, np.int64)
        bm = np.empty((nb, n_blk), np.int64)  # block maxima (lower bounds for bounded planes)
        bounded = stored or (kind == PLANE and bnd[0])
        bm_hi = np.empty((nb, n_blk), np.int64) if bounded else bm
        hv = np.empty((nb, k), np.int64)
        hi = np.empty((nb, k), np.int64)
        longest = 0
        if stored:
            for r in range(nb):
                longest = max(longest, indptr[u0 + r + 1] - indptr[u0 + r])
        ex_stored = np.empty(longest, np.int64)

        # 1. block maxima of every user in the block, chunk by chunk
        for i0 in range(0, n_items, CHUNK):
            n = min(CHUNK, n_items - i0)
            for r in range(nb):
                block_maxima(kind, codes_u, u0 + r, codes_i_t, n_groups, d, su, si_t, pu, pi,
                              small, mult, bias, ucons[u0 + r], bnd, i0, n, buf, acc, bm, bm_hi, r)

        if stored:
            for r in range(nb):
                sorted_block_bounds(bm, bm_hi, r, 0, n_blk, mult, bnd[6], bnd[7], ucons[u0 + r])

        for r in range(nb):
            u = u0 + r
            c = ucons[u]
            ex = indices
            e0 = indptr[u]
            e1 = indptr[u + 1]
            if stored:  # exclusions as sorted stored positions
                e1 = _stored_exclusions(indices, e0, e1, inverse, n_items, ex_stored)
                e0 = 0
                ex = ex_stored
            # 2a. drop excluded items from their blocks' maxima
            p = e0
            while p < e1:
                i = ex[p]
                if i < 0 or i >= n_items:
                    p += 1
                    continue
                o = (i // BLOCK) * BLOCK
                n = min(BLOCK, n_items - o)
                if stored:  # new bounds from the largest K left (integer work only)
                    k_max, p = sorted_block_k_max(codes_u, u, codes_i_t, pu, pi, o, n, buf, p, e1, ex)
                    if k_max < 0:
                        bm[r, i // BLOCK] = KEY_MIN
                        bm_hi[r, i // BLOCK] = KEY_MIN
                    else:
                        b = i // BLOCK
                        bm[r, b] = k_max
                        sorted_block_bounds(bm, bm_hi, r, b, b + 1, mult, bnd[6], bnd[7], c)
                    continue
                block_keys(exact_kind, codes_u, u, codes_i_t, n_groups, d, su, si_t, pu, pi, small,
                            mult, bias, c, o, n, buf, acc, keys)
                p = mark_excluded(keys, o, n, p, e1, ex)
                bm[r, i // BLOCK] = block_max(keys, n)
                bm_hi[r, i // BLOCK] = bm[r, i // BLOCK]
            # 2b. M = k-th largest block maximum (or lower bound): at least k eligible
            #     items have key >= M
            m = kth_largest(bm, r, n_blk, k, hv, hi)
            lower = max(m, KEY_MIN + 1) - 1  # qualify: key > lower; never an excluded one
            # 3. scan candidate blocks in id order
            size = 0
            p = e0
            for b in range(n_blk):
                if size < k:
                    if bm_hi[r, b] <= lower:
                        continue
                elif bm_hi[r, b] < hv[r, 0] or (not stored and bm_hi[r, b] == hv[r, 0]):
                    continue  # stored order: an equal key with a lower id may still enter
                o = b * BLOCK
                n = min(BLOCK, n_items - o)
                block_keys(exact_kind, codes_u, u, codes_i_t, n_groups, d, su, si_t, pu, pi, small,
                            mult, bias, c, o, n, buf, acc, keys)
                p = mark_excluded(keys, o, n, p, e1, ex)
                if stored:
                    size = offer_block_ids(keys, perm, o, n, lower, hv, hi, r, size, k)
                else:
                    size = offer_block(keys, o, n, lower, hv, hi, r, size, k)
            # 4. drain best first and turn keys back into scores
            for pos in range(size - 1, -1, -1):
                key = hv[r, 0]
                out_i[u, pos] = hi[r, 0]
                if kind == SIGN_INT:  # key = -popcount, score = G*d - 2 * popcount
                    out_s[u, pos] = np.float32(n_groups * d + 2 * key)
                else:
                    out_s[u, pos] = key_f32(key)
                hv[r, 0] = hv[r, pos]
                hi[r, 0] = hi[r, pos]
                sift_down(hv, hi, r, pos, 0)
            for pos in range(size, k):
                out_s[u, pos] = -np.inf
                out_i[u, pos] = -1


# ---------------------------------------------------------------------------
# Python entry points: validate, normalise dtypes, allocate outputs
# ---------------------------------------------------------------------------


def _u64(a, name):
    a = np.asarray(a)
    if a.dtype != np.uint64:
        raise ValueError(f"{name} must be uint64, got {a.dtype}")
    if a.ndim < 2:
        raise ValueError(f"{name} must be at least 2-D, got shape {a.shape}")
    return np.ascontiguousarray(a.reshape(a.shape[0], -1))


def _f64(a, shape, name):
    a = np.ascontiguousarray(np.asarray(a, dtype=np.float64).reshape(shape))
    if not np.isfinite(a).all():
        raise ValueError(f"{name} must be finite")
    return a


def _affine_args(n_users, n_items, mult, item_bias, user_const):
    mult = float(mult)
    if not np.isfinite(mult):
        raise ValueError("mult must be finite")
    bias = np.zeros(n_items) if item_bias is None else _f64(item_bias, (n_items,), "item_bias")
    ucons = np.zeros(n_users) if user_const is None else _f64(user_const, (n_users,), "user_const")
    return mult, bias, ucons


def _sign_args(user_words, item_words_t, dim, n_groups):
    qu = _u64(user_words, "user_words")
    qi_t = _u64(item_words_t, "item_words_t")
    n_groups, dim = int(n_groups), int(dim)
    if n_groups < 1 or qu.shape[1] != qi_t.shape[0] or qu.shape[1] % n_groups:
        raise ValueError(
            f"word counts do not match: users {qu.shape[1]}, items {qi_t.shape[0]}, groups {n_groups}"
        )
    n_words = qu.shape[1] // n_groups
    if not 64 * (n_words - 1) < dim <= 64 * n_words:
        raise ValueError(f"dim={dim} does not match {n_words} words per group")
    return qu, qi_t, n_groups, dim


def _scale_args(n_users, n_items, n_groups, user_scales, item_scales_t):
    if (user_scales is None) != (item_scales_t is None):
        raise ValueError("give both user and item scales, or neither")
    if user_scales is None:
        return np.zeros((n_users, 0)), np.zeros((0, n_items))
    su = _f64(user_scales, (n_users, n_groups), "user_scales")
    si_t = _f64(item_scales_t, (n_groups, n_items), "item_scales_t")
    return su, si_t


def _plane_args(user_planes, item_planes_t, user_bits, item_bits):
    au = _u64(user_planes, "user_planes")
    bi_t = _u64(item_planes_t, "item_planes_t")
    pu, pi = int(user_bits), int(item_bits)
    pu, pi = check_bits(pu, "user_bits"), check_bits(pi, "item_bits")
    if au.shape[1] % pu or bi_t.shape[0] % pi:
        raise ValueError("plane counts do not match the bit widths")
    if au.shape[1] // pu != bi_t.shape[0] // pi:
        raise ValueError("users and items have different words per plane")
    return au, bi_t, pu, pi


def plane_dot_fits_int32(n_words, user_bits, item_bits):
    """Whether every plane dot product K fits in int32 (enables a faster conversion)."""
    return 64 * n_words * ((1 << user_bits) - 1) * ((1 << item_bits) - 1) < 2**31



_NO_SCALES = np.zeros((0, 0))
_NO_IDS = np.zeros(0, np.int64)  # perm / inverse of kinds stored in id order



def run_scores(kind, codes_u, codes_i_t, n_groups, d, su, si_t, pu, pi, small, mult, bias, ucons):
    """Float32 score matrix [B, N] from validated arrays (no checks)."""
    out = np.empty((codes_u.shape[0], codes_i_t.shape[1]), np.float32)
    run_ranges(_float_scores_kernel, codes_u.shape[0], kind, codes_u, codes_i_t, n_groups, d,
               su, si_t, pu, pi, small, mult, bias, ucons, out)
    return out


def run_topk(kind, codes_u, codes_i_t, n_groups, d, su, si_t, pu, pi, small, mult, bias, ucons,
             k, indptr, indices, bnd=None, sorted_items=None):
    """Fused top-k (float32 [B, k], int64 [B, k]) from validated arrays (no checks).

    ``bnd``: :func:`plane_bound_params` for PLANE (computed here when None).
    ``sorted_items``: a :class:`.sorted_items.SortedItems` of PLANE codes with ``mult > 0``
    (it replaces ``codes_i_t`` and ``bias``; ``indices`` stay original item ids).
    """
    if sorted_items is not None:
        kind, codes_i_t, bias = PLANE_SORTED, sorted_items.item_words_t, sorted_items.bias
        bnd = sorted_bounds(sorted_items.bias_lo, sorted_items.bias_hi)
        perm, inverse = sorted_items.perm, sorted_items.inverse
    else:
        perm = inverse = _NO_IDS
    if bnd is None:
        bnd = plane_bound_params(mult, bias, codes_i_t.shape[0] // pi, pu, pi) if kind == PLANE else NO_BOUNDS
    n_users = codes_u.shape[0]
    out_s = np.empty((n_users, k), np.float32)
    out_i = np.empty((n_users, k), np.int64)
    n_user_blocks = (n_users + USER_BLOCK - 1) // USER_BLOCK
    run_ranges(_topk_kernel, n_user_blocks, kind, codes_u, codes_i_t, n_groups, d, su, si_t,
               pu, pi, small, mult, bias, ucons, bnd, k, indptr, indices, perm, inverse, out_s, out_i)
    return out_s, out_i


def sign_dot(user_words, item_words_t, dim, n_groups=1):
    """Exact integer sign inner products ``sum_g <q_u,g , q_i,g>``.

    Parameters
    ----------
    user_words : uint64 [B, G*W] (or [B, G, W])
    item_words_t : uint64 [G*W, N], word-major (:func:`.bitpack.word_major`)
    dim : int, coordinates per group ``d``
    n_groups : int, ``G``

    Returns
    -------
    np.ndarray int32 [B, N]
    """
    qu, qi_t, g, d = _sign_args(user_words, item_words_t, dim, n_groups)
    out = np.empty((qu.shape[0], qi_t.shape[1]), np.int64)
    run_ranges(_int_scores_kernel, qu.shape[0], SIGN, qu, qi_t, g, d, 1, 1, out)
    return out.astype(np.int32)


def sign_scores(user_words, item_words_t, dim, n_groups=1, user_scales=None,
                item_scales_t=None, mult=1.0, item_bias=None, user_const=None):
    """Sign scores ``float32((mult * raw + bias_i) + c_u)``.

    Parameters
    ----------
    user_words, item_words_t, dim, n_groups : as :func:`sign_dot`
    user_scales : float [B, G] or None
    item_scales_t : float [G, N] or None
        Both or neither; with scales ``raw = sum_g su[u,g] * si[i,g] * dot_g``.
    mult : float
    item_bias : float [N] or None
    user_const : float [B] or None

    Returns
    -------
    np.ndarray float32 [B, N]
    """
    qu, qi_t, g, d = _sign_args(user_words, item_words_t, dim, n_groups)
    n_users, n_items = qu.shape[0], qi_t.shape[1]
    su, si_t = _scale_args(n_users, n_items, g, user_scales, item_scales_t)
    mult, bias, ucons = _affine_args(n_users, n_items, mult, item_bias, user_const)
    return run_scores(SIGN, qu, qi_t, g, d, su, si_t, 1, 1, True, mult, bias, ucons)


def sign_topk(user_words, item_words_t, dim, k, n_groups=1, user_scales=None,
              item_scales_t=None, mult=1.0, item_bias=None, user_const=None,
              exclude_indptr=None, exclude_indices=None):
    """Fused top-k of sign scores (tie rule and padding: module docstring).

    Parameters are those of :func:`sign_scores` plus ``k`` and the exclusion
    CSR (``exclude_indptr [B + 1]``, ``exclude_indices``). With no scales,
    bias or user constant and ``mult == 1`` the integer-key path runs.

    Returns
    -------
    scores : np.ndarray float32 [B, k]
    ids : np.ndarray int64 [B, k]
    """
    qu, qi_t, g, d = _sign_args(user_words, item_words_t, dim, n_groups)
    n_users, n_items = qu.shape[0], qi_t.shape[1]
    k = check_k(k)
    indptr, indices = exclusion_csr(n_users, exclude_indptr, exclude_indices)
    su, si_t = _scale_args(n_users, n_items, g, user_scales, item_scales_t)
    mult, bias, ucons = _affine_args(n_users, n_items, mult, item_bias, user_const)
    plain = (user_scales is None and item_bias is None and user_const is None and mult == 1.0)
    return run_topk(SIGN_INT if plain else SIGN, qu, qi_t, g, d, su, si_t, 1, 1, True,
                    mult, bias, ucons, k, indptr, indices)


def plane_dot(user_planes, item_planes_t, user_bits, item_bits):
    """Exact integer inner products of unsigned codes stored as bit planes.

    Parameters
    ----------
    user_planes : uint64 [B, bu*W] (or [B, bu, W])
    item_planes_t : uint64 [bi*W, N], word-major
    user_bits, item_bits : int, ``bu`` and ``bi`` (1..8)

    Returns
    -------
    np.ndarray int64 [B, N]: ``K[u, i] = <k_u, k_i>``.
    """
    au, bi_t, pu, pi = _plane_args(user_planes, item_planes_t, user_bits, item_bits)
    out = np.empty((au.shape[0], bi_t.shape[1]), np.int64)
    run_ranges(_int_scores_kernel, au.shape[0], PLANE, au, bi_t, 1, 1, pu, pi, out)
    return out


def plane_scores(user_planes, item_planes_t, user_bits, item_bits, mult=1.0,
                 item_bias=None, user_const=None):
    """Plane scores ``float32((mult * K + bias_i) + c_u)``.

    Parameters are those of :func:`plane_dot` plus ``mult`` (float),
    ``item_bias`` (float [N] or None), ``user_const`` (float [B] or None).

    Returns
    -------
    np.ndarray float32 [B, N]
    """
    au, bi_t, pu, pi = _plane_args(user_planes, item_planes_t, user_bits, item_bits)
    n_users, n_items = au.shape[0], bi_t.shape[1]
    mult, bias, ucons = _affine_args(n_users, n_items, mult, item_bias, user_const)
    small = plane_dot_fits_int32(au.shape[1] // pu, pu, pi)
    return run_scores(PLANE, au, bi_t, 1, 1, _NO_SCALES, _NO_SCALES, pu, pi, small, mult, bias, ucons)


def plane_topk(user_planes, item_planes_t, user_bits, item_bits, k, mult=1.0,
               item_bias=None, user_const=None, exclude_indptr=None, exclude_indices=None):
    """Fused top-k of plane scores (tie rule and padding: module docstring).

    Returns
    -------
    scores : np.ndarray float32 [B, k]
    ids : np.ndarray int64 [B, k]
    """
    au, bi_t, pu, pi = _plane_args(user_planes, item_planes_t, user_bits, item_bits)
    n_users, n_items = au.shape[0], bi_t.shape[1]
    k = check_k(k)
    indptr, indices = exclusion_csr(n_users, exclude_indptr, exclude_indices)
    mult, bias, ucons = _affine_args(n_users, n_items, mult, item_bias, user_const)
    small = plane_dot_fits_int32(au.shape[1] // pu, pu, pi)
    return run_topk(PLANE, au, bi_t, 1, 1, _NO_SCALES, _NO_SCALES, pu, pi, small,
                    mult, bias, ucons, k, indptr, indices)
