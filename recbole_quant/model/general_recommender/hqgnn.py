r"""
HQGNN
################################################

Reference:
    Huiyuan Chen, Kaixiong Zhou, Kwei-Herng Lai, Chin-Chia Michael Yeh, Yan Zheng, Xia Hu,
    Hao Yang. "Hessian-aware Quantized Node Embeddings for Recommendation." RecSys 2023.
    arXiv:2309.01032.

A LightGCN encoder whose final user and item embeddings are quantized to b-bit integer
codes with a learnable range per side, trained with the Hessian-aware gradient estimator
(GSTE). The paper's method section was not available: the quantizer and the estimator follow
the reconstruction in ``docs/models.md`` (section HQ-GNN), with
every choice a config key in ``properties/model/HQGNN.yaml``.

Inference stores only the b-bit codes k (plus the two ranges) and scores through the packed
predictor: <e^_u, e^_i> with e^ = l + Delta k expands into an integer inner product k_u . k_i
(popcount over bit planes) and affine terms.
"""

import itertools

import torch
import torch.nn as nn

from recbole_quant.model import distillation, options
from recbole_quant.model.abstract import QuantizedRecommender
from recbole_quant.model.losses import bpr, layer0_l2
from recbole_quant.model.layers import LightGCNPropagation, normalized_adjacency
from recbole_quant.model.distillation import build_teacher
from recbole_quant.model.warm_start import load_layer0_tables
from recbole_quant.packed import PackedPredictor
from recbole_quant.quantization import HessianDeltaEstimator, UniformQuantizer, hessian_statistics
from recbole_quant.stage_switch import WarmupSwitchModelMixin, warmup_switch


