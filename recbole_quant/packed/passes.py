"""Vectorised per-chunk passes over packed item codes (numba, CPU).

Every function here scores one user against items ``o .. o + n - 1`` of a
word-major item table and writes ``buf[j]`` / ``z[j]`` for item ``o + j``.
Indices are uint64 on purpose: numba wraps negative signed indices, and that
check blocks vectorisation of these loops (measured 2.5-3x slower). None of
them allocates, so they are compiled with ``_nrt=False`` (no reference counting
of their array arguments, which cost about a fifth of the top-k's time).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .bitops import plane2_dot, plane4_dot, popcount64

CHUNK = 256  # items per compute chunk: the chunk's item words stay in L1

# kind codes passed to the kernels
SIGN = 0  # sign codes, float scores
PLANE = 1  # bit planes, float scores
SIGN_INT = 2  # sign codes, integer scores (top-k only)
PLANE_SORTED = 3  # bit planes, float scores, items stored by bias (top-k only, see .sorted_items)


@njit(cache=True, _nrt=False)
def xor_popcount_chunk(qu, u, qi_t, w0, w1, o, n, buf):
    """buf[j] = sum_{w0 <= w < w1} popcount(qu[u, w] ^ qi_t[w, o + j])."""
    a = qu[u, w0]
    for j in range(n):
        buf[j] = np.int64(popcount64(a ^ qi_t[w0, o + j]))
    for w in range(w0 + 1, w1):
        a = qu[u, w]
        for j in range(n):
            buf[j] += np.int64(popcount64(a ^ qi_t[w, o + j]))


@njit(cache=True, _nrt=False)
def plane_dot_chunk(au, u, bi_t, pu, pi, o, n, buf):
    """buf[j] = K = sum_{p, q, w} popcount(au[u, p, w] & bi_t[q, w, o + j]) << (p + q).

    Equal widths of 2 or 4 bits get one fused pass per word (every item word
    loaded once, popcounts of equal weight summed before widening); other
    widths take user planes up to four at a time per item plane.
    """
    n_words = au.shape[1] // pu
    for j in range(n):  # LLVM turns this into a memset: cheap next to the passes below
        buf[j] = 0
    for w in range(n_words):
        if pu == 2 and pi == 2:
            a0, a1 = au[u, w], au[u, n_words + w]
            r0, r1 = w, n_words + w
            for j in range(n):
                x0, x1 = bi_t[r0, o + j], bi_t[r1, o + j]
                v = plane2_dot(a0, a1, x0, x1)
                buf[j] += np.int64(v)
        elif pu == 4 and pi == 4:
            a0, a1 = au[u, w], au[u, n_words + w]
            a2, a3 = au[u, 2 * n_words + w], au[u, 3 * n_words + w]
            for j in range(n):
                x0, x1 = bi_t[w, o + j], bi_t[n_words + w, o + j]
                x2, x3 = bi_t[2 * n_words + w, o + j], bi_t[3 * n_words + w, o + j]
                v = plane4_dot(a0, a1, a2, a3, x0, x1, x2, x3)
                buf[j] += np.int64(v)
        else:
            for q in range(pi):
                row = q * n_words + w
                for p0 in range(0, pu, 4):
                    cnt = min(4, pu - p0)
                    sh = np.int64(p0 + q)
                    a0 = au[u, p0 * n_words + w]
                    if cnt == 1:
                        for j in range(n):
                            buf[j] += np.int64(popcount64(a0 & bi_t[row, o + j])) << sh
                    elif cnt == 2:
                        a1 = au[u, (p0 + 1) * n_words + w]
                        for j in range(n):
                            x = bi_t[row, o + j]
                            v = np.int64(popcount64(a0 & x)) + (np.int64(popcount64(a1 & x)) << 1)
                            buf[j] += v << sh
                    else:  # 3 or 4 planes; a missing fourth plane is all zeros
                        a1 = au[u, (p0 + 1) * n_words + w]
                        a2 = au[u, (p0 + 2) * n_words + w]
                        a3 = au[u, (p0 + 3) * n_words + w] if cnt == 4 else np.uint64(0)
                        for j in range(n):
                            x = bi_t[row, o + j]
                            v = (np.int64(popcount64(a0 & x)) + (np.int64(popcount64(a1 & x)) << 1)
                                 + (np.int64(popcount64(a2 & x)) << 2) + (np.int64(popcount64(a3 & x)) << 3))
                            buf[j] += v << sh


@njit(cache=True, _nrt=False)
def z_chunk(kind, codes_u, u, codes_i_t, n_groups, d, su, si_t, pu, pi, small, mult, bias,
            o, n, buf, z):
    """z[j] = mult * raw + bias[o + j] (float64) for item o + j; the score is float32(z + c) + 0."""
    if kind == PLANE:
        plane_dot_chunk(codes_u, u, codes_i_t, pu, pi, o, n, buf)
        if small:  # K < 2^31: the int32 -> float64 conversion vectorises
            for j in range(n):
                z[j] = mult * np.float64(np.int32(buf[j])) + bias[o + j]
        else:
            for j in range(n):
                z[j] = mult * np.float64(buf[j]) + bias[o + j]
    elif su.shape[1] > 0:  # scaled sign: per-group dots weighted by su * si
        n_words = codes_i_t.shape[0] // n_groups
        for j in range(n):
            z[j] = 0.0
        d32 = np.int32(d)
        for g in range(n_groups):
            xor_popcount_chunk(codes_u, u, codes_i_t, g * n_words, (g + 1) * n_words, o, n, buf)
            s_u = su[u, g]
            for j in range(n):
                dot = d32 - np.int32(2) * np.int32(buf[j])
                z[j] += (s_u * si_t[g, o + j]) * np.float64(dot)
        for j in range(n):
            z[j] = mult * z[j] + bias[o + j]
    else:
        xor_popcount_chunk(codes_u, u, codes_i_t, 0, codes_i_t.shape[0], o, n, buf)
        gd = np.int32(n_groups * d)
        for j in range(n):
            z[j] = mult * np.float64(gd - np.int32(2) * np.int32(buf[j])) + bias[o + j]


@njit(cache=True, inline="always")
def score(z, c):
    """The float32 score from z = mult * raw + bias: float32(z + c) + 0.0 (no -0.0)."""
    return np.float32(z + c) + np.float32(0.0)
