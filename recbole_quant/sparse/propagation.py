"""Sparse-times-dense products for graph propagation on CPU, with autograd.

:class:`CSRAdjacency` holds a square sparse matrix (the normalised adjacency Â) as CSR,
built once; :func:`sparse_matmul` computes ``Â @ x`` with the numba kernels of
:mod:`recbole_quant.sparse.kernels` and back-propagates ``Â^T @ grad``. It is the same
mathematics as ``torch.sparse.mm(Â, x)`` (same terms, added in the same order per row),
only faster on CPU:

* CSR rows split into blocks of equal work and run on torch's thread count
  (``torch.get_num_threads()``, through :func:`recbole_quant.packed.threads.run_ranges`),
  where torch's COO product re-derives the row structure on every call;
* the ``x`` rows a row gathers are prefetched a few dozen entries ahead;
* Â is symmetric, so the backward product is the forward one (no transpose is stored).
"""
from __future__ import annotations

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from recbole_quant.packed.threads import run_ranges
from recbole_quant.sparse import kernels

__all__ = [
    "CSRAdjacency", "sparse_matmul", "lightgcn_layer_mean", "lightgcn_rows", "lightgcn_layer_rows",
]

# Blocks per product: enough for run_ranges to hand each of a few threads several pieces
# of equal work; the cut is computed once per matrix.
_BLOCKS = 256
# lightgcn_rows computes a layer on all rows once more than this fraction is needed
# (a 1-hop neighbourhood of a Gowalla batch is ~85% of the nodes)
_FULL_PRODUCT_ROWS = 0.5


