"""A k-heap per user row for the fused top-k (numba, CPU).

``hv[r]`` / ``hi[r]`` hold keys and item ids of user row ``r``; the root is the
worst kept entry (lowest key, then highest id). Items are offered in increasing
id, so a full heap takes an item only with a strictly greater key than the
root's: that is the tie rule (higher score first, then lower id).
"""
from __future__ import annotations

from numba import njit

from .blocks import KEY_MIN


@njit(cache=True, inline="always")
def worse(va, ia, vb, ib):
    return va < vb or (va == vb and ia > ib)


@njit(cache=True, _nrt=False)
def sift_up(hv, hi, r, pos):
    v = hv[r, pos]
    i = hi[r, pos]
    while pos > 0:
        parent = (pos - 1) >> 1
        if worse(v, i, hv[r, parent], hi[r, parent]):
            hv[r, pos] = hv[r, parent]
            hi[r, pos] = hi[r, parent]
            pos = parent
        else:
            break
    hv[r, pos] = v
    hi[r, pos] = i


@njit(cache=True, _nrt=False)
def sift_down(hv, hi, r, size, pos):
    v = hv[r, pos]
    i = hi[r, pos]
    while True:
        c = 2 * pos + 1
        if c >= size:
            break
        if c + 1 < size and worse(hv[r, c + 1], hi[r, c + 1], hv[r, c], hi[r, c]):
            c += 1
        if worse(hv[r, c], hi[r, c], v, i):
            hv[r, pos] = hv[r, c]
            hi[r, pos] = hi[r, c]
            pos = c
        else:
            break
    hv[r, pos] = v
    hi[r, pos] = i


@njit(cache=True, _nrt=False)
def kth_largest(bm, r, n, k, hv, hi):
    """k-th largest of bm[r, :n] (KEY_MIN if n < k), using heap row r as scratch."""
    if n < k:
        return KEY_MIN
    size = 0
    for b in range(n):
        v = bm[r, b]
        if size < k:
            hv[r, size] = v
            hi[r, size] = b
            sift_up(hv, hi, r, size)
            size += 1
        elif v > hv[r, 0]:
            hv[r, 0] = v
            hi[r, 0] = b
            sift_down(hv, hi, r, size, 0)
    return hv[r, 0]


@njit(cache=True, _nrt=False)
def offer_block(keys, i0, n, lower, hv, hi, r, size, k):
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
            sift_up(hv, hi, r, size)
            size += 1
        else:
            hv[r, 0] = keys[j]
            hi[r, 0] = i0 + j
            sift_down(hv, hi, r, size, 0)
        j += 1
    return size


@njit(cache=True, _nrt=False)
def offer_block_ids(keys, ids, o, n, lower, hv, hi, r, size, k):
    """:func:`offer_block` for items stored out of id order (``ids[o + j]`` is the id of
    stored item ``o + j``, see :mod:`.sorted_items`): a full heap takes an item whose key
    beats the root's, or equals it with a lower id, so the tie rule still holds."""
    j = 0
    while j < n:
        if size < k:
            while j < n and keys[j] <= lower:  # tight skip, as offer_block
                j += 1
            if j == n:
                break
            hv[r, size] = keys[j]
            hi[r, size] = ids[o + j]
            sift_up(hv, hi, r, size)
            size += 1
        else:
            thr = hv[r, 0]
            while j < n and keys[j] < thr:
                j += 1
            if j == n:
                break
            if keys[j] > thr or ids[o + j] < hi[r, 0]:
                hv[r, 0] = keys[j]
                hi[r, 0] = ids[o + j]
                sift_down(hv, hi, r, size, 0)
        j += 1
    return size
