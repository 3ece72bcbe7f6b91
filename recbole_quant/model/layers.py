"""Graph layers shared by the plugin's models.

* :func:`normalized_adjacency`: the symmetric-normalised user-item bipartite adjacency
  D^-1/2 A D^-1/2 of the *training* interactions as a ``torch.sparse`` COO tensor. Built from
  ``dataset.inter_matrix(form="coo")`` directly: RecBole's own builder calls
  ``dok_matrix._update``, which new SciPy removed, and torch_sparse / PyG are not needed.
* :class:`LightGCNPropagation`: E(l+1) = Â E(l), no weights, no nonlinearity, no dropout;
  on CPU through the fast exact CSR product of :mod:`recbole_quant.sparse`.
"""

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn as nn

from recbole_quant.sparse import (
    CSRAdjacency,
    fast_propagation_enabled,
    lightgcn_layer_mean,
    lightgcn_layer_rows,
    lightgcn_rows,
    sparse_matmul,
)


def normalized_adjacency(dataset):
    """Â = D^-1/2 A D^-1/2 over users + items (no self loops), nodes 0..n_users-1 are users.

    Args:
        dataset: a RecBole dataset (its training interactions are used).

    Returns:
        torch.Tensor: sparse COO [n_users + n_items, n_users + n_items], float32. A node of
        degree 0 gets an all-zero row, not inf.
    """
    inter = dataset.inter_matrix(form="coo").astype(np.float32)
    n_users, n_items = inter.shape
    inter = inter.tocsr()
    inter.data[:] = 1.0  # repeated interactions count once
    inter = inter.tocoo()
    rows = np.concatenate([inter.row, inter.col + n_users])
    cols = np.concatenate([inter.col + n_users, inter.row])
    n = n_users + n_items
    adj = sp.coo_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n, n))
    degree = np.asarray(adj.sum(axis=1)).ravel()
    with np.errstate(divide="ignore"):
        d_inv_sqrt = np.where(degree > 0, degree ** -0.5, 0.0).astype(np.float32)
    values = d_inv_sqrt[adj.row] * adj.data * d_inv_sqrt[adj.col]
    indices = torch.from_numpy(np.vstack([adj.row, adj.col]).astype(np.int64))
    # indices are built in range above: checking them is cheap and silences torch's warning
    return torch.sparse_coo_tensor(
        indices, torch.from_numpy(values), (n, n), check_invariants=True
    ).coalesce()