class CSRAdjacency:
    """A square sparse matrix as CSR (int64 row pointers, int32 columns), for :func:`sparse_matmul`.

    Args:
        indptr, indices, values (np.ndarray): CSR arrays, columns sorted within each row and
            no duplicates (what :meth:`from_torch` produces).
        n (int): matrix size.

    Attributes:
        symmetric (bool): whether the matrix equals its transpose exactly (then the backward
            product reuses it; otherwise the transpose is built once, on first backward).
    """

    def __init__(self, indptr, indices, values, n):
        self.n = int(n)
        self.indptr = np.ascontiguousarray(indptr, dtype=np.int64)
        self.indices = np.ascontiguousarray(indices, dtype=np.int32)
        self._values = {np.dtype(np.float32): np.ascontiguousarray(values, dtype=np.float32)}
        if self.indptr.shape != (self.n + 1,) or self.indptr[-1] != len(self.indices):
            raise ValueError("CSR arrays do not describe a square matrix of size n")
        if len(self.indices) and (self.indices.min() < 0 or self.indices.max() >= self.n):
            raise ValueError("CSR column ids out of range")
        self.bounds = kernels.balanced_bounds(self.indptr, _BLOCKS)
        self.symmetric = self._is_symmetric()
        self._transpose = self if self.symmetric else None
        self._scratch = {}

    @classmethod
    def from_torch(cls, matrix):
        """From a square ``torch.sparse_coo_tensor`` (coalesced here if it is not)."""
        if not matrix.is_sparse or matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError("expected a square 2-d torch sparse COO tensor")
        matrix = matrix.detach().to("cpu").coalesce()  # coalesced: sorted by (row, col)
        rows, cols = matrix.indices().numpy()
        n = matrix.shape[0]
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
        values = matrix.values().numpy()
        return cls(indptr, cols, values.astype(np.float32, copy=False), n)

    @property
    def nnz(self):
        """Number of stored entries."""
        return len(self.indices)

    def values(self, dtype):
        """The stored values in ``dtype`` (a float64 copy is made once, for gradcheck)."""
        dtype = np.dtype(dtype)
        if dtype not in self._values:
            self._values[dtype] = self._values[np.dtype(np.float32)].astype(dtype)
        return self._values[dtype]

    def _is_symmetric(self):
        import scipy.sparse as sp

        csr = sp.csr_matrix((self._values[np.dtype(np.float32)], self.indices, self.indptr),
                            shape=(self.n, self.n))
        return (csr != csr.T).nnz == 0

    def transpose(self):
        """The transpose (``self`` when symmetric), built once."""
        if self._transpose is None:
            import scipy.sparse as sp

            csr = sp.csr_matrix(
                (self._values[np.dtype(np.float32)], self.indices, self.indptr),
                shape=(self.n, self.n),
            )
            t = csr.T.tocsr()
            t.sort_indices()
            self._transpose = CSRAdjacency(t.indptr, t.indices, t.data, self.n)
        return self._transpose

    def scratch(self, slot, like):
        """A reusable buffer with the shape and dtype of ``like``, kept between calls.

        Layers and intermediate gradients live here, never in a returned tensor: a fresh
        18 MB tensor per layer and batch (Gowalla) costs its page faults every time.
        The buffers make one matrix unsafe to use from several threads at once.
        """
        t = self._scratch.get(slot)
        if t is None or t.shape != like.shape or t.dtype != like.dtype:
            t = torch.empty(like.shape, dtype=like.dtype)
            self._scratch[slot] = t
        return t

    def matmul(self, x, out=None):
        """``self @ x`` for a CPU float tensor ``x`` [n, d] (no autograd; see :func:`sparse_matmul`).

        Args:
            x (torch.Tensor): [n, d] float32 or float64 on CPU.
            out (torch.Tensor, optional): contiguous [n, d] result buffer, not ``x``.
        """
        if x.dim() != 2 or x.shape[0] != self.n:
            raise ValueError(f"expected x of shape [{self.n}, d], got {tuple(x.shape)}")
        x = x.detach().contiguous()
        if out is None:
            out = torch.empty_like(x, memory_format=torch.contiguous_format)
        if x.numel() == 0:
            return out.zero_()
        xa = x.numpy()
        run_ranges(
            kernels.spmm_blocks, len(self.bounds) - 1,
            self.bounds, self.indptr, self.indices, self.values(xa.dtype), xa, out.numpy(),
        )
        return out

    def neighborhood(self, rows):
        """Sorted int64 ids of ``rows`` and all their neighbours (columns of their entries)."""
        mask = np.zeros(self.n, dtype=np.uint8)
        kernels.mark_neighbors(rows, self.indptr, self.indices, mask)
        return np.flatnonzero(mask).astype(np.int64)

    def matmul_rows(self, x, rows, out):
        """``out[rows] = (self @ x)[rows]`` (``rows``: int64 array); other rows untouched."""
        work = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(self.indptr[rows + 1] - self.indptr[rows] + 1, out=work[1:])
        bounds = kernels.balanced_bounds(work, 4 * torch.get_num_threads())
        xa = x.numpy()
        run_ranges(
            kernels.spmm_rows_blocks, len(bounds) - 1,
            bounds, rows, self.indptr, self.indices, self.values(xa.dtype), xa, out.numpy(),
        )
        return out

    def scatter_transpose(self, rows, src, out):
        """``out += self^T @ S`` with ``S`` zero but for ``S[rows[k]] = src[k]`` (``rows`` sorted)."""
        # few tasks: each one binary-searches every listed row, and cuts it into shorter runs
        tasks = kernels.balanced_bounds(self.indptr, 2 * torch.get_num_threads())
        sa = src.numpy()
        run_ranges(
            kernels.scatter_rows_blocks, len(tasks) - 1,
            tasks, rows, self.indptr, self.indices, self.values(sa.dtype), sa, out.numpy(),
        )
        return out

    def combine(self, x, base, base_div, out_div, out, product=None):
        """``out = (base / base_div + self @ x) / out_div`` (and ``product = self @ x`` if given).

        All [n, d] contiguous CPU tensors of one dtype; ``out`` may be ``base``.
        """
        xa = x.numpy()
        store = product is not None
        run_ranges(
            kernels.spmm_combine_blocks, len(self.bounds) - 1,
            self.bounds, self.indptr, self.indices, self.values(xa.dtype), xa, base.numpy(),
            float(base_div), float(out_div), out.numpy(), store,
            (product if store else out).numpy(),
        )
        return out