class HQGNN(WarmupSwitchModelMixin, QuantizedRecommender):
    r"""HQ-GNN: LightGCN + b-bit uniform quantization of the final embeddings + GSTE.

    Shapes: ``n_users`` users and ``n_items`` items (padding item 0 included), embedding
    size ``d``; a training batch holds ``B`` (user, positive, negative) triples.

    The full-precision warm-up lasts ``warmup_epochs`` epochs, or ends earlier with
    ``warmup_patience`` (:mod:`recbole_quant.stage_switch`): ``quantized_from_epoch`` is
    the epoch it ended.
    """

    bit_width_key = "bits"

    # Half-width of the initial range in std units when ``init_std`` is ~: the clipping of the
    # MSE-optimal uniform quantizer of a Gaussian at that width (Max 1960 / Lloyd), so that
    # b >= 2 bits start with their levels spread over the bulk of the values (a +-3 std
    # range puts ~95% of them on the middle two of 2-bit's four levels). 1 bit keeps 3.0:
    # its threshold is the centre whatever the width, and the width only sets the score scale.
    DEFAULT_INIT_STD = {1: 3.0, 2: 1.5, 3: 2.0, 4: 2.5, 5: 3.0, 6: 3.3, 7: 3.7, 8: 4.0}

    @classmethod
    def read_options(cls, config):
        bits = options.bit_width(config, "bits")
        init_std = options.number(config, "init_std", 0, strict=True, none_allowed=True)
        center = options.choice(config, "center", (True, False), none_means=None)
        return dict(
            latent_dim=options.integer(config, "embedding_size", 1),
            n_layers=options.integer(config, "n_layers", 0),
            bits=bits,
            grad_estimator=options.choice(config, "grad_estimator", ("gste", "ste")),
            reg_weight=options.number(config, "reg_weight", 0),
            init_std=cls.DEFAULT_INIT_STD[bits] if init_std is None else init_std,
            fixed_delta=options.number(config, "fixed_delta", 0, none_allowed=True),
            hessian_probes=options.integer(config, "hessian_probes", 1),
            hessian_batches=options.integer(config, "hessian_batches", 1),
            hessian_refresh=options.integer(config, "hessian_refresh", 1),
            warmup_epochs=options.integer(config, "warmup_epochs", 0),
            warmup_patience=options.integer(config, "warmup_patience", 1, none_allowed=True),
            pretrained_checkpoint=options.optional_path(config, "pretrained_checkpoint"),
            # ~ = by width: centring pays at 1 bit (one threshold per table) but removes the
            # shared popularity direction from the scores, which costs quality at b >= 2
            # (docs/results/ml100k.md)
            center=(bits == 1) if center is None else center,
            **distillation.read_options(config),
        )

    def __init__(self, config, dataset):
        super().__init__(config, dataset)  # sets the attributes of read_options
        self.current_epoch = 0  # set by on_train_epoch_start (also after a resume)
        # end of the full-precision warm-up: warmup_epochs, or earlier by warmup_patience
        self.warmup_switch = warmup_switch(
            config, "HQGNN", self.warmup_epochs, self.warmup_patience
        )

        # define layers and loss
        self.user_embedding = nn.Embedding(self.n_users, self.latent_dim)
        self.item_embedding = nn.Embedding(self.n_items, self.latent_dim)
        self.propagation = LightGCNPropagation(normalized_adjacency(dataset), self.n_layers, config)
        if self.center:
            # side_mean_weights @ ego = each side's column mean of the final embeddings
            # (users, items): training centres a batch's rows without propagating the whole
            # table (non-persistent: rebuilt from the dataset)
            n_nodes = self.n_users + self.n_items
            weights = [self.propagation.mean_weights(0, self.n_users),
                       self.propagation.mean_weights(self.n_users, n_nodes)]
            self.register_buffer("side_mean_weights", torch.stack(weights), persistent=False)
        self.user_quantizer = UniformQuantizer(self.bits, init_std=self.init_std)
        self.item_quantizer = UniformQuantizer(self.bits, init_std=self.init_std)
        self._probe_generator = torch.Generator().manual_seed(int(config["seed"]))

        # parameters initialization (as RecBole's LightGCN)
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_embedding.weight)
        if self.pretrained_checkpoint:  # warm start, e.g. from a converged LightGCN
            load_layer0_tables(
                self.pretrained_checkpoint, config, self.user_embedding, self.item_embedding
            )
        if self.grad_estimator == "gste" and self.fixed_delta is not None:
            self.user_quantizer.set_delta(self.fixed_delta)
            self.item_quantizer.set_delta(self.fixed_delta)
        # frozen full-precision teacher when distill_weight > 0 (else None, nothing read)
        self.teacher = build_teacher(self, config, dataset, self.propagation.norm_adj)

    # -- encoder ---------------------------------------------------------------------------
    def forward(self):
        r"""Continuous final embeddings (mean over LightGCN layers, centred if ``center``).

        Returns:
            tuple of torch.Tensor: users [n_users, d], items [n_items, d].
        """
        final = self.propagation.layer_mean(self._ego())
        users, items = torch.split(final, [self.n_users, self.n_items])
        if self.center:
            # Per-dimension centring of each side: LightGCN embeddings share a dominant
            # (popularity) direction, so without it most coordinates sit on the same side of
            # the quantizer's grid for every node and the codes carry little personal signal.
            users = users - users.mean(dim=0, keepdim=True)
            items = items - items.mean(dim=0, keepdim=True)
        return users, items

    def _ego(self):
        return torch.cat([self.user_embedding.weight, self.item_embedding.weight], dim=0)

    def batch_embeddings(self, user_ids, item_ids):
        r"""``forward()``'s rows ``user_ids`` and ``item_ids``, propagating only what they need.

        Same values and gradients as indexing :meth:`forward` (within float rounding): the
        batch's distinct nodes go through :meth:`LightGCNPropagation.layer_mean_rows`, and
        the centring means are the fixed linear map ``side_mean_weights @ ego``.
        Training reads these instead of the full tables, which on a large graph cost more than
        the propagation itself (stacking, means and centring of every row, forward and back).

        Args:
            user_ids (torch.Tensor): [B_u] user ids (repeats allowed).
            item_ids (torch.Tensor): [B_i] item ids (repeats allowed).

        Returns:
            tuple of torch.Tensor: users [B_u, d], items [B_i, d].
        """
        ego = self._ego()
        nodes = torch.cat([user_ids, item_ids + self.n_users])
        rows, position = torch.unique(nodes, return_inverse=True)
        final = self.propagation.layer_mean_rows(ego, rows)[position]
        users, items = torch.split(final, [user_ids.numel(), item_ids.numel()])
        if self.center:
            user_mean, item_mean = self.side_mean_weights @ ego  # one pass over ego
            users, items = users - user_mean, items - item_mean
        return users, items

    def _batch(self, interaction):
        return (
            interaction[self.USER_ID],
            interaction[self.ITEM_ID],
            interaction[self.NEG_ITEM_ID],
        )

    def _bpr(self, u, pos, neg):
        return bpr((u * pos).sum(dim=-1), (u * neg).sum(dim=-1))

    def calculate_loss(self, interaction):
        r"""BPR on the dequantized embeddings + L2 on the batch's layer-0 rows.

        During the full-precision warm-up, BPR is on the continuous embeddings
        (LightGCN); quantized training starts at epoch ``quantized_from_epoch``.
        With ``distill_weight > 0``, the teacher's listwise distillation over the batch's
        distinct users and items (:mod:`recbole_quant.model.distillation`) on the same
        (dequantized or, during warm-up, continuous) embeddings is a second term.

        Args:
            interaction (Interaction): ``USER_ID``, ``ITEM_ID``, ``NEG_ITEM_ID``, each [B].

        Returns:
            torch.Tensor: scalar loss; with distillation on, the tuple
            ``(BPR + L2, distill_weight * L_distill)``.
        """
        user, pos, neg = self._batch(interaction)
        user_e, item_e = self.batch_embeddings(user, torch.cat([pos, neg]))
        u_hat, (pos_hat, neg_hat) = user_e, torch.split(item_e, [pos.numel(), neg.numel()])
        if self.quantizing:
            u_hat = self.user_quantizer(u_hat)
            pos_hat = self.item_quantizer(pos_hat)
            neg_hat = self.item_quantizer(neg_hat)
        mf_loss = self._bpr(u_hat, pos_hat, neg_hat)
        reg_loss = layer0_l2(self.user_embedding, self.item_embedding, user, pos, neg)
        loss = mf_loss + self.reg_weight * reg_loss
        if self.teacher is None:
            return loss
        users, user_row, items, item_row = self.teacher.candidates(user, torch.cat([pos, neg]))
        student_u, student_i = user_e[user_row], item_e[item_row]
        if self.quantizing:
            student_u = self.user_quantizer(student_u)
            student_i = self.item_quantizer(student_i)
        distill = self.teacher.loss(users, items, student_u @ student_i.T)
        return loss, self.distill_weight * distill

    # -- epoch hook: warm-up and Hessian-aware delta --------------------------------------
    @property
    def quantized_from_epoch(self):
        """First epoch trained through the quantizers (read by :class:`QuantTrainer`):
        ``warmup_epochs``, or the epoch after the evaluation that ended the warm-up by
        ``warmup_patience``."""
        return self.warmup_switch.switch_epoch

    @property
    def quantizing(self):
        """Whether the current training epoch trains through the quantizers."""
        return self.current_epoch >= self.quantized_from_epoch

    def on_train_epoch_start(self, epoch_idx, train_data):
        """Track the epoch; re-anchor the ranges during warm-up; refresh delta."""
        self.current_epoch = epoch_idx
        self.warmup_switch.announce(epoch_idx)
        start = self.quantized_from_epoch
        if epoch_idx <= start and start > 0:
            # Warm-up: the ranges follow the continuous embeddings (mean -/+ init_std * std of
            # the whole tables), so validation ranks the codes the model would have now; the
            # last re-anchoring, at the first quantized epoch, is where learning them starts.
            with torch.no_grad():
                user_all, item_all = self.forward()
                self.user_quantizer.initialize_range(user_all)
                self.item_quantizer.initialize_range(item_all)
        if self.quantizing:
            self._refresh_delta(epoch_idx - start, train_data)

    def _refresh_delta(self, epoch_idx, train_data):
        """Refresh the GSTE strength delta every ``hessian_refresh`` quantized epochs.

        delta = (Tr(H)/N) / (3 std(g)) per side, H and g of the BPR loss w.r.t. the unit-grid
        values x^ of that side's batch rows (Hutchinson, ``hessian_probes`` probes, averaged
        over ``hessian_batches`` batches). Propagation is not differentiated twice: the
        continuous embeddings are computed once without grad and x^ is a leaf.
        """
        if self.grad_estimator != "gste" or self.fixed_delta is not None:
            return
        if epoch_idx % self.hessian_refresh != 0:
            return  # delta is a saved buffer: a resumed run keeps the last refresh's value
        estimators = {side: HessianDeltaEstimator() for side in ("user", "item")}
        was_training = self.training
        self.train()  # the first call initialises the quantizer ranges from data
        with torch.no_grad():
            user_all, item_all = self.forward()
        for interaction in itertools.islice(train_data, self.hessian_batches):
            user, pos, neg = self._batch(interaction.to(self.device))
            u_e, pos_e, neg_e = user_all[user], item_all[pos], item_all[neg]
            with torch.no_grad():
                u_fixed = self.user_quantizer(u_e)
                pos_fixed = self.item_quantizer(pos_e)
                neg_fixed = self.item_quantizer(neg_e)
            uq, iq = self.user_quantizer, self.item_quantizer
            x_u = uq.grid_values(u_e).requires_grad_(True)
            stats_u = hessian_statistics(
                lambda x: self._bpr(uq.from_unit(x), pos_fixed, neg_fixed),
                x_u,
                n_probes=self.hessian_probes,
                generator=self._probe_generator,
            )
            estimators["user"].accumulate(*stats_u)
            x_i = torch.cat([iq.grid_values(pos_e), iq.grid_values(neg_e)]).requires_grad_(True)
            n = len(user)
            stats_i = hessian_statistics(
                lambda x: self._bpr(u_fixed, iq.from_unit(x[:n]), iq.from_unit(x[n:])),
                x_i,
                n_probes=self.hessian_probes,
                generator=self._probe_generator,
            )
            estimators["item"].accumulate(*stats_i)
        for side, quantizer in (("user", self.user_quantizer), ("item", self.item_quantizer)):
            if estimators[side].pending_batches > 0:
                quantizer.set_delta(estimators[side].refresh())
        self.train(was_training)
        self.logger.info(
            f"HQGNN quantized epoch {epoch_idx}: GSTE delta user={float(self.user_quantizer.delta):.4g} "
            f"item={float(self.item_quantizer.delta):.4g}"
        )

    # -- packed inference ------------------------------------------------------------------
    def build_predictor(self):
        r"""Pack the b-bit codes of all users and items; score = <e^_u, e^_i> exactly."""
        user_all, item_all = self.forward()
        uq, iq = self.user_quantizer, self.item_quantizer
        return PackedPredictor.from_uniform(
            uq.codes(user_all).cpu(),
            iq.codes(item_all).cpu(),
            self.bits,
            user_range=(float(uq.lower), float(uq.upper)),
            item_range=(float(iq.lower), float(iq.upper)),
        )

    def dequantized_embeddings(self):
        r"""The float embeddings the codes stand for (for tests and analysis).

        Returns:
            tuple of torch.Tensor: users [n_users, d], items [n_items, d].
        """
        with torch.no_grad():
            user_all, item_all = self.forward()
            return (
                self.user_quantizer.dequantize(self.user_quantizer.codes(user_all)),
                self.item_quantizer.dequantize(self.item_quantizer.codes(item_all)),
            )
