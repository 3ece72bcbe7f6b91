r"""Distillation from a full-precision teacher, shared by HQGNN, HashGNN and L2QGCN.

BiGeaR ("inference distillation") trains its 1-bit student to rank like the full-precision
model it started from: for each user, the teacher's best-ranked items are pushed up in the
student's scores, weighted by their teacher rank. This module keeps that idea -- the
teacher's ranking of items, with more weight at its top -- in a listwise form that needs no
extra encoder pass: it uses only the users and items already in the training batch (at most
``distill_max_users`` x ``distill_max_items`` of them, a random subset beyond that).

For the batch's distinct users ``u`` (U of them) and distinct items ``C`` (positives and
negatives, M of them; the same candidate set for every user), with teacher scores ``t`` and
student scores ``s`` (each model's own training score, through its quantizer), and a
temperature ``T``:

    p_u = softmax(t_u / T),  q_u = softmax(s_u / T)           (over the M candidates)
    L_distill = T^2 / U * sum_u KL(p_u || q_u)
              = T^2 / U * sum_u sum_j p_uj (log p_uj - log q_uj)

    dL_distill / ds_uj = (T / U) * (q_uj - p_uj)

so a gradient step raises the student's score of every item the teacher gives more
probability than the student does (the teacher's top items, softmax-weighted by score
rather than BiGeaR's ``exp(-0.1 rank)``), and lowers the others. ``T^2`` keeps the gradient's
size comparable across temperatures (Hinton et al.). Its cost per batch is a U x M score
matrix (both sides); ``distill_max_users`` and ``distill_max_items`` cap U and M.

The teacher (``teacher_checkpoint``) is a recbole_quant checkpoint of LightGCN or of a plugin
model of the same dataset, read with ``weights_only=True``: its layer-0 user/item tables are
propagated once at model construction over this dataset's training graph (LightGCN's layer
mean, the teacher's own ``n_layers``), frozen and never saved with the student (non-persistent
buffers). Options (every model's yaml): ``distill_weight`` (0 = off: no teacher is read and the
loss is exactly the model's own), ``distill_temperature`` (T > 0), ``teacher_checkpoint``,
``distill_max_users`` and ``distill_max_items``.
With distillation on, ``calculate_loss`` returns ``(own loss, distill_weight * L_distill)``,
which RecBole logs per epoch as ``train_loss1`` and ``train_loss2``.
"""

from logging import getLogger

import torch
import torch.nn as nn
import torch.nn.functional as F

from recbole_quant.errors import CheckpointError, ConfigValueError
from recbole_quant.model import options
from recbole_quant.model.layers import LightGCNPropagation, normalized_adjacency
from recbole_quant.model.warm_start import read_layer0_tables


def read_options(config):
    """``distill_weight``, ``distill_temperature``, ``teacher_checkpoint`` and the caps
    ``distill_max_users`` / ``distill_max_items``, checked.

    Raises:
        ConfigValueError: a negative weight, a temperature <= 0, or a positive weight
        without a teacher.
    """
    weight = options.number(config, "distill_weight", 0)
    temperature = options.number(config, "distill_temperature", 0, strict=True)
    teacher = options.optional_path(config, "teacher_checkpoint")
    if weight > 0 and teacher is None:
        raise ConfigValueError(
            f"distill_weight={config['distill_weight']!r} needs a teacher: set "
            "teacher_checkpoint=saved/LightGCN-....pth (a recbole_quant checkpoint trained on "
            "the same dataset), or distill_weight=0 to train without distillation."
        )
    return dict(
        distill_weight=weight,
        distill_temperature=temperature,
        teacher_checkpoint=teacher,
        distill_max_users=options.integer(config, "distill_max_users", 1),
        distill_max_items=options.integer(config, "distill_max_items", 1),
    )


def listwise_distillation(student_scores, teacher_scores, temperature):
    r"""``T^2 / U * sum_u KL(softmax(t_u / T) || softmax(s_u / T))`` (see the module docstring).

    Args:
        student_scores (torch.Tensor): [U, M] student scores (differentiable).
        teacher_scores (torch.Tensor): [U, M] teacher scores (no gradient flows to them).
        temperature (float): T > 0.

    Returns:
        torch.Tensor: scalar, >= 0, 0 when both score rows agree up to a constant shift.
    """
    teacher_log_p = F.log_softmax(teacher_scores.detach() / temperature, dim=-1)
    student_log_q = F.log_softmax(student_scores / temperature, dim=-1)
    kl = (teacher_log_p.exp() * (teacher_log_p - student_log_q)).sum(dim=-1)
    return kl.mean() * temperature**2


def distinct_rows(ids, limit=None):
    """The distinct values of ``ids`` [N] (sorted) and, for each, the index of one row holding it.

    With ``limit``, at most that many of them: a uniform random subset when there are more
    (no random draw otherwise).

    Returns:
        tuple of torch.Tensor: ``unique`` [K] and ``row`` [K] with ``ids[row] == unique``.
    """
    unique, inverse = torch.unique(ids, return_inverse=True)
    positions = torch.arange(ids.numel(), device=ids.device)
    row = torch.full((unique.numel(),), ids.numel(), dtype=torch.long, device=ids.device)
    row.scatter_reduce_(0, inverse, positions, reduce="amin")
    if limit is not None and unique.numel() > limit:
        # a uniform subset (torch's global generator: seeded by RecBole, saved in checkpoints)
        keep = torch.randperm(unique.numel(), device=ids.device)[:limit].sort().values
        unique, row = unique[keep], row[keep]
    return unique, row