class _SparseMatmul(torch.autograd.Function):
    """``adj @ x`` with ``grad_x = adj^T @ grad``; ``adj`` is a constant (no gradient)."""

    @staticmethod
    def forward(ctx, x, adj):
        ctx.adj = adj
        return adj.matmul(x)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        return ctx.adj.transpose().matmul(grad), None


def sparse_matmul(adj, x):
    """``adj @ x`` with autograd, equal to ``torch.sparse.mm`` within float rounding.

    Args:
        adj (CSRAdjacency): the matrix.
        x (torch.Tensor): [n, d] float32 / float64 CPU tensor.

    Returns:
        torch.Tensor: [n, d], same dtype as ``x``.
    """
    if x.device.type != "cpu":
        raise ValueError("sparse_matmul runs on CPU tensors; use torch.sparse.mm on GPU")
    if x.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"sparse_matmul needs float32 or float64, got {x.dtype}")
    return _SparseMatmul.apply(x, adj)


class _LightGCNLayerMean(torch.autograd.Function):
    """``(E0 + A E0 + .. + A^L E0) / (L + 1)``; backward by Horner, ``a <- G/(L+1) + A^T a``.

    Nothing is saved for the backward but the matrix: the gradient of a linear map.
    """

    @staticmethod
    def forward(ctx, ego, adj, n_layers):
        ctx.adj, ctx.n_layers = adj, n_layers
        ego = ego.detach().contiguous()
        total = ego.clone()  # running sum E0 + .. + El, then the mean
        layer = ego
        for step in range(1, n_layers + 1):
            if step < n_layers:
                product = adj.scratch(step % 2, ego)  # never the buffer being read
                adj.combine(layer, total, 1, 1, total, product=product)
                layer = product
            else:  # the last layer is only needed inside the mean
                adj.combine(layer, total, 1, n_layers + 1, total)
        return total

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        adj, n_layers = ctx.adj.transpose(), ctx.n_layers
        scaled = grad.contiguous() / (n_layers + 1)  # what the mean hands each layer
        a = scaled
        for step in range(n_layers):
            # intermediate steps in scratch, the returned gradient in a fresh tensor
            out = torch.empty_like(scaled) if step == n_layers - 1 else adj.scratch(step % 2, scaled)
            adj.combine(a, scaled, 1, 1, out)
            a = out
        return a, None, None


def lightgcn_layer_mean(adj, ego, n_layers):
    """LightGCN's final embeddings ``mean(E0, A E0, .., A^L E0)`` in one fused autograd op.

    Equal to ``torch.stack([E0, .., EL]).mean(0)`` with ``El = torch.sparse.mm(A, El-1)``
    within float rounding, without materialising the stacked layers (forward or backward).

    Args:
        adj (CSRAdjacency): the normalised adjacency.
        ego (torch.Tensor): [n, d] float32 / float64 CPU tensor, E0.
        n_layers (int): L >= 0.
    """
    if ego.device.type != "cpu" or ego.dtype not in (torch.float32, torch.float64):
        raise ValueError("lightgcn_layer_mean needs a float32 / float64 CPU tensor")
    if ego.dim() != 2 or ego.shape[0] != adj.n:
        raise ValueError(f"expected ego of shape [{adj.n}, d], got {tuple(ego.shape)}")
    if n_layers == 0:
        return ego
    return _LightGCNLayerMean.apply(ego, adj, int(n_layers))


