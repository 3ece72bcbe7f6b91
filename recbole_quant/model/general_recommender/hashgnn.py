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
reaches 1 (pure codes, plain STE) within the default training budget. An optional
continuous warm-up (``warmup_epochs``, default 0) keeps ``beta = 0`` before the schedule
starts, ``beta(epoch) = schedule(epoch - start)``; with ``warmup_patience`` it ends earlier,
when the validation score stops improving (:mod:`recbole_quant.stage_switch`).

Loss on the mixed vectors, ``s(u, i) = logit_scale * <z_u, z_i>``:
``L = rec_weight * L_rec + L_rank`` with ``L_rec`` the sigmoid cross-entropy (label 1 for
``(u, i+)``, 0 for each negative, averaged over all labelled pairs) and ``L_rank`` BPR
(mean over negatives of ``softplus(s(u, j) - s(u, i+))``); no L2 term.

Inference (always deterministic): ``z`` for all users and items once after training (sage:
mean over all neighbours, or a fixed-seed sample), then a predictor built once
(:meth:`HashGNN.build_predictor`) answers ``full_sort_predict``, ``predict`` and the
trainer's packed top-k:

* ``mode: hard`` -- Hamming ranking by a :class:`recbole_quant.packed.PackedPredictor`:
  ``score = <sign(z_u), sign(z_i)>`` (an integer in [-K, K], K = ``code_length``).
* ``mode: soft`` -- the ``soft_candidates`` best items by Hamming score are re-ranked by the
  continuous ``<z_u, z_i>`` (HashGNN_s, :class:`SoftRerankPredictor`).
* ``quantize: False`` -- the continuous counterpart: same network and losses without codes,
  ranking by float dot products of ``z`` (:class:`FloatPredictor`).