class Teacher(nn.Module):
    """The frozen teacher's final embeddings and its distillation loss for a batch.

    Args:
        config: the run's Config (``teacher_checkpoint``, ``distill_temperature``, ``dataset``).
        dataset: the training dataset (its graph propagates the teacher's tables).
        norm_adj (torch.Tensor, optional): the normalised adjacency if the student has one.

    Raises:
        CheckpointError: missing or damaged file, a model without layer-0 tables, another
        dataset, or tables whose rows are not this dataset's users / items.
    """

    def __init__(self, config, dataset, norm_adj=None):
        super().__init__()
        path = str(config["teacher_checkpoint"])
        self.temperature = float(config["distill_temperature"])
        self.max_users = int(config["distill_max_users"])
        self.max_items = int(config["distill_max_items"])
        state, users, items = read_layer0_tables(path, config, "teacher_checkpoint", "teacher")
        n_users, n_items = dataset.user_num, dataset.item_num
        for key, table, n, what in (
            ("user_embedding.weight", users, n_users, "users"),
            ("item_embedding.weight", items, n_items, "items"),
        ):
            if table.dim() != 2 or table.shape[0] != n:
                raise CheckpointError(
                    f"teacher_checkpoint={path}: {key} has shape {tuple(table.shape)}, but "
                    f"dataset {config['dataset']!r} has {n} {what} (padding included): the "
                    "teacher was trained on another split or filtering of it. Train the "
                    "teacher with this run's dataset options."
                )
        if users.shape[1] != items.shape[1]:
            raise CheckpointError(f"teacher_checkpoint={path}: user and item tables differ in width.")
        n_layers = (state.get("config") or {}).get("n_layers")
        if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 0:
            n_layers = 2  # RecBole's LightGCN default
        if norm_adj is None:
            norm_adj = normalized_adjacency(dataset)
        propagation = LightGCNPropagation(norm_adj, n_layers, config)
        with torch.no_grad():
            final = propagation.layer_mean(torch.cat([users, items]).float())
        user_final, item_final = torch.split(final.detach(), [n_users, n_items])
        # non-persistent: follow .to(device), never saved with (nor required by) the student
        self.register_buffer("user_final", user_final.contiguous(), persistent=False)
        self.register_buffer("item_final", item_final.contiguous(), persistent=False)
        self.source = state.get("model")
        getLogger().info(
            f"{config['model']}: distillation from the {self.source} checkpoint {path} "
            f"(epoch {state.get('epoch')}, {n_layers} LightGCN layers, width "
            f"{users.shape[1]}): distill_weight={config['distill_weight']}, "
            f"distill_temperature={self.temperature}; each epoch's train_loss2 is the "
            "weighted distillation term, train_loss1 the model's own loss."
        )

    def candidates(self, user, item):
        """The users and items a batch's distillation compares, and one batch row of each.

        The distinct ids of ``user`` and ``item`` (a batch's rows), at most
        ``distill_max_users`` / ``distill_max_items`` of each (a uniform random subset of the
        distinct ids when there are more): the U x M score matrices grow with both, and a
        large batch on a large catalogue (Gowalla: ~6,500 x ~14,000 per 8,192-row batch) cost
        13x the epoch without a cap.

        Returns:
            tuple of torch.Tensor: ``users`` [U], ``user_row`` [U], ``items`` [M], ``item_row``
            [M], with ``user[user_row] == users`` and ``item[item_row] == items``.
        """
        users, user_row = distinct_rows(user, self.max_users)
        items, item_row = distinct_rows(item, self.max_items)
        return users, user_row, items, item_row

    def scores(self, users, items):
        """Teacher scores [U, M] of ``users`` [U] over ``items`` [M]."""
        return self.user_final[users] @ self.item_final[items].T

    def loss(self, users, items, student_scores):
        """:func:`listwise_distillation` of ``student_scores`` [U, M] against the teacher's."""
        return listwise_distillation(student_scores, self.scores(users, items), self.temperature)

    def extra_repr(self):
        return (
            f"source={self.source}, users={tuple(self.user_final.shape)}, "
            f"items={tuple(self.item_final.shape)}, temperature={self.temperature}, "
            f"max_users={self.max_users}, max_items={self.max_items}"
        )


def build_teacher(model, config, dataset, norm_adj=None):
    """The model's :class:`Teacher` when ``distill_weight > 0``, else None (nothing is read)."""
    if model.distill_weight > 0:
        return Teacher(config, dataset, norm_adj)
    if model.teacher_checkpoint:
        getLogger().info(
            f"{config['model']}: teacher_checkpoint is not read: distill_weight is 0 "
            "(distillation off)."
        )
    return None
