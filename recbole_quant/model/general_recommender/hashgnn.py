r"""
HashGNN
################################################

Reference:
    Qiaoyu Tan, Ninghao Liu, Xing Zhao, Hongxia Yang, Jingren Zhou, Xia Hu.
    "Learning to Hash with Graph Neural Networks for Recommender Systems." in WWW 2020
    (arXiv 2003.01917).

Reference code (TensorFlow 1, standalone; followed for the encoder, hash layer, guided STE and
losses, see ``docs/models.md``).

Pipeline: GNN encoder -> hash layer ``z = tanh(W h + b)`` (users and items have their own
projection) -> codes ``sign(z)`` (``0 -> +1``) with an identity straight-through gradient.
Training mixes codes and continuous vectors per row ("guided STE"): with probability
``beta(epoch) = min(1, beta_step * floor(epoch / beta_period))`` a row uses its code, else
``z``; a user and its positive item share the draw, every negative has its own. ``beta``
reaches 1 (pure codes, plain STE) within the default training budget.

Loss on the mixed vectors, ``s(u, i) = logit_scale * <z_u, z_i>``:
``L = rec_weight * L_rec + L_rank`` with ``L_rec`` the sigmoid cross-entropy (label 1 for
``(u, i+)``, 0 for each negative, averaged over all labelled pairs) and ``L_rank`` BPR
(mean over negatives of ``softplus(s(u, j) - s(u, i+))``); no L2 term.

Inference (always deterministic): ``z`` for all users and items once after training (sage:
mean over all neighbours, or a fixed-seed sample), then a predictor built once
(:meth:`HashGNN.build_predictor`) answers ``full_sort_predict``, ``predict`` and the
trainer's packed top-k:

* ``mode: hard`` -- Hamming ranking by a :class:`recbole_quant.packed.PackedPredictor`:
  ``score = <sign(z_u), sign(z_i)>`` (an integer in [-bits, bits]).
* ``mode: soft`` -- the ``soft_candidates`` best items by Hamming score are re-ranked by the
  continuous ``<z_u, z_i>`` (HashGNN_s, :class:`SoftRerankPredictor`).
* ``quantize: False`` -- the continuous counterpart: same network and losses without codes,
  ranking by float dot products of ``z`` (:class:`FloatPredictor`).
"""

import math
from logging import getLogger

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from recbole.model.init import xavier_normal_initialization

from recbole_quant.errors import ConfigValueError
from recbole_quant.model.abstract import QuantizedRecommender
from recbole_quant.model.layers import (
    BipartiteSage,
    LightGCNPropagation,
    NeighborSampler,
    bipartite_csr,
    normalized_adjacency,
)
from recbole_quant.quantization import BetaSchedule, guided_mask, guided_mix, sign_ste

USER, ITEM = 0, 1