class LightGCNPropagation(nn.Module):
    """LightGCN's parameter-free propagation.

    On CPU each step is :func:`recbole_quant.sparse.sparse_matmul` (an exact CSR product,
    several times faster than ``torch.sparse.mm``; same values and gradients within float32
    rounding, ``tests/test_propagation.py``); on GPU, or with ``fast_propagation: false`` in
    the config, it is ``torch.sparse.mm``.

    Args:
        norm_adj (torch.Tensor): sparse [N, N] normalised adjacency (:func:`normalized_adjacency`).
        n_layers (int): number of propagation steps L.
        config (Config, optional): read for ``fast_propagation`` (default true).
    """

    def __init__(self, norm_adj, n_layers, config=None):
        super().__init__()
        if n_layers < 0:
            raise ValueError(f"n_layers must be >= 0, got {n_layers}")
        self.norm_adj = norm_adj  # not a buffer: sparse, rebuilt from the dataset, never saved
        self.n_layers = n_layers
        self.fast = fast_propagation_enabled(config)
        self._csr = None  # CSR copy of norm_adj for the fast path, built on first use

    def _apply(self, fn, recurse=True):
        # follow .to(device) like a buffer would
        self.norm_adj = fn(self.norm_adj)
        return super()._apply(fn, recurse)

    def forward(self, ego):
        """Propagate.

        Args:
            ego (torch.Tensor): [N, d] layer-0 embeddings (users then items).

        Returns:
            list of torch.Tensor: L + 1 tensors [N, d], E(0) .. E(L).
        """
        layers = [ego]
        csr = self._fast_csr(ego)
        if csr is not None:
            for _ in range(self.n_layers):
                layers.append(sparse_matmul(csr, layers[-1]))
            return layers
        for _ in range(self.n_layers):
            layers.append(torch.sparse.mm(self.norm_adj, layers[-1]))
        return layers

    def _fast_csr(self, ego):
        """The CSR copy of ``norm_adj`` when the fast path applies to ``ego``, else None."""
        if not (self.fast and ego.device.type == "cpu" and self.n_layers > 0):
            return None
        if self._csr is None:
            self._csr = CSRAdjacency.from_torch(self.norm_adj)
        return self._csr

    def layer_mean(self, ego):
        """``mean(E(0), .., E(L))`` (LightGCN's final embeddings), [N, d].

        Equals ``torch.stack(self(ego)).mean(0)``; on the fast path the products and the mean
        are one fused op that never stores the L + 1 layers (less memory traffic per batch).
        """
        csr = self._fast_csr(ego)
        if csr is not None:
            return lightgcn_layer_mean(csr, ego, self.n_layers)
        return torch.stack(self(ego), dim=0).mean(dim=0)

    def mean_weights(self, start, stop):
        """``w`` [N] (float32) with ``w @ ego == self.layer_mean(ego)[start:stop].mean(0)``.

        The mean over a range of rows (one side of the graph) of LightGCN's final embeddings
        is a fixed linear function of ``ego``: ``w = M^T 1_[start, stop) / (stop - start)``,
        ``M = mean(I, Â, .., Â^L)``. With it a model centres a batch's rows without
        propagating the whole table; ``w`` is computed once, in float64.
        """
        n = self.norm_adj.shape[0]
        if not 0 <= start < stop <= n:
            raise ValueError(f"need 0 <= start < stop <= {n}, got {start}, {stop}")
        adj_t = self.norm_adj.detach().t().coalesce().double()
        layer = torch.zeros(n, 1, dtype=torch.float64, device=adj_t.device)
        layer[start:stop] = 1.0 / (stop - start)
        total = layer.clone()
        for _ in range(self.n_layers):
            layer = torch.sparse.mm(adj_t, layer)
            total += layer
        return (total[:, 0] / (self.n_layers + 1)).float()

    def layer_mean_rows(self, ego, rows):
        """``self.layer_mean(ego)[rows]`` for sorted distinct ``rows`` (``torch.unique``).

        For training: BPR reads only the batch's users and items, and on the fast path only
        what those rows need is computed (:func:`recbole_quant.sparse.lightgcn_rows`).
        """
        csr = self._fast_csr(ego)
        if csr is not None:
            return lightgcn_rows(csr, ego, self.n_layers, rows)
        return self.layer_mean(ego)[rows]

    def layers_rows(self, ego, rows):
        """``torch.stack(self(ego), dim=1)[rows]``, [len(rows), L + 1, d], for sorted distinct
        ``rows``; on the fast path only what those rows need is computed
        (:func:`recbole_quant.sparse.lightgcn_layer_rows`)."""
        csr = self._fast_csr(ego)
        if csr is not None:
            return lightgcn_layer_rows(csr, ego, self.n_layers, rows)
        return torch.stack(self(ego), dim=1)[rows]


# ---------------------------------------------------------------------------------------
# GraphSAGE on the user-item bipartite graph (HashGNN's encoder)
# ---------------------------------------------------------------------------------------
def bipartite_csr(dataset):
    """CSR neighbour lists of the *training* graph, both directions.

    Repeated interactions count once. Users and items keep RecBole's internal ids (so the
    padding user 0 and padding item 0 have no neighbours).

    Args:
        dataset: a RecBole dataset (its training interactions are used).

    Returns:
        tuple: ``(user_indptr [n_users + 1], user_indices [nnz], item_indptr [n_items + 1],
        item_indices [nnz])``, int64 tensors; ``user_indices`` holds item ids,
        ``item_indices`` user ids, each list sorted.
    """
    inter = dataset.inter_matrix(form="coo").astype(np.float32).tocsr()
    inter.sum_duplicates()
    inter.sort_indices()
    by_item = inter.T.tocsr()
    by_item.sort_indices()

    def as_long(a):
        return torch.from_numpy(np.asarray(a, dtype=np.int64))

    return (
        as_long(inter.indptr),
        as_long(inter.indices),
        as_long(by_item.indptr),
        as_long(by_item.indices),
    )