def _layers_where_needed(adj, ego, n_layers, rows_np):
    """Yield ``E_1 .. E_L`` (scratch buffers, valid until the next step), ``E_l`` exact on the
    ``(L - l)``-hop neighbourhood of ``rows_np`` at least: all that rows ``R`` of any layer
    need."""
    # needed[k]: rows where E_(L-k) is needed; needed[0] = R
    needed = [rows_np]
    for _ in range(n_layers - 1):
        needed.append(adj.neighborhood(needed[-1]))
    layer = ego
    for step in range(1, n_layers + 1):
        out = adj.scratch(step % 2, ego)  # never the buffer being read
        need = needed[n_layers - step]
        if len(need) > _FULL_PRODUCT_ROWS * adj.n:
            adj.matmul(layer, out=out)  # cheaper than walking a list of most rows
        else:
            adj.matmul_rows(layer, need, out)
        yield out
        layer = out


def _rows_gradient(adj, n_layers, rows_np, upstream_of, dtype):
    """Gradient w.r.t. ``E0`` of ``sum_l <S_l, E_l[R]>`` (``E_l = A^l E0``, ``n_layers >= 1``).

    ``upstream_of(l)`` is ``S_l`` [len(R), d], the upstream gradient of layer ``l`` at the rows
    ``R`` (zero elsewhere). Horner from the last layer, ``a <- S_l + A^T a``: the first step
    is a scatter over R's entries, the following ones full products. Returns a fresh tensor.
    """
    last = np.ascontiguousarray(upstream_of(n_layers))
    full = torch.empty((), dtype=dtype).expand(adj.n, last.shape[1])
    # a = S_(L-1) + A^T S_L (a scatter over R's entries)
    a = adj.scratch(2, full) if n_layers > 1 else torch.empty(full.shape, dtype=dtype)
    a.numpy().fill(0)
    adj.scatter_transpose(rows_np, torch.from_numpy(last), a)
    a.numpy()[rows_np] += upstream_of(n_layers - 1)  # rows are distinct: exact
    transposed = adj.transpose()
    for level in range(n_layers - 2, -1, -1):  # a <- S_level + A^T a
        out = torch.empty_like(a) if level == 0 else adj.scratch(3 + level % 2, a)
        transposed.matmul(a, out=out)
        out.numpy()[rows_np] += upstream_of(level)
        a = out
    return a


class _LightGCNRows(torch.autograd.Function):
    """Rows ``R`` of LightGCN's layer mean, computing each layer only where it is needed.

    Forward: ``E_l`` is needed on the ``(L - l)``-hop neighbourhood of ``R`` only (``E_L`` on
    ``R`` itself). Backward: the upstream gradient is zero off ``R``, so the first Horner step
    is a scatter over ``R``'s entries (:func:`~recbole_quant.sparse.kernels.scatter_rows_blocks`);
    the following ones are full products.

    The small per-batch steps (picking rows, the mean, adding rows) are single-threaded NumPy
    on purpose: each parallel torch op waits for its whole thread team, and on a busy machine
    a 0.2 ms ``index_add_`` took ~100 ms with 2 threads (measured while 3 other engineers
    ran jobs on the same 2 cores).
    """

    @staticmethod
    def forward(ctx, ego, adj, n_layers, rows):
        ctx.adj, ctx.n_layers = adj, n_layers
        rows_np = rows.numpy().astype(np.int64, copy=False)
        ctx.rows_np = rows_np
        ego = ego.detach().contiguous()
        total = ego.numpy()[rows_np]  # running sum of the layers at R, in order E0, E1, ..
        for layer in _layers_where_needed(adj, ego, n_layers, rows_np):
            total += layer.numpy()[rows_np]
        total /= total.dtype.type(n_layers + 1)
        return torch.from_numpy(total)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        upstream = grad.detach().contiguous().numpy()
        # what the mean hands each layer: the same S for every layer
        scaled = upstream / upstream.dtype.type(ctx.n_layers + 1)
        a = _rows_gradient(ctx.adj, ctx.n_layers, ctx.rows_np, lambda level: scaled, grad.dtype)
        return a, None, None, None