class HashGNN(QuantizedRecommender):
    r"""HashGNN: a GNN encoder, a tanh hash layer and guided-STE training to K-bit codes.

    Encoders (``encoder``):

    * ``sage`` (default, as the authors' code): ID embeddings (``embedding_size``, 120) ->
      ``Dense(embedding_size -> hidden_size) + LeakyReLU`` per node type -> GraphSAGE-mean
      aggregators ``h' = LeakyReLU(W [h_self || mean(h_nbrs)])`` (no bias). Users use 2 hops
      with 10 then 5 sampled neighbours, items 1 hop with 10 (``user_neighbors``,
      ``item_neighbors``), sampled uniformly with replacement from the training graph, one
      ``torch.rand`` per hop for the whole batch. Each distinct node of a batch is encoded
      once (one neighbour sample per node per batch). A node without training neighbours
      (e.g. the padding ids) has a zero neighbour mean.
      At inference (``eval_aggregation``): ``full`` replaces each sampled mean by the mean
      over all neighbours (sparse ``D^-1 A``), ``sampled`` draws one sample per node from a
      generator seeded with ``eval_seed``; both are the same run to run.
    * ``lightgcn``: ID embeddings propagated by LightGCN (``n_layers``), layers averaged.
    """

    ENCODERS = ("sage", "lightgcn")
    MODES = ("hard", "soft")
    EVAL_AGGREGATIONS = ("full", "sampled")

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.logger = getLogger()

        # load parameters info
        self.encoder = self.choice(config, "encoder", self.ENCODERS)
        self.embedding_size = self.int_in_range(config, "embedding_size", 1)
        self.bits = self.int_in_range(config, "bits", 1, 4096)
        self.quantize = self.choice(config, "quantize", (True, False))
        self.quantize = bool(self.quantize)
        self.mode = self.choice(config, "mode", self.MODES)
        self.soft_candidates = self.int_in_range(config, "soft_candidates", 1)
        self.rec_weight = self._float_at_least(config, "rec_weight", 0.0)
        self.logit_scale = self._float_at_least(config, "logit_scale", 0.0, strict=True)
        try:
            self.schedule = BetaSchedule(config["beta_step"], config["beta_period"])
        except (TypeError, ValueError) as err:
            raise ConfigValueError(f"beta_step / beta_period: {err}") from None
        neg_args = config["train_neg_sample_args"] or {}
        sample_num = neg_args.get("sample_num")
        if (
            neg_args.get("distribution") not in ("uniform", "popularity")
            or isinstance(sample_num, bool)
            or not isinstance(sample_num, int)
            or sample_num < 1
        ):
            raise ConfigValueError(
                f"HashGNN needs sampled negatives: train_neg_sample_args={neg_args!r} should "
                "have distribution uniform (or popularity) and an integer sample_num >= 1."
            )
        self.neg_per_pos = sample_num

        # define layers and loss
        if self.encoder == "sage":
            self.hidden_size = self.int_in_range(config, "hidden_size", 1)
            user_fanouts = self._fanouts(config, "user_neighbors")
            item_fanouts = self._fanouts(config, "item_neighbors")
            slope = self._float_at_least(config, "negative_slope", 0.0)
            self.eval_aggregation = self.choice(
                config, "eval_aggregation", self.EVAL_AGGREGATIONS
            )
            self.eval_seed = self.int_in_range(config, "eval_seed", 0)
            self.user_embedding = nn.Embedding(self.n_users, self.embedding_size)
            self.item_embedding = nn.Embedding(self.n_items, self.embedding_size)
            self.user_dense = nn.Linear(self.embedding_size, self.hidden_size)
            self.item_dense = nn.Linear(self.embedding_size, self.hidden_size)
            self.dense_act = nn.LeakyReLU(slope)
            u_indptr, u_indices, i_indptr, i_indices = bipartite_csr(dataset)
            # samplers[t] samples the neighbours of nodes of type t
            self.samplers = nn.ModuleList(
                [
                    NeighborSampler(u_indptr, u_indices, self.n_items),
                    NeighborSampler(i_indptr, i_indices, self.n_users),
                ]
            )
            self.user_tower = BipartiteSage(USER, user_fanouts, self.hidden_size, slope)
            self.item_tower = BipartiteSage(ITEM, item_fanouts, self.hidden_size, slope)
            encoded_size = self.hidden_size
        else:
            self.n_layers = self.int_in_range(config, "n_layers", 0)
            self.user_embedding = nn.Embedding(self.n_users, self.embedding_size)
            self.item_embedding = nn.Embedding(self.n_items, self.embedding_size)
            self.propagation = LightGCNPropagation(normalized_adjacency(dataset), self.n_layers, config)
            encoded_size = self.embedding_size
        self.user_hash = nn.Linear(encoded_size, self.bits)
        self.item_hash = nn.Linear(encoded_size, self.bits)

        # guided-STE state: derived from the epoch in on_train_epoch_start (saved as a buffer)
        self.register_buffer("beta", torch.tensor(0.0, dtype=torch.float64))

        # storage variables for full sort evaluation acceleration (dropped in train mode)
        self._tables = None

        # parameters initialization
        self.apply(xavier_normal_initialization)
        self._check_budget(config)

    # -- configuration helpers ---------------------------------------------------------------
    @staticmethod
    def _float_at_least(config, key, low, strict=False):
        value = config[key]
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        ok = ok and math.isfinite(value) and (value > low if strict else value >= low)
        if not ok:
            bound = f"> {low}" if strict else f">= {low}"
            raise ConfigValueError(f"{key}={value!r} is not valid: a finite number {bound}.")
        return float(value)

    @staticmethod
    def _fanouts(config, key):
        value = config[key]
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value]
        if (
            not isinstance(value, (list, tuple))
            or not value
            or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value)
        ):
            raise ConfigValueError(
                f"{key}={value!r} is not valid: a non-empty list of integers >= 1 "
                "(neighbours sampled per hop, e.g. [10, 5])."
            )
        return list(value)

    def _check_budget(self, config):
        """Warn when the schedule cannot reach beta = 1 or early stopping could cut it short.

        Early stopping stops at the earliest after ``(stopping_step + 1) * eval_step``
        epochs; the defaults keep that beyond ``epochs_to_full()``.
        """
        if not self.quantize:
            return
        full = self.schedule.epochs_to_full()
        if config["epochs"] <= full:
            self.logger.warning(
                f"HashGNN: beta reaches 1 (pure codes) at epoch {full}, but epochs="
                f"{config['epochs']}: training ends on the guided (mixed) schedule."
            )
        eval_step, stopping_step = config["eval_step"], config["stopping_step"]
        if eval_step and eval_step > 0 and (stopping_step + 1) * eval_step <= full:
            self.logger.warning(
                f"HashGNN: early stopping may stop before beta reaches 1 at epoch {full} "
                f"(stopping_step={stopping_step}, eval_step={eval_step}); raise stopping_step "
                f"above {math.ceil(full / eval_step) - 1}."
            )

    # -- schedule ----------------------------------------------------------------------------
    def on_train_epoch_start(self, epoch_idx, train_data=None):
        """Set ``beta`` for this epoch (called by :class:`QuantTrainer`, also after resuming)."""
        beta = self.schedule(epoch_idx) if self.quantize else 0.0
        if float(self.beta) != beta or epoch_idx == 0:
            self.logger.info(f"HashGNN epoch {epoch_idx}: guided-STE beta = {beta:.4g}")
        self.beta.fill_(beta)
        return beta

    # -- encoders ----------------------------------------------------------------------------
    def _features(self, node_type, ids):
        """Dense + LeakyReLU features of ``ids`` [N]; sentinel ids (= n of that type) get 0."""
        embedding, dense = (
            (self.user_embedding, self.user_dense)
            if node_type == USER
            else (self.item_embedding, self.item_dense)
        )
        n = embedding.num_embeddings
        x = self.dense_act(dense(embedding(ids.clamp_max(n - 1))))
        return x.masked_fill((ids == n).unsqueeze(1), 0.0)

    def _sage_sampled(self, users, items, generator=None):
        """Sampled GraphSAGE encodings h of ``users`` [U] and ``items`` [I] (distinct ids)."""
        towers = (self.user_tower, self.item_tower)
        trees = [
            self.user_tower.sample_tree(users, self.samplers, generator),
            self.item_tower.sample_tree(items, self.samplers, generator),
        ]
        # Dense features of every distinct node of each type once, then split per level
        features = [[None] * len(tree.nodes) for tree in trees]
        for node_type in (USER, ITEM):
            slots = [
                (t, level)
                for t, tree in enumerate(trees)
                for level, level_type in enumerate(tree.types)
                if level_type == node_type
            ]
            ids = torch.cat([trees[t].nodes[level] for t, level in slots])
            distinct, inverse = torch.unique(ids, return_inverse=True)
            x = self._features(node_type, distinct).index_select(0, inverse)
            sizes = [trees[t].nodes[level].numel() for t, level in slots]
            for (t, level), part in zip(slots, x.split(sizes)):
                features[t][level] = part
        return tuple(tower(tree, f) for tower, tree, f in zip(towers, trees, features))

    def _sage_all(self):
        """Deterministic GraphSAGE encodings of all users [n_users, d] and items [n_items, d]."""
        all_users = torch.arange(self.n_users, device=self.device)
        all_items = torch.arange(self.n_items, device=self.device)
        x = [self._features(USER, all_users), self._features(ITEM, all_items)]
        if self.eval_aggregation == "full":
            means = [s.mean_matrix() for s in self.samplers]
            return self.user_tower.full(x, means), self.item_tower.full(x, means)
        # a fixed-seed sample: the same every call, whatever the global RNG state
        generator = torch.Generator(device=self.device).manual_seed(self.eval_seed)
        padded = [torch.cat([x[t], x[t].new_zeros(1, x[t].shape[1])]) for t in (USER, ITEM)]
        out = []
        for tower, n in ((self.user_tower, self.n_users), (self.item_tower, self.n_items)):
            chunks = []
            for start in range(0, n, 8192):
                targets = torch.arange(start, min(n, start + 8192), device=self.device)
                tree = tower.sample_tree(targets, self.samplers, generator)
                level_x = [padded[t][ids] for t, ids in zip(tree.types, tree.nodes)]
                chunks.append(tower(tree, level_x))
            out.append(torch.cat(chunks))
        return out[0], out[1]

    def _lightgcn_all(self):
        ego = torch.cat([self.user_embedding.weight, self.item_embedding.weight])
        mean = torch.stack(self.propagation(ego), dim=1).mean(dim=1)
        return mean[: self.n_users], mean[self.n_users :]

    def forward(self, user, item):
        r"""Continuous hash-layer outputs ``z = tanh(W h + b)`` (training-time encoder).

        Args:
            user (torch.Tensor): [U] user ids.
            item (torch.Tensor): [I] item ids.

        Returns:
            tuple: ``z_user`` [U, bits] and ``z_item`` [I, bits], in (-1, 1). With the sage
            encoder the neighbours are sampled (global RNG); the same id within one call
            shares one sample.
        """
        users, user_inv = torch.unique(user, return_inverse=True)
        items, item_inv = torch.unique(item, return_inverse=True)
        if self.encoder == "sage":
            h_user, h_item = self._sage_sampled(users, items)
        else:
            all_users, all_items = self._lightgcn_all()
            h_user, h_item = all_users[users], all_items[items]
        # hash the distinct nodes once, then expand to the rows
        z_user = torch.tanh(self.user_hash(h_user))
        z_item = torch.tanh(self.item_hash(h_item))
        return z_user.index_select(0, user_inv), z_item.index_select(0, item_inv)

    # -- training ----------------------------------------------------------------------------
    def _split_batch(self, interaction):
        """Undo RecBole's pairwise layout with ``sample_num = S`` negatives per positive.

        RecBole (``_neg_sample_by_pair_wise_sampling``) tiles the ``B`` positive rows ``S``
        times (``Interaction.repeat``) and gives row ``s * B + b`` the ``s``-th negative of
        positive ``b``. Returns ``user`` [B], ``pos`` [B], ``neg`` [S, B].
        """
        user = interaction[self.USER_ID]
        pos = interaction[self.ITEM_ID]
        neg = interaction[self.NEG_ITEM_ID]
        s = self.neg_per_pos
        n = user.numel()
        if n % s:
            raise RuntimeError(f"HashGNN: a batch of {n} rows is not {s} rows per positive.")
        b = n // s
        user2, pos2 = user.view(s, b), pos.view(s, b)
        if not (torch.equal(user2, user2[:1].expand_as(user2)) and torch.equal(pos2, pos2[:1].expand_as(pos2))):
            raise RuntimeError(
                "HashGNN: unexpected batch layout; expected RecBole's pairwise sampling with "
                f"sample_num={s} (each positive row repeated {s} times, one NEG_ITEM_ID each)."
            )
        return user[:b], pos[:b], neg.view(s, b)

    def calculate_loss(self, interaction):
        """``rec_weight * sigmoid CE + BPR`` on guided-STE mixed vectors.

        Args:
            interaction (Interaction): ``USER_ID``, ``ITEM_ID``, ``NEG_ITEM_ID`` [S * B] in
                RecBole's pairwise layout (see :meth:`_split_batch`).

        Returns:
            torch.Tensor: scalar loss.
        """
        user, pos, neg = self._split_batch(interaction)
        s, b = neg.shape
        z_user, z_item = self.forward(user, torch.cat([pos, neg.reshape(-1)]))
        z_pos, z_neg = z_item[:b], z_item[b:]
        if self.quantize:
            beta = float(self.beta)
            shared = guided_mask(b, beta, device=z_user.device)  # user and positive share it
            own = guided_mask(s * b, beta, device=z_user.device)  # one draw per negative
            z_user = guided_mix(sign_ste(z_user), z_user, shared)
            z_pos = guided_mix(sign_ste(z_pos), z_pos, shared)
            z_neg = guided_mix(sign_ste(z_neg), z_neg, own)
        z_neg = z_neg.view(s, b, -1)
        pos_score = self.logit_scale * (z_user * z_pos).sum(-1)  # [B]
        neg_score = self.logit_scale * (z_user.unsqueeze(0) * z_neg).sum(-1)  # [S, B]
        rec_loss = (F.softplus(-pos_score).sum() + F.softplus(neg_score).sum()) / (b * (s + 1))
        rank_loss = F.softplus(neg_score - pos_score.unsqueeze(0)).mean()
        return self.rec_weight * rec_loss + rank_loss

    # -- inference ---------------------------------------------------------------------------
    def train(self, mode=True):
        if mode:
            self._tables = None
        return super().train(mode)

    def load_state_dict(self, state_dict, strict=True, assign=False):
        self._tables = None
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    @torch.no_grad()
    def code_tables(self):
        """Deterministic continuous ``z`` of all users [n_users, bits] and items [n_items, bits].

        Cached until the model goes back to training mode or loads a state dict. The codes
        are ``hard_sign`` of these (``z >= 0 -> +1``).
        """
        if self._tables is None:
            if self.encoder == "sage":
                h_user, h_item = self._sage_all()
            else:
                h_user, h_item = self._lightgcn_all()
            self._tables = (
                torch.tanh(self.user_hash(h_user)).float(),
                torch.tanh(self.item_hash(h_item)).float(),
            )
        return self._tables

    def build_predictor(self):
        """The predictor of the active mode, over every user and item (padding ids included).

        * hard: :class:`PackedPredictor` of ``sign(z)``;
        * soft: :class:`SoftRerankPredictor` (that packed predictor + the continuous ``z``);
        * ``quantize: False``: :class:`FloatPredictor` (continuous ``z``).

        All three answer ``score`` / ``topk`` / ``storage``, so RecBole's standard evaluation
        (``full_sort_predict``) and the trainer's packed top-k path rank identically.
        """
        from recbole_quant.packed import PackedPredictor

        z_user, z_item = (t.cpu() for t in self.code_tables())
        if not self.quantize:
            return FloatPredictor(z_user, z_item)
        packed = PackedPredictor.from_signs(z_user, z_item)
        if self.mode == "hard":
            return packed
        return SoftRerankPredictor(packed, z_user, z_item, self.soft_candidates)

    def full_sort_predict(self, interaction):
        """Scores of every item for a batch of users, from :meth:`build_predictor`'s predictor.

        * hard: ``<sign(z_u), sign(z_i)>`` from the packed codes (integers in [-bits, bits]);
        * soft: see :class:`SoftRerankPredictor`;
        * ``quantize: False``: ``<z_u, z_i>``.

        Args:
            interaction (Interaction): holds ``USER_ID`` [B].

        Returns:
            torch.Tensor: a fresh float32 tensor [B, n_items] (padding item 0 included).
        """
        return super().full_sort_predict(interaction)

    def storage(self):
        """:class:`StorageReport` of what inference keeps; ``None`` for the continuous model.

        Hard: the packed codes (``bits`` bits per node). Soft: the codes plus the continuous
        ``z`` (``bits`` float32 per node) it re-ranks with.
        """
        return self.predictor.storage()