class NeighborSampler(nn.Module):
    """Fixed-size uniform neighbour sampling with replacement, vectorised over nodes.

    For a node ``v`` of degree ``deg(v) > 0`` the ``j``-th sample is
    ``indices[indptr[v] + floor(r_j * deg(v))]`` with ``r_j ~ U[0, 1)``: one ``torch.rand``
    call for the whole batch, no Python loop per node. A node of degree 0 -- and the
    sentinel itself, id ``n_nodes`` -- gets the *sentinel* neighbour id ``n_neighbors`` (one
    past the last neighbour id) in every slot; callers give sentinels an all-zero feature
    row, so such a node's neighbour mean is 0.

    Args:
        indptr (torch.Tensor): [n_nodes + 1] int64 CSR row pointers.
        indices (torch.Tensor): [nnz] int64 neighbour ids in ``0 .. n_neighbors - 1``.
        n_neighbors (int): number of nodes on the neighbour side (= the sentinel id).

    The CSR is kept in non-persistent buffers: it follows ``.to(device)`` and is rebuilt
    from the dataset, never saved in checkpoints.
    """

    def __init__(self, indptr, indices, n_neighbors):
        super().__init__()
        indptr = torch.as_tensor(indptr, dtype=torch.long)
        indices = torch.as_tensor(indices, dtype=torch.long)
        if indptr.dim() != 1 or indptr.numel() < 1 or int(indptr[-1]) != indices.numel():
            raise ValueError("indptr must be 1-d with indptr[-1] == len(indices)")
        self.n_neighbors = int(n_neighbors)
        # one extra node (the sentinel) with degree 0, so sentinel ids can be sampled from
        indptr = torch.cat([indptr, indptr[-1:]])
        self.register_buffer("indptr", indptr, persistent=False)
        self.register_buffer("indices", indices, persistent=False)
        self.register_buffer("degree", indptr[1:] - indptr[:-1], persistent=False)

    @property
    def n_nodes(self):
        """Number of real nodes (the sentinel ``n_nodes`` is not counted)."""
        return self.degree.numel() - 1

    def sample(self, nodes, k, generator=None):
        """Draw ``k`` neighbours of each node, uniformly with replacement.

        Args:
            nodes (torch.Tensor): [N] int64 node ids in ``0 .. n_nodes`` (``n_nodes`` = sentinel).
            k (int): neighbours per node (>= 1).
            generator (torch.Generator, optional): source of randomness (a seeded one gives
                the same sample every time); default the global RNG.

        Returns:
            torch.Tensor: [N, k] int64 neighbour ids; the sentinel ``n_neighbors`` for nodes
            of degree 0.
        """
        nodes = nodes.reshape(-1)
        degree = self.degree[nodes].unsqueeze(1)  # [N, 1]
        draw_device = generator.device if generator is not None else nodes.device
        draw = torch.rand(nodes.numel(), int(k), generator=generator, device=draw_device)
        # floor(r * deg) < deg mathematically; the min guards float rounding for huge degrees
        offset = torch.minimum((draw.to(nodes.device) * degree).long(), (degree - 1).clamp_min(0))
        if self.indices.numel() == 0:
            return torch.full_like(offset, self.n_neighbors)
        position = (self.indptr[nodes].unsqueeze(1) + offset).clamp_max(self.indices.numel() - 1)
        neighbors = self.indices[position]
        return torch.where(degree > 0, neighbors, torch.full_like(neighbors, self.n_neighbors))

    def mean_matrix(self):
        """Row-normalised adjacency D^-1 A as a sparse COO tensor [n_nodes, n_neighbors].

        ``mean_matrix() @ X`` is the mean over *all* neighbours (the expectation of the sampled
        mean); a node of degree 0 has an empty row, i.e. a zero mean, as in :meth:`sample`.
        """
        degree = self.degree[:-1]
        rows = torch.repeat_interleave(torch.arange(self.n_nodes, device=degree.device), degree)
        values = 1.0 / degree[rows].to(torch.float32)
        return torch.sparse_coo_tensor(
            torch.stack([rows, self.indices]),
            values,
            (self.n_nodes, self.n_neighbors),
            check_invariants=True,
        ).coalesce()


class SageMeanAggregator(nn.Module):
    """GraphSAGE-mean layer ``h' = LeakyReLU(W [h_self || mean(h_nbrs)])``, no bias.

    Args:
        in_dim (int): size of ``h_self`` and of the neighbour mean.
        out_dim (int): size of ``h'``.
        negative_slope (float): LeakyReLU slope (HashGNN: 0.2).
    """

    def __init__(self, in_dim, out_dim, negative_slope=0.2):
        super().__init__()
        self.linear = nn.Linear(2 * in_dim, out_dim, bias=False)
        self.act = nn.LeakyReLU(negative_slope)

    def forward(self, h_self, h_neighbors_mean):
        """Args: ``h_self`` [N, in_dim], ``h_neighbors_mean`` [N, in_dim]. Returns [N, out_dim]."""
        return self.act(self.linear(torch.cat([h_self, h_neighbors_mean], dim=-1)))


class SampledTree:
    """The sampled computation tree of a :class:`BipartiteSage` tower.

    Attributes:
        nodes (list of torch.Tensor): ``L + 1`` id tensors; ``nodes[0]`` are the targets as
            given, ``nodes[l]`` (l >= 1) the *distinct* ids reached at hop ``l`` (sorted; may
            contain the sentinel id of that type).
        neighbors (list of torch.Tensor): ``L`` index tensors; ``neighbors[l]`` is
            [len(nodes[l]), f_{l+1}], positions in ``nodes[l + 1]`` of the sampled neighbours.
        types (list of int): node type of each level (0 user, 1 item).
    """

    def __init__(self, nodes, neighbors, types):
        self.nodes, self.neighbors, self.types = nodes, neighbors, types