def _checked_rows(adj, ego, rows, name):
    """``rows`` as a contiguous CPU int64 tensor, after checking ``ego`` and ``rows``."""
    if ego.device.type != "cpu" or ego.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"{name} needs a float32 / float64 CPU tensor")
    if ego.dim() != 2 or ego.shape[0] != adj.n:
        raise ValueError(f"expected ego of shape [{adj.n}, d], got {tuple(ego.shape)}")
    rows = rows.to("cpu", torch.int64).contiguous()
    if rows.numel() and (bool((rows[1:] <= rows[:-1]).any()) or rows[0] < 0 or rows[-1] >= adj.n):
        raise ValueError("rows must be sorted, distinct and in range (torch.unique)")
    return rows


def lightgcn_rows(adj, ego, n_layers, rows):
    """``lightgcn_layer_mean(adj, ego, n_layers)[rows]``, computing only what those rows need.

    For a training batch: BPR reads the final embeddings of the batch's users and items only.
    Same values and gradient as indexing the full mean, within float rounding.

    Args:
        adj (CSRAdjacency): the normalised adjacency.
        ego (torch.Tensor): [n, d] float32 / float64 CPU tensor, E0.
        n_layers (int): L >= 0.
        rows (torch.Tensor): sorted distinct int64 row ids (``torch.unique`` of the batch's nodes).

    Returns:
        torch.Tensor: [len(rows), d].
    """
    rows = _checked_rows(adj, ego, rows, "lightgcn_rows")
    if n_layers == 0:
        return ego[rows]
    return _LightGCNRows.apply(ego, adj, int(n_layers), rows)


class _LightGCNLayerRows(torch.autograd.Function):
    """Rows ``R`` of every layer ``E0 .. EL``, [len(R), L + 1, d], each layer computed only
    where ``R`` needs it (as :class:`_LightGCNRows`).

    Backward by Horner from the last layer, ``a <- S_l + A^T a`` with ``S_l`` the upstream
    gradient of layer ``l`` (zero off ``R``): the first step is a scatter over ``R``'s entries,
    the following ones full products.
    """

    @staticmethod
    def forward(ctx, ego, adj, n_layers, rows):
        ctx.adj, ctx.n_layers = adj, n_layers
        rows_np = rows.numpy().astype(np.int64, copy=False)
        ctx.rows_np = rows_np
        ego = ego.detach().contiguous()
        out = np.empty((len(rows_np), n_layers + 1, ego.shape[1]), dtype=ego.numpy().dtype)
        out[:, 0] = ego.numpy()[rows_np]
        for step, layer in enumerate(_layers_where_needed(adj, ego, n_layers, rows_np), 1):
            out[:, step] = layer.numpy()[rows_np]
        return torch.from_numpy(out)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        upstream = grad.detach().contiguous().numpy()  # [R, L + 1, d]
        a = _rows_gradient(
            ctx.adj, ctx.n_layers, ctx.rows_np, lambda level: upstream[:, level], grad.dtype
        )
        return a, None, None, None


def lightgcn_layer_rows(adj, ego, n_layers, rows):
    """``torch.stack([E0, .., EL], dim=1)[rows]``, computing only what those rows need.

    For models that read every layer of a batch's nodes (L2Q-GCN binarises each layer).
    Same values and gradient as indexing the stacked full layers, within float rounding.

    Args:
        adj (CSRAdjacency): the normalised adjacency.
        ego (torch.Tensor): [n, d] float32 / float64 CPU tensor, E0.
        n_layers (int): L >= 0.
        rows (torch.Tensor): sorted distinct int64 row ids (``torch.unique`` of the batch's nodes).

    Returns:
        torch.Tensor: [len(rows), L + 1, d].
    """
    rows = _checked_rows(adj, ego, rows, "lightgcn_layer_rows")
    if n_layers == 0:
        return ego[rows].unsqueeze(1)
    return _LightGCNLayerRows.apply(ego, adj, int(n_layers), rows)
