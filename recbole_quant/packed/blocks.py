"""Per-block order keys and block maxima: the candidate filter of the fused top-k.

Scores become int64 keys with the same order (integer sign path: ``-popcount``;
float paths: the float32 bit pattern with the magnitude bits of negatives
flipped), so all comparisons are integer ones and vectorise. The first pass
keeps one maximum key per ``BLOCK`` items; bit-plane codes keep a lower and an
upper bound computed from an integer proxy instead (:func:`plane_bound_params`).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .bitops import bits_f32, f32_bits, plane2_dot, plane4_dot, popcount64
from .passes import PLANE, PLANE_SORTED, SIGN_INT, plane_dot_chunk, score, xor_popcount_chunk, z_chunk

BLOCK = 64  # items per block maximum (granularity of the candidate filter)
KEY_MIN = np.int64(-(2**62))  # below every score key: marks excluded items


@njit(cache=True, inline="always")
def f32_key(v):
    """float32 score -> int64 key with the same order (no NaN, no -0.0)."""
    b = np.int64(f32_bits(v))
    return b ^ ((b >> 63) & 0x7FFFFFFF)


@njit(cache=True, inline="always")
def key_f32(key):
    """Inverse of :func:`f32_key`."""
    return bits_f32(np.int32(key ^ ((key >> 63) & 0x7FFFFFFF)))


@njit(cache=True, inline="always")
def proxy(k, shift, negmask, g):
    """Integer proxy of a plane score: +-(K << shift) + G (see plane_bound_params)."""
    return (((np.int64(k) << shift) ^ negmask) - negmask) + g


@njit(cache=True, _nrt=False)
def fused_plane_block_proxy(bits, a0, a1, a2, a3, bi_t, bg, shift, negmask, s, cnt):
    """max of the integer proxy over items s .. s + cnt - 1 for one-word plane
    codes of equal user/item width ``bits`` in {1, 2, 4}: popcounts, proxy and
    the running max stay in registers (integer ops only, all vectorised)."""
    m = np.int64(-(2**63))
    if bits == 1:
        for j in range(cnt):
            k = popcount64(a0 & bi_t[0, s + j])
            m = max(m, proxy(k, shift, negmask, bg[s + j]))
    elif bits == 2:
        for j in range(cnt):
            x0, x1 = bi_t[0, s + j], bi_t[1, s + j]
            k = plane2_dot(a0, a1, x0, x1)
            m = max(m, proxy(k, shift, negmask, bg[s + j]))
    else:
        for j in range(cnt):
            x0, x1, x2, x3 = bi_t[0, s + j], bi_t[1, s + j], bi_t[2, s + j], bi_t[3, s + j]
            k = plane4_dot(a0, a1, a2, a3, x0, x1, x2, x3)
            m = max(m, proxy(k, shift, negmask, bg[s + j]))
    return m


@njit(cache=True, inline="always")
def max_proxy(buf, s, bg, o, shift, negmask, cnt):
    """max of the integer proxy over buf[s : s + cnt] (plane dots of items o + s ...)."""
    m = np.int64(-(2**63))
    for j in range(cnt):
        m = max(m, proxy(buf[s + j], shift, negmask, bg[o + s + j]))
    return m


@njit(cache=True, _nrt=False)
def store_bounds(t_max, bscale, bdelta, c, bm_lo, bm_hi, r, b):
    """Key bounds of a block from its proxy maximum: the block's best score lies
    in score(bscale * t_max -+ bdelta) (see plane_bound_params)."""
    zc = bscale * np.float64(t_max)
    bm_lo[r, b] = f32_key(score(zc - bdelta, c))
    bm_hi[r, b] = f32_key(score(zc + bdelta, c))


@njit(cache=True, inline="always")
def min_xor_popcount1(a, qi_t, s, cnt):
    """min over s <= i < s + cnt of popcount(a ^ qi_t[0, i]) (one-word codes)."""
    m = np.uint64(64)
    for j in range(cnt):
        m = min(m, popcount64(a ^ qi_t[0, s + j]))
    return -np.int64(m)


@njit(cache=True, inline="always")
def max_and_popcount1(a, qi_t, s, cnt):
    """max over s <= i < s + cnt of popcount(a & qi_t[0, i]) (one-word 1-bit planes)."""
    m = np.uint64(0)
    for j in range(cnt):
        m = max(m, popcount64(a & qi_t[0, s + j]))
    return np.int64(m)


@njit(cache=True, inline="always")
def max_buf(buf, s, cnt):
    """max over j of buf[s + j]."""
    m = np.int64(-(2**62))
    for j in range(cnt):
        m = max(m, buf[s + j])
    return m


@njit(cache=True, _nrt=False)
def sorted_block_k_max(codes_u, u, codes_i_t, pu, pi, o, n, buf, eptr, eend, excl):
    """PLANE_SORTED: the largest K among the items of block [o, o + n) that are not in
    excl[eptr:eend] (sorted stored positions), or -1 if all are; returns (K, new eptr).
    Integer work only: excluded blocks get bounds, not exact scores (see the kernel)."""
    ou = np.uint64(o)
    nu = np.uint64(n)
    if pu == 1 and pi == 1 and codes_i_t.shape[0] == 1:
        a = codes_u[u, 0]
        for j in range(nu):
            buf[j] = np.int64(popcount64(a & codes_i_t[0, ou + j]))
    else:
        plane_dot_chunk(codes_u, u, codes_i_t, pu, pi, ou, nu, buf)
    while eptr < eend and excl[eptr] < o:
        eptr += 1
    while eptr < eend and excl[eptr] < o + n:
        buf[excl[eptr] - o] = -1
        eptr += 1
    return max_buf(buf, np.uint64(0), nu), eptr


@njit(cache=True, _nrt=False)
def sorted_block_bounds(bm, bm_hi, r, b0, b1, mult, bias_lo, bias_hi, c):
    """Turn row r's block maxima of K in blocks b0 .. b1 - 1 (PLANE_SORTED) into exact key
    bounds: bm_hi[r, b] = key of score(mult * K_max + bias_hi[b]), bm[r, b] the same with
    bias_lo (mult > 0: the z_chunk expression is monotone in K and bias, see .sorted_items).
    Called once over all blocks after the first pass (a loop that vectorises), and for a
    block whose maximum changed when its excluded items were dropped."""
    for b in range(b0, b1):
        z = mult * np.float64(bm[r, b])
        bm_hi[r, b] = f32_key(score(z + bias_hi[b], c))
        bm[r, b] = f32_key(score(z + bias_lo[b], c))


@njit(cache=True, inline="always")
def max_neg(buf, s, cnt):
    """max over j of -buf[s + j]."""
    m = np.int64(2**62)
    for j in range(cnt):
        m = min(m, buf[s + j])
    return -m


@njit(cache=True, inline="always")
def max_score_key(z, s, c, cnt):
    """Key of the largest score among z[s : s + cnt]: x -> float32(x + c) + 0 is
    monotone, so it is the key of the largest z (a cheap float64 max)."""
    m = z[s]
    for j in range(1, cnt):
        m = max(m, z[s + j])
    return f32_key(score(m, c))


@njit(cache=True, _nrt=False)
def block_maxima(kind, codes_u, u, codes_i_t, n_groups, d, su, si_t, pu, pi, small,
                 mult, bias, c, bnd, i0, n, buf, acc, bm, bm_hi, r):
    """bm[r, i0 // BLOCK + t] = max key of items in block t of the chunk i0 .. i0 + n - 1.

    Plane codes with usable bound parameters ``bnd`` (see plane_bound_params)
    store a lower bound in ``bm`` and an upper bound in ``bm_hi``; every other
    kind stores the exact maximum (``bm_hi`` is then the same array). Keys are
    reduced in registers, never stored (a store + wider reload defeats store
    forwarding), and full blocks use a constant trip count.
    """
    b0 = i0 // BLOCK
    n_full = n // BLOCK
    rest = np.uint64(n - n_full * BLOCK)
    full = np.uint64(BLOCK)
    o = np.uint64(i0)
    if kind == SIGN_INT and codes_i_t.shape[0] == 1:  # d <= 64: popcount straight from codes
        a = codes_u[u, 0]
        for t in range(n_full):
            bm[r, b0 + t] = min_xor_popcount1(a, codes_i_t, o + np.uint64(t * BLOCK), full)
        if rest > 0:
            bm[r, b0 + n_full] = min_xor_popcount1(a, codes_i_t, o + np.uint64(n_full * BLOCK), rest)
    elif kind == SIGN_INT:
        xor_popcount_chunk(codes_u, u, codes_i_t, 0, codes_i_t.shape[0], o, np.uint64(n), buf)
        for t in range(n_full):
            bm[r, b0 + t] = max_neg(buf, np.uint64(t * BLOCK), full)
        if rest > 0:
            bm[r, b0 + n_full] = max_neg(buf, np.uint64(n_full * BLOCK), rest)
    elif kind == PLANE_SORTED:  # items stored by bias: the block's largest K (integer);
        # sorted_block_bounds turns it into key bounds once the pass is done
        if pu == 1 and pi == 1 and codes_i_t.shape[0] == 1:  # d <= 64: popcount from codes
            a = codes_u[u, 0]
            for t in range(n_full):
                bm[r, b0 + t] = max_and_popcount1(a, codes_i_t, o + np.uint64(t * BLOCK), full)
            if rest > 0:
                bm[r, b0 + n_full] = max_and_popcount1(a, codes_i_t, o + np.uint64(n_full * BLOCK), rest)
        else:
            plane_dot_chunk(codes_u, u, codes_i_t, pu, pi, o, np.uint64(n), buf)
            for t in range(n_full):
                bm[r, b0 + t] = max_buf(buf, np.uint64(t * BLOCK), full)
            if rest > 0:
                bm[r, b0 + n_full] = max_buf(buf, np.uint64(n_full * BLOCK), rest)
    elif kind == PLANE and bnd[0]:
        use, shift, negmask, bscale, bdelta, bg = bnd[0], bnd[1], bnd[2], bnd[3], bnd[4], bnd[5]
        if pu == pi and codes_i_t.shape[0] == pi and (pu == 1 or pu == 2 or pu == 4):
            # one word (d <= 64), equal widths: fused, nothing stored
            a0 = codes_u[u, 0]
            a1 = codes_u[u, 1] if pu > 1 else np.uint64(0)
            a2 = codes_u[u, 2] if pu > 2 else np.uint64(0)
            a3 = codes_u[u, 3] if pu > 2 else np.uint64(0)
            for t in range(n_full + (1 if rest > 0 else 0)):
                cnt = full if t < n_full else rest
                t_max = fused_plane_block_proxy(pu, a0, a1, a2, a3, codes_i_t, bg, shift, negmask,
                                                 o + np.uint64(t * BLOCK), cnt)
                store_bounds(t_max, bscale, bdelta, c, bm, bm_hi, r, b0 + t)
        else:
            plane_dot_chunk(codes_u, u, codes_i_t, pu, pi, o, np.uint64(n), buf)
            for t in range(n_full):
                t_max = max_proxy(buf, np.uint64(t * BLOCK), bg, o, shift, negmask, full)
                store_bounds(t_max, bscale, bdelta, c, bm, bm_hi, r, b0 + t)
            if rest > 0:
                t_max = max_proxy(buf, np.uint64(n_full * BLOCK), bg, o, shift, negmask, rest)
                store_bounds(t_max, bscale, bdelta, c, bm, bm_hi, r, b0 + n_full)
    else:
        z_chunk(kind, codes_u, u, codes_i_t, n_groups, d, su, si_t, pu, pi, small, mult, bias,
                 o, np.uint64(n), buf, acc)
        for t in range(n_full):
            bm[r, b0 + t] = max_score_key(acc, np.uint64(t * BLOCK), c, full)
        if rest > 0:
            bm[r, b0 + n_full] = max_score_key(acc, np.uint64(n_full * BLOCK), c, rest)


@njit(cache=True, _nrt=False)
def block_keys(kind, codes_u, u, codes_i_t, n_groups, d, su, si_t, pu, pi, small,
               mult, bias, c, o, n, buf, acc, keys):
    """keys[j] = key of item o + j for one block (o, n int64)."""
    ou = np.uint64(o)
    nu = np.uint64(n)
    if kind == SIGN_INT:
        xor_popcount_chunk(codes_u, u, codes_i_t, 0, codes_i_t.shape[0], ou, nu, buf)
        for j in range(nu):
            keys[j] = -buf[j]
    elif kind == PLANE and pu == 1 and pi == 1 and codes_i_t.shape[0] == 1:
        # one-word 1-bit planes: one fused pass, the z_chunk expression item by item
        a = codes_u[u, 0]
        for j in range(nu):
            k = np.float64(np.int32(popcount64(a & codes_i_t[0, ou + j])))
            keys[j] = f32_key(score(mult * k + bias[ou + j], c))
    else:
        z_chunk(kind, codes_u, u, codes_i_t, n_groups, d, su, si_t, pu, pi, small, mult, bias,
                 ou, nu, buf, acc)
        for j in range(nu):
            keys[j] = f32_key(score(acc[j], c))


@njit(cache=True, _nrt=False)
def block_max(keys, n):
    m = KEY_MIN
    for j in range(n):
        m = max(m, keys[j])
    return m


@njit(cache=True, _nrt=False)
def mark_excluded(keys, o, n, eptr, eend, excl):
    """Set keys of excluded items in [o, o + n) to KEY_MIN; returns the new eptr."""
    while eptr < eend and excl[eptr] < o:
        eptr += 1
    while eptr < eend and excl[eptr] < o + n:
        keys[excl[eptr] - o] = KEY_MIN
        eptr += 1
    return eptr


NO_BOUNDS = (False, np.int64(0), np.int64(0), 0.0, 0.0, np.zeros(0, np.int64),
             np.zeros(0), np.zeros(0))


def sorted_bounds(bias_lo, bias_hi):
    """Bound parameters of the PLANE_SORTED kind: the per-block bias bounds of
    :class:`.sorted_items.SortedItems` (the proxy fields are unused)."""
    return NO_BOUNDS[:6] + (bias_lo, bias_hi)


def plane_bound_params(mult, bias, n_words, user_bits, item_bits):
    """Integer proxy that bounds plane scores, for the fused top-k's first pass.

    A plane score is ``float32((mult * K + bias_i) + c) + 0`` with z = mult * K
    + bias_i in float64. With ``s = sign(mult)`` and ``beta_i = bias_i / mult``
    the proxy ``P_i = s * (K << F) + G_i``, ``G_i = floor(s * beta_i * 2^F)``,
    is pure integer arithmetic (vectorised, no float conversions), and

        |z - |mult| * P_i / 2^F| <= delta

    for every item (delta covers the floor, the division and the float
    roundings, with a factor 4 to spare). So the best score of a block lies in
    ``score(|mult| * max P / 2^F -+ delta)``: a lower bound for choosing the
    threshold M and an upper bound for the candidate filter; the candidate
    blocks are then scored exactly. ``F`` is as large as int64 allows.

    Returns ``NO_BOUNDS`` (exact first pass) when mult == 0 or F would be
    too small to separate scores (huge |bias| / |mult|).
    """
    mult = float(mult)
    if mult == 0.0:
        return NO_BOUNDS
    u = 2.0**-53
    k_max = 64 * n_words * ((1 << user_bits) - 1) * ((1 << item_bits) - 1)
    beta = np.asarray(bias, np.float64) / mult
    beta_max = float(np.abs(beta).max()) if beta.size else 0.0
    shift = int(np.floor(61 - np.log2(k_max + beta_max + 2)))
    if shift < 16:
        return NO_BOUNDS
    neg = mult < 0
    g = np.floor((-beta if neg else beta) * 2.0**shift).astype(np.int64)
    z_max = abs(mult) * k_max + (float(np.abs(bias).max()) if beta.size else 0.0)
    e = 2.0 * 2.0**-shift + 2 * u * beta_max  # |G / 2^F - s * beta| (floor + division)
    delta = 4.0 * (abs(mult) * e + 4 * u * z_max)
    return (True, np.int64(shift), np.int64(-1 if neg else 0), abs(mult) * 2.0**-shift, delta, g,
            np.zeros(0), np.zeros(0))