class BipartiteSage(nn.Module):
    """A GraphSAGE-mean tower over the user-item graph (node types alternate per hop).

    Targets are of one type (0 = user, 1 = item); hop ``l`` reaches nodes of type
    ``(start + l) % 2``. With fanouts ``[f_1, .., f_L]`` the tower has ``L`` aggregator
    layers (own weights per layer, shared by both node types within a layer): layer ``k``
    updates levels ``0 .. L-k`` of the sampled tree, level 0 after layer ``L`` is the output.

    Sampling is per distinct node and hop (as PyG's ``NeighborLoader``): every distinct node
    reached at hop ``l`` draws its ``f_{l+1}`` neighbours once, so the cost is bounded by the
    graph size, not by ``N * f_1 * .. * f_L``.

    Args:
        start_type (int): 0 if the targets are users, 1 if items.
        fanouts (list of int): neighbours sampled per node at each hop.
        dim (int): feature size (input = output).
        negative_slope (float): LeakyReLU slope.
    """

    def __init__(self, start_type, fanouts, dim, negative_slope=0.2):
        super().__init__()
        if start_type not in (0, 1):
            raise ValueError(f"start_type must be 0 (users) or 1 (items), got {start_type!r}")
        if not fanouts or any(int(f) < 1 for f in fanouts):
            raise ValueError(f"fanouts must be a non-empty list of ints >= 1, got {fanouts!r}")
        self.start_type = start_type
        self.fanouts = [int(f) for f in fanouts]
        self.layers = nn.ModuleList(
            SageMeanAggregator(dim, dim, negative_slope) for _ in self.fanouts
        )

    def level_type(self, level):
        """Node type (0 user, 1 item) of tree level ``level``."""
        return (self.start_type + level) % 2

    def sample_tree(self, targets, samplers, generator=None):
        """Sample the computation tree of ``targets``.

        Args:
            targets (torch.Tensor): [N] ids of the start type.
            samplers (sequence): ``samplers[t]`` samples neighbours of nodes of type ``t``
                (:class:`NeighborSampler`; users -> items is ``samplers[0]``).
            generator (torch.Generator, optional): for a reproducible sample.

        Returns:
            SampledTree
        """
        nodes, neighbors = [targets.reshape(-1)], []
        for level, fanout in enumerate(self.fanouts):
            sampled = samplers[self.level_type(level)].sample(nodes[-1], fanout, generator)
            distinct, position = torch.unique(sampled, return_inverse=True)
            nodes.append(distinct)
            neighbors.append(position)
        types = [self.level_type(level) for level in range(len(nodes))]
        return SampledTree(nodes, neighbors, types)

    def forward(self, tree, level_features):
        """Aggregate a sampled tree bottom-up.

        Args:
            tree (SampledTree): from :meth:`sample_tree`.
            level_features (list of torch.Tensor): level ``l`` features [len(tree.nodes[l]),
                dim] (zero rows for sentinel ids).

        Returns:
            torch.Tensor: [N, dim] target representations.
        """
        h = list(level_features)
        for k, layer in enumerate(self.layers):
            new = []
            for level in range(len(self.fanouts) - k):
                index = tree.neighbors[level]
                child = h[level + 1].index_select(0, index.reshape(-1))
                mean = child.view(index.shape[0], index.shape[1], -1).mean(dim=1)
                new.append(layer(h[level], mean))
            h = new
        return h[0]

    def full(self, features, mean_matrices):
        """Deterministic inference over *all* neighbours, for every node of the start type.

        Each sampled mean is replaced by the mean over all neighbours (``D^-1 A h``), layer by
        layer over the whole graph: no randomness, the same result every run.

        Args:
            features (list of torch.Tensor): ``[X_users [n_users, dim], X_items [n_items, dim]]``.
            mean_matrices (list of torch.Tensor): ``[M_ui, M_iu]`` from
                :meth:`NeighborSampler.mean_matrix` (users -> items, items -> users).

        Returns:
            torch.Tensor: [n_nodes of the start type, dim].
        """
        h = list(features)
        n_layers = len(self.fanouts)
        for k, layer in enumerate(self.layers):
            # node types still needed after this layer: those of levels 0 .. L-k-1
            needed = {self.level_type(level) for level in range(n_layers - k)}
            new = [None, None]
            for t in needed:
                new[t] = layer(h[t], torch.sparse.mm(mean_matrices[t], h[1 - t]))
            h = new
        return h[self.start_type]