"""

import math
from logging import getLogger

import torch
import torch.nn as nn
import torch.nn.functional as F
from recbole.model.init import xavier_normal_initialization

from recbole_quant.errors import ConfigValueError
from recbole_quant.model import distillation, options
from recbole_quant.model.abstract import QuantizedRecommender
from recbole_quant.model.losses import bpr
from recbole_quant.model.distillation import build_teacher
from recbole_quant.model.warm_start import load_layer0_tables
from recbole_quant.model.layers import (
    BipartiteSage,
    LightGCNPropagation,
    NeighborSampler,
    bipartite_csr,
    normalized_adjacency,
)
from recbole_quant.packed import FloatPredictor, PackedPredictor, SoftRerankPredictor
from recbole_quant.quantization import BetaSchedule, guided_mask, guided_mix, sign_ste
from recbole_quant.stage_switch import WarmupSwitchModelMixin, warmup_switch

USER, ITEM = 0, 1
# Longest sign code accepted per node: 64 words of 64 bits
MAX_CODE_LENGTH = 4096


class HashGNN(WarmupSwitchModelMixin, QuantizedRecommender):
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

    @classmethod
    def read_options(cls, config):
        encoder = options.choice(config, "encoder", cls.ENCODERS)
        read = dict(
            encoder=encoder,
            embedding_size=options.integer(config, "embedding_size", 1),
            code_length=cls._code_length(config),
            quantize=options.boolean(config, "quantize"),
            mode=options.choice(config, "mode", cls.MODES),
            soft_candidates=options.integer(config, "soft_candidates", 1),
            rec_weight=options.number(config, "rec_weight", 0),
            logit_scale=options.number(config, "logit_scale", 0, strict=True),
            neg_per_pos=cls._negatives_per_positive(config),
            pretrained_checkpoint=options.optional_path(config, "pretrained_checkpoint"),
            warmup_epochs=options.integer(config, "warmup_epochs", 0),
            warmup_patience=options.integer(config, "warmup_patience", 1, none_allowed=True),
            **distillation.read_options(config),
        )
        try:
            read["schedule"] = BetaSchedule(config["beta_step"], config["beta_period"])
        except (TypeError, ValueError) as err:
            raise ConfigValueError(f"beta_step / beta_period: {err}") from None
        if encoder == "sage":
            read.update(
                hidden_size=options.integer(config, "hidden_size", 1),
                user_fanouts=options.integer_list(config, "user_neighbors"),
                item_fanouts=options.integer_list(config, "item_neighbors"),
                negative_slope=options.number(config, "negative_slope", 0),
                eval_aggregation=options.choice(config, "eval_aggregation", cls.EVAL_AGGREGATIONS),
                eval_seed=options.integer(config, "eval_seed", 0),
            )
        else:
            read["n_layers"] = options.integer(config, "n_layers", 0)
        return read

    @staticmethod
    def _code_length(config):
        """``code_length``, or the deprecated ``bits`` (HashGNN's old name for it) when given."""
        if "bits" in config and config["bits"] is not None:
            getLogger().warning(
                f"HashGNN: bits={config['bits']!r} is deprecated, use code_length (the number of "
                "sign bits per node). `bits` means bits per coordinate elsewhere (HQGNN, "
                "comparisons' --bits); HashGNN codes have 1 bit per coordinate."
            )
            return options.integer(config, "bits", 1, MAX_CODE_LENGTH)
        return options.integer(config, "code_length", 1, MAX_CODE_LENGTH)

    @staticmethod
    def _negatives_per_positive(config):
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
        return sample_num

    def __init__(self, config, dataset):
        super().__init__(config, dataset)  # sets the attributes of read_options
        self.logger = getLogger()

        # define layers and loss
        if self.encoder == "sage":
            self.user_embedding = nn.Embedding(self.n_users, self.embedding_size)
            self.item_embedding = nn.Embedding(self.n_items, self.embedding_size)
            self.user_dense = nn.Linear(self.embedding_size, self.hidden_size)
            self.item_dense = nn.Linear(self.embedding_size, self.hidden_size)
            self.dense_act = nn.LeakyReLU(self.negative_slope)
            u_indptr, u_indices, i_indptr, i_indices = bipartite_csr(dataset)
            # samplers[t] samples the neighbours of nodes of type t
            self.samplers = nn.ModuleList(
                [
                    NeighborSampler(u_indptr, u_indices, self.n_items),
                    NeighborSampler(i_indptr, i_indices, self.n_users),
                ]
            )
            slope = self.negative_slope
            self.user_tower = BipartiteSage(USER, self.user_fanouts, self.hidden_size, slope)
            self.item_tower = BipartiteSage(ITEM, self.item_fanouts, self.hidden_size, slope)
            encoded_size = self.hidden_size
        else:
            self.user_embedding = nn.Embedding(self.n_users, self.embedding_size)
            self.item_embedding = nn.Embedding(self.n_items, self.embedding_size)
            self.propagation = LightGCNPropagation(normalized_adjacency(dataset), self.n_layers, config)
            encoded_size = self.embedding_size
        self.user_hash = nn.Linear(encoded_size, self.code_length)
        self.item_hash = nn.Linear(encoded_size, self.code_length)

        # guided-STE state: derived from the epoch in on_train_epoch_start (saved as a buffer)
        self.register_buffer("beta", torch.tensor(0.0, dtype=torch.float64))
        # continuous warm-up (beta = 0) before the schedule: none by default
        self.warmup_switch = warmup_switch(
            config, "HashGNN", self.warmup_epochs if self.quantize else 0,
            self.warmup_patience, stage="the guided-STE schedule",
        )

        # storage variables for full sort evaluation acceleration (dropped in train mode)
        self._tables = None

        # parameters initialization (ID tables from a warm start if given, e.g. a LightGCN)
        self.apply(xavier_normal_initialization)
        if self.pretrained_checkpoint:
            load_layer0_tables(
                self.pretrained_checkpoint, config, self.user_embedding, self.item_embedding
            )
        # frozen full-precision teacher when distill_weight > 0 (else None, nothing read)
        propagation = getattr(self, "propagation", None)
        norm_adj = propagation.norm_adj if propagation is not None else None
        self.teacher = build_teacher(self, config, dataset, norm_adj)
        self._check_budget(config)

    def _check_budget(self, config):
        """Warn when the schedule cannot reach beta = 1 or early stopping could cut it short.

        Early stopping stops at the earliest after ``(stopping_step + 1) * eval_step``
        epochs of the schedule (a warm-up never stops early: the trainer restarts model
        selection where the schedule starts); the defaults keep that beyond
        ``epochs_to_full()``.
        """
        if not self.quantize:
            return
        full = self.schedule.epochs_to_full()
        if config["epochs"] <= self.warmup_epochs + full:  # a warm-up delays it (at most that)
            self.logger.warning(
                f"HashGNN: beta reaches 1 (pure codes) at epoch {self.warmup_epochs + full}, "
                f"but epochs={config['epochs']}: training ends on the guided (mixed) schedule."
            )
        eval_step, stopping_step = config["eval_step"], config["stopping_step"]
        if eval_step and eval_step > 0 and (stopping_step + 1) * eval_step <= full:
            self.logger.warning(
                f"HashGNN: early stopping may stop before beta reaches 1 at epoch {full} "
                f"(stopping_step={stopping_step}, eval_step={eval_step}); raise stopping_step "
                f"above {math.ceil(full / eval_step) - 1}."
            )

    # -- schedule ----------------------------------------------------------------------------
    @property
    def quantized_from_epoch(self):
        """First epoch of the guided-STE schedule (read by :class:`QuantTrainer`): 0 without a
        warm-up, ``warmup_epochs``, or where ``warmup_patience`` ended the warm-up."""
        return self.warmup_switch.switch_epoch

    def on_train_epoch_start(self, epoch_idx, train_data=None):
        """Set ``beta`` for this epoch (called by :class:`QuantTrainer`, also after resuming):
        0 during the warm-up, then ``schedule(epoch_idx - quantized_from_epoch)``."""
        self.warmup_switch.announce(epoch_idx)
        start = self.quantized_from_epoch
        beta = self.schedule(epoch_idx - start) if self.quantize and epoch_idx >= start else 0.0
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
        mean = self.propagation.layer_mean(ego)
        return mean[: self.n_users], mean[self.n_users :]

    def forward(self, user, item):
        r"""Continuous hash-layer outputs ``z = tanh(W h + b)`` (training-time encoder).

        Args:
            user (torch.Tensor): [U] user ids.
            item (torch.Tensor): [I] item ids.

        Returns:
            tuple: ``z_user`` [U, K] and ``z_item`` [I, K] (K = ``code_length``), in (-1, 1). With the sage
            encoder the neighbours are sampled (global RNG); the same id within one call
            shares one sample.
        """
        users, user_inv = torch.unique(user, return_inverse=True)
        items, item_inv = torch.unique(item, return_inverse=True)
        if self.encoder == "sage":
            h_user, h_item = self._sage_sampled(users, items)
        else:
            # only the rows the batch reads are propagated (users, then items: sorted, distinct)
            ego = torch.cat([self.user_embedding.weight, self.item_embedding.weight])
            rows = torch.cat([users, items + self.n_users])
            h_user, h_item = torch.split(
                self.propagation.layer_mean_rows(ego, rows), [users.numel(), items.numel()]
            )
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

        With ``distill_weight > 0``, the teacher's listwise distillation over the batch's
        distinct users and items (:mod:`recbole_quant.model.distillation`) is a second term,
        on ``logit_scale * <z_u, z_i>`` with each distinct node's ``z`` guided-mixed once
        (its code with probability ``beta``, as the rows of the ranking loss).

        Args:
            interaction (Interaction): ``USER_ID``, ``ITEM_ID``, ``NEG_ITEM_ID`` [S * B] in
                RecBole's pairwise layout (see :meth:`_split_batch`).

        Returns:
            torch.Tensor: scalar loss; with distillation on, the tuple
            ``(rec_weight * L_rec + L_rank, distill_weight * L_distill)``.
        """
        user, pos, neg = self._split_batch(interaction)
        s, b = neg.shape
        items = torch.cat([pos, neg.reshape(-1)])
        z_user, z_item = self.forward(user, items)
        z_nodes = (z_user, z_item)  # before mixing, for the distillation term
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
        rank_loss = bpr(pos_score.unsqueeze(0), neg_score)
        loss = self.rec_weight * rec_loss + rank_loss
        if self.teacher is None:
            return loss
        return loss, self.distill_weight * self._distillation(user, items, *z_nodes)

    def _distillation(self, user, item, z_user, z_item):
        """Distillation term over the distinct ``user`` / ``item`` ids of a batch's rows."""
        users, user_row, items, item_row = self.teacher.candidates(user, item)
        z_u, z_i = z_user[user_row], z_item[item_row]  # rows of one id share their z
        if self.quantize:
            beta = float(self.beta)
            z_u = guided_mix(sign_ste(z_u), z_u, guided_mask(len(users), beta, device=z_u.device))
            z_i = guided_mix(sign_ste(z_i), z_i, guided_mask(len(items), beta, device=z_i.device))
        return self.teacher.loss(users, items, self.logit_scale * (z_u @ z_i.T))

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
        """Deterministic continuous ``z`` of all users [n_users, K] and items [n_items, K].

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
        z_user, z_item = (t.cpu() for t in self.code_tables())
        if not self.quantize:
            return FloatPredictor(z_user, z_item)
        packed = PackedPredictor.from_signs(z_user, z_item)
        if self.mode == "hard":
            return packed
        return SoftRerankPredictor(packed, z_user, z_item, self.soft_candidates)

    def full_sort_predict(self, interaction):
        """Scores of every item for a batch of users, from :meth:`build_predictor`'s predictor.

        * hard: ``<sign(z_u), sign(z_i)>`` from the packed codes (integers in [-K, K]);
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

        Hard: the packed codes (K = ``code_length`` bits per node). Soft: the codes plus the
        continuous ``z`` (K float32 per node) it re-ranks with.
        """
        return self.predictor.storage()

