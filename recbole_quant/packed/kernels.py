"""Exact popcount scoring kernels and a fused top-k, compiled with numba (CPU).

Inputs are packed codes (see :mod:`.bitpack`): user codes row-major
``uint64 [B, L]``, item codes word-major ``uint64 [L, N]`` (``L = G * W`` words
for sign codes with ``G`` groups of ``W`` words, ``L = b * W`` for ``b`` bit
planes). Word-major items make every inner loop a contiguous scan over items,
which LLVM vectorises (AVX2: popcount by nibble lookup).

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
Scores are mapped to int32 keys with the same order (integer path: ``-popcount``;
float path: the float32 bit pattern with the magnitude bits of negatives
flipped), so every comparison is an integer one and vectorises.

1. Items are processed in chunks of ``CHUNK`` (shared in L1 by a block of
   ``USER_BLOCK`` users). Each user computes the chunk's keys with vectorised
   passes and keeps only the maximum key of every ``BLOCK`` items; no
   ``[B, N]`` matrix and no per-item heap work.
2. Per user: blocks holding excluded items get their maximum recomputed
   without them; ``M`` = the k-th largest block maximum. At least ``k``
   eligible items score >= M, so every top-k item does too.
3. Only blocks whose maximum is >= M (about k of them) are recomputed and
   scanned in increasing id order into a k-heap whose root is the worst kept
   entry; a later (higher id) item replaces it only with a strictly greater
   key, which is exactly the tie rule.

Shapes are runtime arguments, so four parallel kernels cover every code width
(no per-shape compilation); user blocks are spread over threads with ``prange``.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .bitops import bits_f32, f32_bits, popcount64

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
]

BLOCK = 64  # items per block maximum (granularity of the candidate filter)
CHUNK = 256  # items per compute chunk, a multiple of BLOCK; stays in L1
USER_BLOCK = 8  # users sharing one item chunk inside one prange task

# kind codes passed to the kernels
SIGN = 0  # sign codes, float scores
PLANE = 1  # bit planes, float scores
SIGN_INT = 2  # sign codes, integer scores (top-k only)

_KEY_MIN = np.int64(-(2**62))  # below every score key: marks excluded items


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
    if kind == PLANE:
        _plane_dot_chunk(codes_u, u, codes_i_t, pu, pi, o, n, buf)
        if small:  # K < 2^31: the int32 -> float64 conversion vectorises
            for j in range(n):
                acc[j] = np.float64(np.int32(buf[j]))
        else:
            for j in range(n):
                acc[j] = np.float64(buf[j])
    elif su.shape[1] > 0:  # scaled sign: per-group dots weighted by su * si
        n_words = codes_i_t.shape[0] // n_groups
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


@njit(cache=True)
def _affine_chunk(acc, mult, bias, c, o, n, vals):
    """vals[j] = float32((mult * acc[j] + bias[o + j]) + c) + 0.0."""
    for j in range(n):
        vals[j] = np.float32((mult * acc[j] + bias[o + j]) + c) + np.float32(0.0)


# ---------------------------------------------------------------------------
# order keys: int64 with the order of the scores (integer path: -popcount;
# float path: float32 bits with the magnitude bits of negatives flipped)
# ---------------------------------------------------------------------------


@njit(cache=True, inline="always")
def _f32_key(v):
    b = np.int64(f32_bits(v))
    return b ^ ((b >> 63) & 0x7FFFFFFF)


@njit(cache=True, inline="always")
def _key_f32(key):
    return bits_f32(np.int32(key ^ ((key >> 63) & 0x7FFFFFFF)))


@njit(cache=True, inline="always")
def _float_key(acc, j, mult, bias, i, c):
    """Key of float32((mult * acc[j] + bias[i]) + c) + 0.0, the score of item i."""
    return _f32_key(np.float32((mult * acc[j] + bias[i]) + c) + np.float32(0.0))


@njit(cache=True, inline="always")
def _min_xor_popcount1(a, qi_t, s, cnt):
    """min over s <= i < s + cnt of popcount(a ^ qi_t[0, i]) (one-word codes)."""
    m = np.uint64(64)
    for j in range(cnt):
        m = min(m, popcount64(a ^ qi_t[0, s + j]))
    return -np.int64(m)


@njit(cache=True, inline="always")
def _max_neg(buf, s, cnt):
    """max over j of -buf[s + j]."""
    m = np.int64(2**62)
    for j in range(cnt):
        m = min(m, buf[s + j])
    return -m


@njit(cache=True, inline="always")
def _max_float_key(acc, s, mult, bias, o, c, cnt):
    """max over j of the key of float32((mult * acc[s + j] + bias[o + s + j]) + c) + 0."""
    m = _KEY_MIN
    for j in range(cnt):
        m = max(m, _float_key(acc, s + j, mult, bias, o + s + j, c))
    return m


@njit(cache=True, inline="always")
def _block_maxima(kind, codes_u, u, codes_i_t, n_groups, d, su, si_t, pu, pi, small,
                  mult, bias, c, i0, n, buf, acc, bm, r):
    """bm[r, i0 // BLOCK + t] = max key of items in block t of the chunk i0 .. i0 + n - 1.

    Keys are reduced in registers, never stored (a store + wider reload
    defeats store forwarding). Full blocks use a constant trip count, and the
    whole helper is inlined: both halve the cost of this pass.
    """
    b0 = i0 // BLOCK
    n_full = n // BLOCK
    rest = np.uint64(n - n_full * BLOCK)
    full = np.uint64(BLOCK)
    o = np.uint64(i0)
    if kind == SIGN_INT and codes_i_t.shape[0] == 1:  # d <= 64: popcount straight from codes
        a = codes_u[u, 0]
        for t in range(n_full):
            bm[r, b0 + t] = _min_xor_popcount1(a, codes_i_t, o + np.uint64(t * BLOCK), full)
        if rest > 0:
            bm[r, b0 + n_full] = _min_xor_popcount1(a, codes_i_t, o + np.uint64(n_full * BLOCK), rest)
    elif kind == SIGN_INT:
        _xor_popcount_chunk(codes_u, u, codes_i_t, 0, codes_i_t.shape[0], o, np.uint64(n), buf)
        for t in range(n_full):
            bm[r, b0 + t] = _max_neg(buf, np.uint64(t * BLOCK), full)
        if rest > 0:
            bm[r, b0 + n_full] = _max_neg(buf, np.uint64(n_full * BLOCK), rest)
    else:
        _raw_chunk(kind, codes_u, u, codes_i_t, n_groups, d, su, si_t, pu, pi, small,
                   o, np.uint64(n), buf, acc)
        for t in range(n_full):
            bm[r, b0 + t] = _max_float_key(acc, np.uint64(t * BLOCK), mult, bias, o, c, full)
        if rest > 0:
            bm[r, b0 + n_full] = _max_float_key(acc, np.uint64(n_full * BLOCK), mult, bias, o, c, rest)


@njit(cache=True, inline="always")
def _block_keys(kind, codes_u, u, codes_i_t, n_groups, d, su, si_t, pu, pi, small,
                mult, bias, c, o, n, buf, acc, keys):
    """keys[j] = key of item o + j for one block (o, n int64)."""
    ou = np.uint64(o)
    nu = np.uint64(n)
    if kind == SIGN_INT:
        _xor_popcount_chunk(codes_u, u, codes_i_t, 0, codes_i_t.shape[0], ou, nu, buf)
        for j in range(nu):
            keys[j] = -buf[j]
    else:
        _raw_chunk(kind, codes_u, u, codes_i_t, n_groups, d, su, si_t, pu, pi, small, ou, nu, buf, acc)
        for j in range(nu):
            keys[j] = _float_key(acc, j, mult, bias, ou + j, c)


@njit(cache=True, inline="always")
def _block_max(keys, n):
    m = _KEY_MIN
    for j in range(n):
        m = max(m, keys[j])
    return m


@njit(cache=True, inline="always")
def _mark_excluded(keys, o, n, eptr, eend, excl):
    """Set keys of excluded items in [o, o + n) to _KEY_MIN; returns the new eptr."""
    while eptr < eend and excl[eptr] < o:
        eptr += 1
    while eptr < eend and excl[eptr] < o + n:
        keys[excl[eptr] - o] = _KEY_MIN
        eptr += 1
    return eptr


# ---------------------------------------------------------------------------
# k-heap in row r of (hv, hi): root = worst kept entry (lowest key, then highest id)
# ---------------------------------------------------------------------------


@njit(cache=True, inline="always")
def _worse(va, ia, vb, ib):
    return va < vb or (va == vb and ia > ib)


@njit(cache=True, inline="always")
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


@njit(cache=True, inline="always")
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
def _kth_largest(bm, r, n, k, hv, hi):
    """k-th largest of bm[r, :n] (_KEY_MIN if n < k), using heap row r as scratch."""
    if n < k:
        return _KEY_MIN
    size = 0
    for b in range(n):
        v = bm[r, b]
        if size < k:
            hv[r, size] = v
            hi[r, size] = b
            _sift_up(hv, hi, r, size)
            size += 1
        elif v > hv[r, 0]:
            hv[r, 0] = v
            hi[r, 0] = b
            _sift_down(hv, hi, r, size, 0)
    return hv[r, 0]


@njit(cache=True, inline="always")
def _offer_block(keys, i0, n, lower, hv, hi, r, size, k):
    """Offer items i0 .. i0 + n - 1 with keys[:n] to heap row r; returns size.

    An item qualifies with key > lower; ids increase, so once the heap is full
    an item enters only if its key is strictly greater than the root's.
    """
    j = 0
    while j < n:
        thr = lower if size < k else hv[r, 0]
        while j < n and keys[j] <= thr:  # tight skip, thr stays in a register
            j += 1
        if j == n:
            break
        if size < k:
            hv[r, size] = keys[j]
            hi[r, size] = i0 + j
            _sift_up(hv, hi, r, size)
            size += 1
        else:
            hv[r, 0] = keys[j]
            hi[r, 0] = i0 + j
            _sift_down(hv, hi, r, size, 0)
        j += 1
    return size


# ---------------------------------------------------------------------------
# kernels
# ---------------------------------------------------------------------------


@njit(parallel=True, cache=True)
def _int_scores_kernel(kind, codes_u, codes_i_t, n_groups, d, pu, pi, out):
    """out[u, i] = exact integer raw score (SIGN: sum_g dot_g, PLANE: K)."""
    n_users = codes_u.shape[0]
    n_items = codes_i_t.shape[1]
    gd = n_groups * d
    for u in prange(n_users):
        buf = np.empty(CHUNK, np.int64)
        for i0 in range(0, n_items, CHUNK):
            o = np.uint64(i0)
            n = np.uint64(min(CHUNK, n_items - i0))
            if kind == PLANE:
                _plane_dot_chunk(codes_u, u, codes_i_t, pu, pi, o, n, buf)
                for j in range(n):
                    out[u, o + j] = buf[j]
            else:
                _xor_popcount_chunk(codes_u, u, codes_i_t, 0, codes_i_t.shape[0], o, n, buf)
                for j in range(n):
                    out[u, o + j] = gd - 2 * buf[j]


@njit(parallel=True, cache=True)
def _float_scores_kernel(kind, codes_u, codes_i_t, n_groups, d, su, si_t, pu, pi, small,
                         mult, bias, ucons, out):
    """out[u, i] = float32((mult * raw + bias[i]) + ucons[u]) + 0.0."""
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
def _topk_kernel(kind, codes_u, codes_i_t, n_groups, d, su, si_t, pu, pi, small,
                 mult, bias, ucons, k, indptr, indices, out_s, out_i):
    """Fused top-k for every kind (see "How the fused top-k works")."""
    n_users = codes_u.shape[0]
    n_items = codes_i_t.shape[1]
    n_blk = (n_items + BLOCK - 1) // BLOCK
    n_ublk = (n_users + USER_BLOCK - 1) // USER_BLOCK
    for ub in prange(n_ublk):
        u0 = ub * USER_BLOCK
        nb = min(USER_BLOCK, n_users - u0)
        buf = np.empty(CHUNK, np.int64)
        acc = np.empty(CHUNK, np.float64)
        keys = np.empty(BLOCK, np.int64)
        bm = np.empty((nb, n_blk), np.int64)
        hv = np.empty((nb, k), np.int64)
        hi = np.empty((nb, k), np.int64)

        # 1. block maxima of every user in the block, chunk by chunk
        for i0 in range(0, n_items, CHUNK):
            n = min(CHUNK, n_items - i0)
            for r in range(nb):
                _block_maxima(kind, codes_u, u0 + r, codes_i_t, n_groups, d, su, si_t, pu, pi,
                              small, mult, bias, ucons[u0 + r], i0, n, buf, acc, bm, r)

        for r in range(nb):
            u = u0 + r
            c = ucons[u]
            e0 = indptr[u]
            e1 = indptr[u + 1]
            # 2a. drop excluded items from their blocks' maxima
            p = e0
            while p < e1:
                i = indices[p]
                if i < 0 or i >= n_items:
                    p += 1
                    continue
                o = (i // BLOCK) * BLOCK
                n = min(BLOCK, n_items - o)
                _block_keys(kind, codes_u, u, codes_i_t, n_groups, d, su, si_t, pu, pi, small,
                            mult, bias, c, o, n, buf, acc, keys)
                p = _mark_excluded(keys, o, n, p, e1, indices)
                bm[r, i // BLOCK] = _block_max(keys, n)
            # 2b. M = k-th largest block maximum: at least k eligible items have key >= M
            m = _kth_largest(bm, r, n_blk, k, hv, hi)
            lower = max(m, _KEY_MIN + 1) - 1  # qualify: key > lower; never an excluded one
            # 3. scan candidate blocks in id order
            size = 0
            p = e0
            for b in range(n_blk):
                thr = lower if size < k else hv[r, 0]
                if bm[r, b] <= thr:
                    continue
                o = b * BLOCK
                n = min(BLOCK, n_items - o)
                _block_keys(kind, codes_u, u, codes_i_t, n_groups, d, su, si_t, pu, pi, small,
                            mult, bias, c, o, n, buf, acc, keys)
                p = _mark_excluded(keys, o, n, p, e1, indices)
                size = _offer_block(keys, o, n, lower, hv, hi, r, size, k)
            # 4. drain best first and turn keys back into scores
            for pos in range(size - 1, -1, -1):
                key = hv[r, 0]
                out_i[u, pos] = hi[r, 0]
                if kind == SIGN_INT:  # key = -popcount, score = G*d - 2 * popcount
                    out_s[u, pos] = np.float32(n_groups * d + 2 * key)
                else:
                    out_s[u, pos] = _key_f32(key)
                hv[r, 0] = hv[r, pos]
                hi[r, 0] = hi[r, pos]
                _sift_down(hv, hi, r, pos, 0)
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
    if not (1 <= pu <= 8 and 1 <= pi <= 8) or au.shape[1] % pu or bi_t.shape[0] % pi:
        raise ValueError("plane counts do not match the bit widths")
    if au.shape[1] // pu != bi_t.shape[0] // pi:
        raise ValueError("users and items have different words per plane")
    return au, bi_t, pu, pi


def plane_dot_fits_int32(n_words, user_bits, item_bits):
    """Whether every plane dot product K fits in int32 (enables a faster conversion)."""
    return 64 * n_words * ((1 << user_bits) - 1) * ((1 << item_bits) - 1) < 2**31


def exclusion_csr(n_users, indptr=None, indices=None):
    """Validate CSR exclusion arrays for a batch; ``None`` means exclude nothing.

    Returns
    -------
    indptr : int64 [B + 1], indices : int64 [nnz] (sorted within each row)
    """
    if indptr is None:
        if indices is not None:
            raise ValueError("exclusion indices given without indptr")
        return np.zeros(n_users + 1, np.int64), np.zeros(0, np.int64)
    indptr = np.ascontiguousarray(indptr, dtype=np.int64)
    indices = np.ascontiguousarray(indices, dtype=np.int64)
    if indptr.shape != (n_users + 1,) or indptr[0] != 0 or indptr[-1] != indices.shape[0]:
        raise ValueError("exclusion indptr must have B + 1 entries running from 0 to len(indices)")
    if (np.diff(indptr) < 0).any():
        raise ValueError("exclusion indptr must be non-decreasing")
    # sorted within rows: every decrease must sit on a row boundary
    drops = np.flatnonzero(np.diff(indices) < 0) + 1
    if drops.size and not np.isin(drops, indptr).all():
        raise ValueError("exclusion indices must be sorted within each row")
    return indptr, indices


def check_k(k):
    """Validate ``k`` (a positive integer) and return it as int."""
    if isinstance(k, (bool, np.bool_)) or int(k) != k or k <= 0:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


_NO_SCALES = np.zeros((0, 0))


def run_scores(kind, codes_u, codes_i_t, n_groups, d, su, si_t, pu, pi, small, mult, bias, ucons):
    """Float32 score matrix [B, N] from validated arrays (no checks)."""
    out = np.empty((codes_u.shape[0], codes_i_t.shape[1]), np.float32)
    _float_scores_kernel(kind, codes_u, codes_i_t, n_groups, d, su, si_t, pu, pi, small,
                         mult, bias, ucons, out)
    return out


def run_topk(kind, codes_u, codes_i_t, n_groups, d, su, si_t, pu, pi, small, mult, bias, ucons,
             k, indptr, indices):
    """Fused top-k (float32 [B, k], int64 [B, k]) from validated arrays (no checks)."""
    n_users = codes_u.shape[0]
    out_s = np.empty((n_users, k), np.float32)
    out_i = np.empty((n_users, k), np.int64)
    _topk_kernel(kind, codes_u, codes_i_t, n_groups, d, su, si_t, pu, pi, small,
                 mult, bias, ucons, k, indptr, indices, out_s, out_i)
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