class DenseScorePredictor:
    """The predictor interface (``score`` / ``topk`` / ``storage``) over dense score rows.

    ``topk`` scores the users' rows, sets excluded items to -inf and applies the packed
    predictor's tie rule (higher score first, then lower item id); slots left without an
    item are ``-inf`` / ``-1``.
    """

    def __init__(self, n_users, n_items):
        self.n_users, self.n_items = int(n_users), int(n_items)

    def _scores(self, users):
        """float32 [B, n_items] for ``users`` (CPU int64 [B])."""
        raise NotImplementedError

    def score(self, user_index):
        """A fresh float32 tensor [B, n_items] of scores for ``user_index`` [B]."""
        users = torch.as_tensor(user_index, dtype=torch.long).reshape(-1).cpu()
        return self._scores(users)

    def topk(self, user_index, k, exclude=None):
        """Top-k ``(scores float32 [B, k], item_ids int64 [B, k])``; see the class docstring."""
        from recbole_quant.evaluation import deterministic_topk
        from recbole_quant.packed.exclusion import batch_exclusion

        users = torch.as_tensor(user_index, dtype=torch.long).reshape(-1).cpu()
        if isinstance(k, bool) or int(k) != k or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        k = int(k)
        scores = self._scores(users)
        indptr, indices = batch_exclusion(exclude, users.numpy(), self.n_users, self.n_items)
        rows = np.repeat(np.arange(len(users)), np.diff(indptr))
        keep = (indices >= 0) & (indices < self.n_items)
        scores[torch.from_numpy(rows[keep]), torch.from_numpy(indices[keep])] = -math.inf
        top = min(k, self.n_items)
        ids = deterministic_topk(scores, top)
        values = scores.gather(1, ids)
        ids = torch.where(torch.isneginf(values), torch.full_like(ids, -1), ids)
        if top < k:
            pad = len(users), k - top
            values = torch.cat([values, torch.full(pad, -math.inf)], dim=1)
            ids = torch.cat([ids, torch.full(pad, -1, dtype=torch.long)], dim=1)
        return values, ids


