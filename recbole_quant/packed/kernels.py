"""Exact popcount scoring kernels and a fused top-k, compiled with numba (CPU).

Inputs are packed codes (see :mod:`.bitpack`): user codes row-major
``uint64 [B, L]``, item codes word-major ``uint64 [L, N]`` (``L = G * W`` words
for sign codes with ``G`` groups of ``W`` words, ``L = b * W`` for ``b`` bit
planes). Word-major items make every inner loop a contiguous scan over items,
which LLVM vectorises (AVX2 popcount by nibble lookup).

Scores
------
Sign codes (``q`` in {-1,+1}^d per group)::

    dot_g[u, i] = d - 2 * popcount(qu[u, g] xor qi[i, g])           exact
    raw[u, i]   = sum_g dot_g                                        unscaled
    raw[u, i]   = sum_g (su[u, g] * si[i, g]) * dot_g                scaled (float64, g ascending)

Bit planes (unsigned codes ``k`` in [0, 2^b), users and items may differ in b)::

    raw[u, i] = K[u, i] = sum_{p, q} popcount(a_p & b_q) << (p + q)   exact <k_u, k_i>

Float scores (both kinds), computed in float64 and rounded once::

    score[u, i] = float32((mult * raw[u, i] + bias[i]) + c[u])

This operation order is fixed and shared by every path (score matrix, fused
top-k, the torch path in :mod:`.torch_kernels`), so all of them produce
bit-identical float32 scores.

Tie rule
--------
Top-k orders by **higher score first; among equal scores, lower item id
first**. The fused kernels scan items in increasing id and keep a k-heap whose
root is the worst kept entry (lowest score, then highest id); since later
items have higher ids, a new item enters only if its score is strictly greater
than the root's. The result equals a stable sort of the float32 score matrix
by ``(-score, id)`` (:func:`.reference.reference_topk`). If fewer than ``k``
items remain after exclusion, the tail is padded with score ``-inf`` and id
``-1``. ``k <= 0`` raises ``ValueError``.

Exclusion lists are CSR for the batch: ``indptr [B + 1]`` and ``indices`` sorted
ascending within each row (duplicates allowed; ids outside [0, N) never match).

How the top-k stays fast
------------------------
Items are processed in chunks of ``CHUNK``. For every chunk each user of a
block of ``USER_BLOCK`` users (the chunk stays in L1 across the block) computes
its chunk values with vectorised passes (one pass per code word / plane pair),
then one vectorised count of "beats the current k-th best" decides whether the
chunk needs the scalar heap scan at all. Once the heap is full almost every
chunk is rejected by that count. For one-word sign codes (d <= 64) compute and
count are fused into a single loop and the chunk is recomputed only on a hit.
Shapes are runtime arguments (no per-shape compilation); user blocks are
spread over threads with ``prange``.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .popcount import popcount64

__all__ = [
    "CHUNK",
    "USER_BLOCK",
    "SIGN",
    "PLANE",
    "sign_dot",
    "sign_scores",
    "sign_topk",
    "plane_dot",
    "plane_scores",
    "plane_topk",
]

CHUNK = 256  # items per chunk: the chunk's item words stay in L1
USER_BLOCK = 8  # users sharing one item chunk inside one prange task
SIGN = 0  # kind codes passed to the kernels
PLANE = 1


# ---------------------------------------------------------------------------
# per-chunk passes over items o .. o + n - 1, written to buf[j] = item o + j
#
# Indices are uint64 on purpose: numba wraps negative signed indices, and that
# check blocks vectorisation of these loops (measured 2.5-3x slower).
# ---------------------------------------------------------------------------


@njit(cache=True)
def _xor_popcount_chunk(qu, u, qi_t, w0, w1, o, n, buf):
    """buf[j] = sum_{w0 <= w < w1} popcount(qu[u, w] ^ qi_t[w, o + j])."""
    a = qu[u, w0]
    for j in range(n):
        buf[j] = np.int64(popcount64(a ^ qi_t[w0, o + j]))
    for w in range(w0 + 1, w1):
        a = qu[u, w]
        for j in range(n):
            buf[j] += np.int64(popcount64(a ^ qi_t[w, o + j]))


@njit(cache=True)
def _plane_dot_chunk(au, u, bi_t, pu, pi, o, n, buf):
    """buf[j] = K = sum_{p, q, w} popcount(au[u, p, w] & bi_t[q, w, o + j]) << (p + q)."""
    n_words = au.shape[1] // pu
    for j in range(n):
        buf[j] = 0
    for q in range(pi):
        for w in range(n_words):
            row = q * n_words + w
            for p in range(pu):
                a = au[u, p * n_words + w]
                sh = np.int64(p + q)
                for j in range(n):
                    buf[j] += np.int64(popcount64(a & bi_t[row, o + j])) << sh


@njit(cache=True)
def _raw_chunk(kind, codes_u, u, codes_i_t, n_groups, d, su, si_t, pu, pi, small, o, n, buf, acc):
    """acc[j] = raw score (float64) of item o + j, see the module docstring."""
    if kind == SIGN:
        n_words = codes_i_t.shape[0] // n_groups
        if su.shape[1] > 0:  # scaled: per-group dots weighted by su * si
            for j in range(n):
                acc[j] = 0.0
            d32 = np.int32(d)
            for g in range(n_groups):
                _xor_popcount_chunk(codes_u, u, codes_i_t, g * n_words, (g + 1) * n_words, o, n, buf)
                s_u = su[u, g]
                for j in range(n):
                    dot = d32 - np.int32(2) * np.int32(buf[j])
                    acc[j] += (s_u * si_t[g, o + j]) * np.float64(dot)
        else:
            _xor_popcount_chunk(codes_u, u, codes_i_t, 0, codes_i_t.shape[0], o, n, buf)
            gd = np.int32(n_groups * d)
            for j in range(n):
                acc[j] = np.float64(gd - np.int32(2) * np.int32(buf[j]))
    else:
        _plane_dot_chunk(codes_u, u, codes_i_t, pu, pi, o, n, buf)
        if small:  # K < 2^31: the int32 -> float64 conversion vectorises
            for j in range(n):
                acc[j] = np.float64(np.int32(buf[j]))
        else:
            for j in range(n):
                acc[j] = np.float64(buf[j])


@njit(cache=True)
def _affine_chunk(acc, mult, bias, c, o, n, vals):
    """vals[j] = float32((mult * acc[j] + bias[o + j]) + c)."""
    for j in range(n):
        vals[j] = np.float32((mult * acc[j] + bias[o + j]) + c)


@njit(cache=True)
def _count_above(vals, n, thr):
    """Number of vals[:n] strictly above thr (a vectorised reduction)."""
    hits = 0
    for j in range(n):
        if vals[j] > thr:
            hits += 1
    return hits


# ---------------------------------------------------------------------------
# k-heap per user row r: root = worst kept entry (lowest value, then highest id)
# ---------------------------------------------------------------------------


@njit(cache=True, inline="always")
def _worse(va, ia, vb, ib):
    return va < vb or (va == vb and ia > ib)


@njit(cache=True)
def _sift_up(hv, hi, r, pos):
    v = hv[r, pos]
    i = hi[r, pos]
    while pos > 0:
        parent = (pos - 1) >> 1
        if _worse(v, i, hv[r, parent], hi[r, parent]):
            hv[r, pos] = hv[r, parent]
            hi[r, pos] = hi[r, parent]
            pos = parent
        else:
            break
    hv[r, pos] = v
    hi[r, pos] = i


@njit(cache=True)
def _sift_down(hv, hi, r, size, pos):
    v = hv[r, pos]
    i = hi[r, pos]
    while True:
        c = 2 * pos + 1
        if c >= size:
            break
        if c + 1 < size and _worse(hv[r, c + 1], hi[r, c + 1], hv[r, c], hi[r, c]):
            c += 1
        if _worse(hv[r, c], hi[r, c], v, i):
            hv[r, pos] = hv[r, c]
            hi[r, pos] = hi[r, c]
            pos = c
        else:
            break
    hv[r, pos] = v
    hi[r, pos] = i


@njit(cache=True)
def _offer_chunk(vals, i0, n, hv, hi, r, size, k, eptr, eend, excl):
    """Offer items i0 .. i0 + n - 1 (values vals[:n]) to heap row r.

    Items arrive in increasing id, so a full heap takes an item only if it is
    strictly better than the root. ``eptr`` walks the sorted exclusion row.
    Returns the new (size, eptr).
    """
    for j in range(n):
        v = vals[j]
        if size == k and not v > hv[r, 0]:
            continue
        i = i0 + j
        while eptr < eend and excl[eptr] < i:
            eptr += 1
        if eptr < eend and excl[eptr] == i:
            continue
        if size < k:
            hv[r, size] = v
            hi[r, size] = i
            _sift_up(hv, hi, r, size)
            size += 1
        else:
            hv[r, 0] = v
            hi[r, 0] = i
            _sift_down(hv, hi, r, size, 0)
    return size, eptr


@njit(cache=True)
def _drain(hv, hi, r, size, out_v, out_i, u):
    """Pop heap row r into out_v[u, :size] / out_i[u, :size], best first."""
    for pos in range(size - 1, -1, -1):
        out_v[u, pos] = hv[r, 0]
        out_i[u, pos] = hi[r, 0]
        hv[r, 0] = hv[r, pos]
        hi[r, 0] = hi[r, pos]
        _sift_down(hv, hi, r, pos, 0)


# ---------------------------------------------------------------------------
# kernels
# ---------------------------------------------------------------------------


@njit(parallel=True, cache=True)
def _int_scores_kernel(kind, codes_u, codes_i_t, n_groups, d, pu, pi, out):
    """out[u, i] = exact integer raw score (sign: sum_g dot_g, plane: K)."""
    n_users = codes_u.shape[0]
    n_items = codes_i_t.shape[1]
    gd = n_groups * d
    for u in prange(n_users):
        buf = np.empty(CHUNK, np.int64)
        for i0 in range(0, n_items, CHUNK):
            o = np.uint64(i0)
            n = np.uint64(min(CHUNK, n_items - i0))
            if kind == SIGN:
                _xor_popcount_chunk(codes_u, u, codes_i_t, 0, codes_i_t.shape[0], o, n, buf)
                for j in range(n):
                    out[u, o + j] = gd - 2 * buf[j]
            else:
                _plane_dot_chunk(codes_u, u, codes_i_t, pu, pi, o, n, buf)
                for j in range(n):
                    out[u, o + j] = buf[j]


@njit(parallel=True, cache=True)
def _float_scores_kernel(kind, codes_u, codes_i_t, n_groups, d, su, si_t, pu, pi, small,
                         mult, bias, ucons, out):
    """out[u, i] = float32((mult * raw + bias[i]) + ucons[u])."""
    n_users = codes_u.shape[0]
    n_items = codes_i_t.shape[1]
    for u in prange(n_users):
        buf = np.empty(CHUNK, np.int64)
        acc = np.empty(CHUNK, np.float64)
        vals = np.empty(CHUNK, np.float32)
        for i0 in range(0, n_items, CHUNK):
            o = np.uint64(i0)
            n = np.uint64(min(CHUNK, n_items - i0))
            _raw_chunk(kind, codes_u, u, codes_i_t, n_groups, d, su, si_t, pu, pi, small, o, n, buf, acc)
            _affine_chunk(acc, mult, bias, ucons[u], o, n, vals)
            for j in range(n):
                out[u, o + j] = vals[j]


@njit(parallel=True, cache=True)
def _sign_int_topk_kernel(qu, qi_t, gd, k, indptr, indices, out_s, out_i):
    """Top-k of unscaled sign scores; the heap holds -popcount (higher = better)."""
    n_users = qu.shape[0]
    n_items = qi_t.shape[1]
    n_words = qi_t.shape[0]
    n_blocks = (n_users + USER_BLOCK - 1) // USER_BLOCK
    for blk in prange(n_blocks):
        u0 = blk * USER_BLOCK
        nb = min(USER_BLOCK, n_users - u0)
        hv = np.empty((nb, k), np.int64)
        hi = np.empty((nb, k), np.int64)
        size = np.zeros(nb, np.int64)
        eptr = np.empty(nb, np.int64)
        for r in range(nb):
            eptr[r] = indptr[u0 + r]
        buf = np.empty(CHUNK, np.int64)
        for i0 in range(0, n_items, CHUNK):
            o = np.uint64(i0)
            n = np.uint64(min(CHUNK, n_items - i0))
            for r in range(nb):
                u = u0 + r
                if n_words == 1:
                    a = qu[u, 0]
                    if size[r] == k:  # fused popcount + count, no buffer
                        thr = np.uint64(-hv[r, 0])
                        hits = 0
                        for j in range(n):
                            if popcount64(a ^ qi_t[0, o + j]) < thr:
                                hits += 1
                        if hits == 0:
                            continue
                    for j in range(n):
                        buf[j] = -np.int64(popcount64(a ^ qi_t[0, o + j]))
                else:
                    _xor_popcount_chunk(qu, u, qi_t, 0, n_words, o, n, buf)
                    for j in range(n):
                        buf[j] = -buf[j]
                    if size[r] == k and _count_above(buf, n, hv[r, 0]) == 0:
                        continue
                size[r], eptr[r] = _offer_chunk(
                    buf, i0, np.int64(n), hv, hi, r, size[r], k, eptr[r], indptr[u + 1], indices
                )
        for r in range(nb):
            u = u0 + r
            _drain(hv, hi, r, size[r], out_s, out_i, u)
            for j in range(size[r]):
                # the heap stored -popcount; the score is gd - 2 * popcount
                out_s[u, j] = np.float32(gd + 2 * np.int64(out_s[u, j]))
            for j in range(size[r], k):
                out_s[u, j] = -np.inf
                out_i[u, j] = -1


@njit(parallel=True, cache=True)
def _float_topk_kernel(kind, codes_u, codes_i_t, n_groups, d, su, si_t, pu, pi, small,
                       mult, bias, ucons, k, indptr, indices, out_s, out_i):
    """Top-k of float32((mult * raw + bias[i]) + ucons[u]) for either kind."""
    n_users = codes_u.shape[0]
    n_items = codes_i_t.shape[1]
    n_blocks = (n_users + USER_BLOCK - 1) // USER_BLOCK
    for blk in prange(n_blocks):
        u0 = blk * USER_BLOCK
        nb = min(USER_BLOCK, n_users - u0)
        hv = np.empty((nb, k), np.float32)
        hi = np.empty((nb, k), np.int64)
        size = np.zeros(nb, np.int64)
        eptr = np.empty(nb, np.int64)
        for r in range(nb):
            eptr[r] = indptr[u0 + r]
        buf = np.empty(CHUNK, np.int64)
        acc = np.empty(CHUNK, np.float64)
        vals = np.empty(CHUNK, np.float32)
        for i0 in range(0, n_items, CHUNK):
            o = np.uint64(i0)
            n = np.uint64(min(CHUNK, n_items - i0))
            for r in range(nb):
                u = u0 + r
                _raw_chunk(kind, codes_u, u, codes_i_t, n_groups, d, su, si_t, pu, pi, small,
                           o, n, buf, acc)
                _affine_chunk(acc, mult, bias, ucons[u], o, n, vals)
                if size[r] == k and _count_above(vals, n, hv[r, 0]) == 0:
                    continue
                size[r], eptr[r] = _offer_chunk(
                    vals, i0, np.int64(n), hv, hi, r, size[r], k, eptr[r], indptr[u + 1], indices
                )
        for r in range(nb):
            u = u0 + r
            _drain(hv, hi, r, size[r], out_s, out_i, u)
            for j in range(size[r], k):
                out_s[u, j] = -np.inf
                out_i[u, j] = -1


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
    if not (1 <= pu <= 8 and 1 <= pi <= 8) or au.shape[1] % pu or bi_t.shape[0] % pi:
        raise ValueError("plane counts do not match the bit widths")
    if au.shape[1] // pu != bi_t.shape[0] // pi:
        raise ValueError("users and items have different words per plane")
    n_words = au.shape[1] // pu
    max_k = 64 * n_words * ((1 << pu) - 1) * ((1 << pi) - 1)
    return au, bi_t, pu, pi, max_k < 2**31


def _exclusion_args(n_users, indptr, indices):
    if indptr is None:
        if indices is not None:
            raise ValueError("exclude_indices given without exclude_indptr")
        return np.zeros(n_users + 1, np.int64), np.zeros(0, np.int64)
    indptr = np.ascontiguousarray(indptr, dtype=np.int64)
    indices = np.ascontiguousarray(indices, dtype=np.int64)
    if indptr.shape != (n_users + 1,) or indptr[0] != 0 or indptr[-1] != indices.shape[0]:
        raise ValueError("exclusion indptr must have B + 1 entries running from 0 to len(indices)")
    steps = np.diff(indptr)
    if (steps < 0).any():
        raise ValueError("exclusion indptr must be non-decreasing")
    # sorted within rows: every decrease must sit on a row boundary
    drops = np.flatnonzero(np.diff(indices) < 0) + 1
    if drops.size and not np.isin(drops, indptr).all():
        raise ValueError("exclusion indices must be sorted within each row")
    return indptr, indices


def _topk_out(n_users, k):
    if int(k) != k or k <= 0:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    k = int(k)
    return k, np.empty((n_users, k), np.float32), np.empty((n_users, k), np.int64)


_NO_SCALES = np.zeros((0, 0))


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
    _int_scores_kernel(SIGN, qu, qi_t, g, d, 1, 1, out)
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
    out = np.empty((n_users, n_items), np.float32)
    _float_scores_kernel(SIGN, qu, qi_t, g, d, su, si_t, 1, 1, True, mult, bias, ucons, out)
    return out


def sign_topk(user_words, item_words_t, dim, k, n_groups=1, user_scales=None,
              item_scales_t=None, mult=1.0, item_bias=None, user_const=None,
              exclude_indptr=None, exclude_indices=None):
    """Fused top-k of sign scores (tie rule and padding: module docstring).

    Parameters are those of :func:`sign_scores` plus ``k`` and the exclusion
    CSR (``exclude_indptr [B + 1]``, ``exclude_indices``). With no scales,
    bias or user constant and ``mult == 1`` the integer kernel runs.

    Returns
    -------
    scores : np.ndarray float32 [B, k]
    ids : np.ndarray int64 [B, k]
    """
    qu, qi_t, g, d = _sign_args(user_words, item_words_t, dim, n_groups)
    n_users, n_items = qu.shape[0], qi_t.shape[1]
    k, out_s, out_i = _topk_out(n_users, k)
    indptr, indices = _exclusion_args(n_users, exclude_indptr, exclude_indices)
    plain = (user_scales is None and item_scales_t is None and item_bias is None
             and user_const is None and float(mult) == 1.0)
    if plain:
        _sign_int_topk_kernel(qu, qi_t, g * d, k, indptr, indices, out_s, out_i)
    else:
        su, si_t = _scale_args(n_users, n_items, g, user_scales, item_scales_t)
        mult, bias, ucons = _affine_args(n_users, n_items, mult, item_bias, user_const)
        _float_topk_kernel(SIGN, qu, qi_t, g, d, su, si_t, 1, 1, True, mult, bias, ucons,
                           k, indptr, indices, out_s, out_i)
    return out_s, out_i


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
    au, bi_t, pu, pi, _ = _plane_args(user_planes, item_planes_t, user_bits, item_bits)
    out = np.empty((au.shape[0], bi_t.shape[1]), np.int64)
    _int_scores_kernel(PLANE, au, bi_t, 1, 1, pu, pi, out)
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
    au, bi_t, pu, pi, small = _plane_args(user_planes, item_planes_t, user_bits, item_bits)
    n_users, n_items = au.shape[0], bi_t.shape[1]
    mult, bias, ucons = _affine_args(n_users, n_items, mult, item_bias, user_const)
    out = np.empty((n_users, n_items), np.float32)
    _float_scores_kernel(PLANE, au, bi_t, 1, 1, _NO_SCALES, _NO_SCALES, pu, pi, small,
                         mult, bias, ucons, out)
    return out


def plane_topk(user_planes, item_planes_t, user_bits, item_bits, k, mult=1.0,
               item_bias=None, user_const=None, exclude_indptr=None, exclude_indices=None):
    """Fused top-k of plane scores (tie rule and padding: module docstring).

    Returns
    -------
    scores : np.ndarray float32 [B, k]
    ids : np.ndarray int64 [B, k]
    """
    au, bi_t, pu, pi, small = _plane_args(user_planes, item_planes_t, user_bits, item_bits)
    n_users, n_items = au.shape[0], bi_t.shape[1]
    k, out_s, out_i = _topk_out(n_users, k)
    indptr, indices = _exclusion_args(n_users, exclude_indptr, exclude_indices)
    mult, bias, ucons = _affine_args(n_users, n_items, mult, item_bias, user_const)
    _float_topk_kernel(PLANE, au, bi_t, 1, 1, _NO_SCALES, _NO_SCALES, pu, pi, small,
                       mult, bias, ucons, k, indptr, indices, out_s, out_i)
    return out_s, out_i
