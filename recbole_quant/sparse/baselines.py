"""Switch the fast CSR propagation into RecBole's own LightGCN and NGCF.

RecBole's models call ``torch.sparse.mm(self.norm_adj_matrix, E)`` inside their ``forward``
(LightGCN) or their ``BiGNNLayer`` (NGCF). :func:`apply_fast_propagation` replaces that
product, on the model *instance*, by the CSR kernels of :mod:`recbole_quant.sparse` over a CSR
copy of the model's own ``norm_adj_matrix`` (RecBole's values, its 1e-7 degree epsilon
included):

* LightGCN: ``forward`` (evaluation) computes the layer mean with
  :func:`~recbole_quant.sparse.lightgcn_layer_mean`; ``calculate_loss`` (training) gets the
  batch's final embeddings from :func:`~recbole_quant.sparse.lightgcn_rows`, which computes
  only the rows BPR reads. Both are RecBole 1.2.1's code line for line otherwise.
* NGCF: each ``BiGNNLayer``'s product is :func:`~recbole_quant.sparse.sparse_matmul`; its
  weights, activations, dropout and losses stay RecBole's.

Same values and gradients within float32 rounding (``tests/test_propagation.py``), so a
baseline trained with the switch learns the same function as without it, only faster, and
comparisons with the plugin's models stay fair. Parameters, state dicts and checkpoints are
unchanged; the switch is not saved.

Off (the model is left untouched, the function returns False) when ``fast_propagation`` is
false, on GPU, for any other model, and for NGCF with ``node_dropout`` > 0 (its adjacency is
re-sampled every forward pass, so there is no fixed matrix to convert).
"""
from __future__ import annotations

import types

import torch

from recbole_quant.sparse import (
    CSRAdjacency,
    fast_propagation_enabled,
    lightgcn_layer_mean,
    lightgcn_rows,
    sparse_matmul,
)

__all__ = ["apply_fast_propagation"]


def apply_fast_propagation(config, model):
    """Make a RecBole LightGCN / NGCF instance propagate with the fast CSR product.

    Args:
        config: the run's Config (``fast_propagation``, default true).
        model: a constructed RecBole model.

    Returns:
        bool: True if the model now uses the fast path.
    """
    if not fast_propagation_enabled(config):
        return False
    adjacency = getattr(model, "norm_adj_matrix", None)
    if not isinstance(adjacency, torch.Tensor) or adjacency.device.type != "cpu":
        return False
    cls = _recbole_class(model)
    if cls == "LightGCN":
        csr = CSRAdjacency.from_torch(adjacency)
        model.forward = types.MethodType(_lightgcn_forward(csr), model)
        model.calculate_loss = types.MethodType(_lightgcn_calculate_loss(csr), model)
        return True
    if cls == "NGCF" and not float(model.node_dropout) > 0:
        csr = CSRAdjacency.from_torch(adjacency)
        for layer in model.GNNlayers:
            layer.forward = types.MethodType(_bignn_forward(csr, adjacency), layer)
        return True
    return False


def _recbole_class(model):
    """``"LightGCN"`` / ``"NGCF"`` for RecBole's own classes (not subclasses), else None."""
    from recbole.model.general_recommender.lightgcn import LightGCN
    from recbole.model.general_recommender.ngcf import NGCF

    if type(model) is LightGCN:
        return "LightGCN"
    if type(model) is NGCF:
        return "NGCF"
    return None


def _lightgcn_forward(csr):
    """RecBole 1.2.1's ``LightGCN.forward``, its products and layer mean fused (:func:`lightgcn_layer_mean`)."""

    def forward(self):
        all_embeddings = self.get_ego_embeddings()
        if all_embeddings.device.type == "cpu":
            # mean over E0 .. EL, fused with the products (RecBole: stack, then mean)
            lightgcn_all_embeddings = lightgcn_layer_mean(csr, all_embeddings, self.n_layers)
        else:  # moved to GPU after the switch: RecBole's own code
            embeddings_list = [all_embeddings]
            for _ in range(self.n_layers):
                all_embeddings = torch.sparse.mm(self.norm_adj_matrix, all_embeddings)
                embeddings_list.append(all_embeddings)
            lightgcn_all_embeddings = torch.stack(embeddings_list, dim=1).mean(dim=1)
        return torch.split(lightgcn_all_embeddings, [self.n_users, self.n_items])

    return forward


def _lightgcn_calculate_loss(csr):
    """RecBole 1.2.1's ``LightGCN.calculate_loss``, the batch's final embeddings from
    :func:`lightgcn_rows` (only the rows BPR reads) instead of indexing the full tables.
    """
    from recbole.model.general_recommender.lightgcn import LightGCN

    def calculate_loss(self, interaction):
        ego = self.get_ego_embeddings()
        if ego.device.type != "cpu":
            return LightGCN.calculate_loss(self, interaction)
        # clear the storage variable when training
        if self.restore_user_e is not None or self.restore_item_e is not None:
            self.restore_user_e, self.restore_item_e = None, None

        user = interaction[self.USER_ID]
        pos_item = interaction[self.ITEM_ID]
        neg_item = interaction[self.NEG_ITEM_ID]

        nodes = torch.cat([user, pos_item + self.n_users, neg_item + self.n_users])
        rows, position = torch.unique(nodes, return_inverse=True)
        final = lightgcn_rows(csr, ego, self.n_layers, rows)
        u_embeddings, pos_embeddings, neg_embeddings = torch.split(
            final[position], [len(user), len(pos_item), len(neg_item)]
        )

        # calculate BPR Loss
        pos_scores = torch.mul(u_embeddings, pos_embeddings).sum(dim=1)
        neg_scores = torch.mul(u_embeddings, neg_embeddings).sum(dim=1)
        mf_loss = self.mf_loss(pos_scores, neg_scores)

        # calculate regularization Loss
        u_ego_embeddings = self.user_embedding(user)
        pos_ego_embeddings = self.item_embedding(pos_item)
        neg_ego_embeddings = self.item_embedding(neg_item)

        reg_loss = self.reg_loss(
            u_ego_embeddings,
            pos_ego_embeddings,
            neg_ego_embeddings,
            require_pow=self.require_pow,
        )

        loss = mf_loss + self.reg_weight * reg_loss

        return loss

    return calculate_loss


def _bignn_forward(csr, adjacency):
    """RecBole 1.2.1's ``BiGNNLayer.forward``: (L + I) E W1 + (L E * E) W2, L E via the CSR.

    Only the model's own fixed adjacency on CPU takes the fast path; any other matrix (none
    is passed today) or a GPU tensor falls back to ``torch.sparse.mm``.
    """

    def forward(self, lap_matrix, eye_matrix, features):
        if lap_matrix is adjacency and features.device.type == "cpu":
            x = sparse_matmul(csr, features)
        else:
            x = torch.sparse.mm(lap_matrix, features)
        inter_part1 = self.linear(features + x)
        inter_feature = torch.mul(x, features)
        inter_part2 = self.interActTransform(inter_feature)
        return inter_part1 + inter_part2

    return forward