class FloatPredictor(DenseScorePredictor):
    """Continuous ranking ``<z_u, z_i>`` (HashGNN with ``quantize: False``).

    Computed in float64 and rounded to float32: the products of float32 values are exact, so a
    user's row does not depend on the other users of the batch (``predict`` equals
    ``full_sort_predict`` bit for bit).

    Args:
        z_user (torch.Tensor): [n_users, d] float.
        z_item (torch.Tensor): [n_items, d] float.
    """

    def __init__(self, z_user, z_item):
        super().__init__(len(z_user), len(z_item))
        self.z_user = z_user.double()
        self.z_item_t = z_item.double().T.contiguous()

    def _scores(self, users):
        return (self.z_user[users] @ self.z_item_t).float()

    def storage(self):
        return None  # float32 embeddings, nothing quantized


class SoftRerankPredictor(DenseScorePredictor):
    """HashGNN_s: Hamming top-C candidates re-ranked by the continuous scores.

    Per user, the ``candidates`` best items by Hamming score (``PackedPredictor.topk`` over
    all items, ties to the lower id) get ``<z_u, z_i> + 3 * d``; every other item keeps its
    Hamming score ``<sign(z_u), sign(z_i)>``. Hamming scores lie in [-d, d] and continuous
    ones in (-d, d), so candidates (> 2d) always rank above non-candidates and are ordered by
    the continuous score. Exclusions (history) apply after this scoring, in ``topk`` as in
    RecBole's standard path, so a history item among the candidates uses up a candidate slot
    (as in the authors' evaluation, which searches the top-500 among all items).

    Args:
        packed (PackedPredictor): sign codes of ``z_user`` / ``z_item``.
        z_user (torch.Tensor): [n_users, d] continuous hash outputs.
        z_item (torch.Tensor): [n_items, d].
        candidates (int): C, candidates per user (at most ``n_items`` are used).
    """

    def __init__(self, packed, z_user, z_item, candidates):
        super().__init__(len(z_user), len(z_item))
        self.packed = packed
        self.z_user = z_user.double()
        self.z_item = z_item.double()
        self.candidates = min(int(candidates), self.n_items)
        self.offset = 3.0 * z_user.shape[1]

    def _scores(self, users):
        scores = self.packed.score(users)  # fresh float32 [B, n_items]
        _, ids = self.packed.topk(users, self.candidates)
        ids = torch.as_tensor(ids, dtype=torch.long)
        valid = ids >= 0
        ids = torch.where(valid, ids, torch.zeros_like(ids))
        cont = (self.z_user[users].unsqueeze(1) * self.z_item[ids]).sum(-1)  # [B, C] float64
        boosted = (cont + self.offset).float()
        scores.scatter_(1, ids, torch.where(valid, boosted, scores.gather(1, ids)))
        return scores

    def storage(self):
        from recbole_quant.packed import storage_report

        d = self.z_user.shape[1]
        return storage_report(
            "sign", self.n_users, self.n_items, d, user_floats_per_node=d, item_floats_per_node=d
        )
