"""numba CSR kernels behind :mod:`recbole_quant.sparse.propagation`.

Every kernel is serial, ``nogil`` and takes ``(start, stop, ...)`` over *blocks* of rows
(``bounds[b] .. bounds[b + 1]``), so :func:`recbole_quant.packed.threads.run_ranges` can
spread the blocks over torch's thread count (``torch.get_num_threads()``) without starting
numba's own threading layer. Blocks are cut with equal work (rows + stored entries,
:func:`balanced_bounds`): a power-law graph split into equal row ranges leaves a thread
idle.

Exactness: each output row is the sum of ``value * x[col]`` over its stored entries in
column order, the order torch's COO ``sparse.mm`` adds them in; ``fastmath`` stays off, so
float rounding is IEEE's and only the order of additions can differ from torch's.

Speed: a row is summed into a buffer the kernel allocated itself, then copied out. Summed in
place into ``out[i]``, the compiler cannot rule out that ``out`` overlaps ``x`` and the
inner loop ran about 3x slower (cache-resident, measured with numba 0.68 on AVX-512).
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

# How many stored entries ahead the kernels prefetch the ``x`` row they will gather. The
# rows are random reads from a table larger than L2 (Gowalla: 70,839 x 64 float32 = 18 MB);
# without prefetching the loop waits on each one. 48 measured best (32-96 within noise;
# single-thread CPU time on the Gowalla adjacency, 2.1x faster than no prefetch).
PREFETCH_DISTANCE = 48


@intrinsic
def _prefetch(typingctx, arr, i, k):
    """Hint the CPU to fetch the cache line of ``arr[i, k]`` (2-d array; no effect on results)."""
    if not isinstance(arr, types.Array) or arr.ndim != 2:
        return None
    sig = types.void(arr, i, k)

    def codegen(context, builder, signature, args):
        arr_type, i_type, k_type = signature.args
        array = context.make_array(arr_type)(context, builder, args[0])
        index = [
            context.cast(builder, args[1], i_type, types.intp),
            context.cast(builder, args[2], k_type, types.intp),
        ]
        ptr = cgutils.get_item_pointer(context, builder, arr_type, array, index, wraparound=False)
        i32 = ir.IntType(32)
        fn_type = ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fn_type, "llvm.prefetch.p0")
        # read access, keep in all cache levels, data cache
        builder.call(fn, [ptr, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return sig, codegen


def balanced_bounds(indptr, n_blocks):
    """Row boundaries of ``n_blocks`` blocks of about equal ``rows + entries``.

    Args:
        indptr (np.ndarray): [n_rows + 1] CSR row pointers.
        n_blocks (int): wanted number of blocks (>= 1).

    Returns:
        np.ndarray: int64 [n_blocks' + 1] non-decreasing row ids from 0 to n_rows.
    """
    n_rows = len(indptr) - 1
    work = indptr.astype(np.int64) + np.arange(n_rows + 1, dtype=np.int64)
    targets = np.linspace(0, work[-1], n_blocks + 1)
    bounds = np.searchsorted(work, targets, side="left").astype(np.int64)
    bounds[0], bounds[-1] = 0, n_rows
    return np.maximum.accumulate(bounds)


@njit(nogil=True, cache=True, fastmath=False, boundscheck=False)
def spmm_blocks(b0, b1, bounds, indptr, indices, values, x, out):
    """``out[i] = sum_p values[p] * x[indices[p]]`` for the rows of blocks ``b0 .. b1 - 1``."""
    d = x.shape[1]
    nnz = len(indices)
    acc = np.empty(d, dtype=out.dtype)  # a fresh buffer: the compiler vectorises the += (see top)
    for i in range(bounds[b0], bounds[b1]):
        for k in range(d):
            acc[k] = 0
        for p in range(indptr[i], indptr[i + 1]):
            ahead = p + PREFETCH_DISTANCE
            if ahead < nnz:
                for k in range(0, d, 16):  # 16 float32 = one 64-byte cache line
                    _prefetch(x, indices[ahead], k)
            v = values[p]
            src = x[indices[p]]
            for k in range(d):
                acc[k] += v * src[k]
        row = out[i]
        for k in range(d):
            row[k] = acc[k]


@njit(nogil=True, cache=True, fastmath=False, boundscheck=False)
def spmm_combine_blocks(
    b0, b1, bounds, indptr, indices, values, x, base, base_div, out_div, out, store, product
):
    """Fused layer step: ``out[i] = (base[i] / base_div + s_i) / out_div``, ``s_i = (A x)[i]``.

    Also writes ``s_i`` to ``product[i]`` when ``store``. With it, the LightGCN layer mean
    ``(E0 + .. + EL) / (L + 1)`` is built while the products run (running sum in ``out``,
    ``out`` may be ``base``: row ``i`` is read before it is written) and its backward
    ``a <- G / (L + 1) + A^T a`` is one pass per layer -- no stacked copy of the layers.
    """
    d = x.shape[1]
    nnz = len(indices)
    acc = np.empty(d, dtype=out.dtype)
    for i in range(bounds[b0], bounds[b1]):
        for k in range(d):
            acc[k] = 0
        for p in range(indptr[i], indptr[i + 1]):
            ahead = p + PREFETCH_DISTANCE
            if ahead < nnz:
                for k in range(0, d, 16):
                    _prefetch(x, indices[ahead], k)
            v = values[p]
            src = x[indices[p]]
            for k in range(d):
                acc[k] += v * src[k]
        if store:
            prow = product[i]
            for k in range(d):
                prow[k] = acc[k]
        brow = base[i]
        row = out[i]
        for k in range(d):
            row[k] = (brow[k] / base_div + acc[k]) / out_div


@njit(nogil=True, cache=True, fastmath=False, boundscheck=False)
def spmm_rows_blocks(b0, b1, bounds, rows, indptr, indices, values, x, out):
    """:func:`spmm_blocks` for the listed rows only: ``out[rows[k]] = (A x)[rows[k]]``.

    Blocks cut the *list* (``bounds`` are positions in ``rows``); other rows of ``out`` are
    left as they are. The prefetch cursor walks the entries of the listed rows (not of the
    rows that follow in memory), ``PREFETCH_DISTANCE`` entries ahead.
    """
    d = x.shape[1]
    acc = np.empty(d, dtype=out.dtype)
    k_end = bounds[b1]
    # prefetch cursor: entry pc of listed row kc
    kc = bounds[b0]
    pc = indptr[rows[kc]] if kc < k_end else 0
    for _ in range(PREFETCH_DISTANCE):
        pc += 1
        while kc < k_end and pc >= indptr[rows[kc] + 1]:
            kc += 1
            if kc < k_end:
                pc = indptr[rows[kc]]
    for k in range(bounds[b0], k_end):
        i = rows[k]
        for c in range(d):
            acc[c] = 0
        for p in range(indptr[i], indptr[i + 1]):
            if kc < k_end:
                for c in range(0, d, 16):
                    _prefetch(x, indices[pc], c)
                pc += 1
                while kc < k_end and pc >= indptr[rows[kc] + 1]:
                    kc += 1
                    if kc < k_end:
                        pc = indptr[rows[kc]]
            v = values[p]
            src = x[indices[p]]
            for c in range(d):
                acc[c] += v * src[c]
        row = out[i]
        for c in range(d):
            row[c] = acc[c]


@njit(nogil=True, cache=True, fastmath=False, boundscheck=False)
def scatter_rows_blocks(t0, t1, out_bounds, rows, indptr, indices, values, src, out):
    """``out += A^T S`` for ``S`` non-zero only on ``rows`` (sorted): ``S[rows[k]] = src[k]``.

    Work is the stored entries of the listed rows only (a BPR batch's rows hold ~17% of
    Gowalla's entries), not the whole matrix. Task ``t`` owns output rows
    ``out_bounds[t] .. out_bounds[t + 1]`` and takes, by binary search, the part of each listed
    row that falls in them, so threads never write the same row. ``out[i]`` receives its
    terms in increasing ``rows`` order: the order a row-by-row product adds them in.
    """
    d = out.shape[1]
    m = len(rows)
    acc = np.empty(d, dtype=out.dtype)
    ahead = PREFETCH_DISTANCE // 3  # segments are short: about a row's share of one task
    for t in range(t0, t1):
        lo, hi = out_bounds[t], out_bounds[t + 1]
        next_first, next_last = _segment(rows, 0, indptr, indices, lo, hi) if m else (0, 0)
        for k in range(m):
            first, last = next_first, next_last
            if k + 1 < m:  # the next row's segment, its first output rows prefetched
                next_first, next_last = _segment(rows, k + 1, indptr, indices, lo, hi)
                for q in range(next_first, min(next_last, next_first + ahead)):
                    for c in range(0, d, 16):
                        _prefetch(out, indices[q], c)
            s = src[k]
            for p in range(first, last):
                if p + ahead < last:
                    for c in range(0, d, 16):
                        _prefetch(out, indices[p + ahead], c)
                v = values[p]
                row = out[indices[p]]
                for c in range(d):  # through a fresh buffer: vectorised (see the top)
                    acc[c] = row[c] + v * s[c]
                for c in range(d):
                    row[c] = acc[c]


@njit(nogil=True, cache=True, boundscheck=False)
def _segment(rows, k, indptr, indices, lo, hi):
    """Entries of listed row ``rows[k]`` whose column is in ``lo .. hi - 1`` (sorted columns)."""
    b = rows[k]
    start, stop = indptr[b], indptr[b + 1]
    first = start + np.searchsorted(indices[start:stop], lo)
    last = start + np.searchsorted(indices[start:stop], hi)
    return first, last


@njit(nogil=True, cache=True, fastmath=False, boundscheck=False)
def mark_neighbors(rows, indptr, indices, mask):
    """``mask[j] = 1`` for every row listed and every column of their stored entries."""
    for k in range(len(rows)):
        i = rows[k]
        mask[i] = 1
        for p in range(indptr[i], indptr[i + 1]):
            mask[indices[p]] = 1


@njit(nogil=True, cache=True, fastmath=False, boundscheck=False)
def stream_blocks(b0, b1, bounds, indptr, indices, value_bits, x, out):
    """Memory floor of one SpMM: read the CSR arrays and ``x`` once, write ``out`` once.

    The traffic :func:`spmm_blocks` would have if every row of ``x`` came from cache after
    its first read, with no arithmetic to speak of: ``out[i] = x[i] + (parity of the sum of
    row i's column ids and value bits)`` (square matrices). The values are read as their
    int32 bits (``values.view(np.int32)``) so the sum is an integer one that vectorises;
    the parity keeps the reads from being optimised away.
    """
    d = x.shape[1]
    for i in range(bounds[b0], bounds[b1]):
        s = 0
        for p in range(indptr[i], indptr[i + 1]):
            s += indices[p] + value_bits[p]
        row = out[i]
        src = x[i]
        for k in range(d):
            row[k] = src[k] + (s & 1)
