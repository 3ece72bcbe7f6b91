r"""
L2QGCN
################################################

Reference:
    Yankai Chen, Yifei Zhang, Yingxue Zhang, Huifeng Guo, Jingjie Li, Ruiming Tang,
    Xiuqiang He, Irwin King. "Towards Low-loss 1-bit Quantization of User-item
    Representations for Top-K Recommendation." arXiv:2112.01944.
    Successor: Yankai Chen et al. "Learning Binarized Graph Representations with Multi-faceted
    Quantization Reinforcement for Top-K Recommendation" (BiGeaR), KDD 2022, arXiv:2206.02115.

Reference code:
    None for L2Q-GCN; BiGeaR's released PyTorch code is the closest artifact
    (see ``docs/models.md`` for what is taken from it).

LightGCN propagates full-precision embeddings; *every* layer l = 0..L is binarised per node,
``b_v(l) = alpha_v(l) * sign(e_v(l))`` with ``alpha_v(l) = mean |e_v(l)|``; the representation
is the concatenation of ``w_l * b_v(l)`` (``w_l = (l+1)/(L+1)`` by default), so

    score(u, i) = sum_l w_l^2 alpha_u(l) alpha_i(l) <q_u(l), q_i(l)>,
    <q_u(l), q_i(l)> = d - 2 popcount(q_u(l) xor q_i(l)).

Inference stores only the (L+1) d-bit codes and (L+1) float scales per node and scores with
the packed predictor (``w_l`` folded into the scales).

Variants (``variant``; each only sets defaults of ``estimator`` and ``anneal``):

* ``base`` (L2Q-GCN): straight-through sign, binarised from the first epoch.
* ``anl`` (L2Q-GCN-anl): BiGeaR's Gaussian approximation of the Dirac delta as the gradient of
  sign ("quantisation approximation") plus annealing: ``two_stage`` (full-precision warm-up
  for ``warmup_epochs`` epochs, or a ``pretrained_checkpoint``, then binarised) or
  ``tanh_temperature`` (``alpha * tanh(tau x / alpha)`` with rising ``tau``). With
  ``warmup_patience``, the ``two_stage`` warm-up ends earlier, after that many evaluations
  without improvement of the validation score (:mod:`recbole_quant.stage_switch`).

Why the warm start matters (measured on ml-100k, ``docs/results/ml100k.md``): binarised
from a random init, the first BPR steps align every coordinate's sign with the dominant
"popularity" direction; with equal-magnitude codes the personal signal cannot flip a sign
against it, so all users end with the same codes on the propagated layers and the ranking
is item popularity (Spearman 0.998): a stall at about Pop's recall, with either estimator.
A full-precision warm-up first spreads the preference structure over the coordinates, so
its signs already rank well and binarised training refines them.

Model selection across stages (:class:`recbole_quant.trainer.QuantTrainer`): validation always scores with the
packed binary codes, whatever the training stage, so every checkpoint is judged as the binary
model it would be at test time. Before binarised training starts (the warm-up, or the
temperature ramp) early stopping is paused; at the first binarised epoch the best validation
score is reset, so the selected checkpoint is always one trained with binarisation on.
"""

import torch
import torch.nn as nn
from recbole.utils import InputType

from recbole_quant.errors import ConfigValueError
from recbole_quant.model import distillation, options
from recbole_quant.model.abstract import QuantizedRecommender
from recbole_quant.model.losses import bpr, layer0_l2
from recbole_quant.model.layers import LightGCNPropagation, normalized_adjacency
from recbole_quant.packed import PackedPredictor
from recbole_quant.model.distillation import build_teacher
from recbole_quant.model.warm_start import load_layer0_tables
from recbole_quant.quantization import ScaledSign, TanhSign, TemperatureSchedule
from recbole_quant.stage_switch import WarmupSwitchModelMixin, warmup_switch

# variant -> (estimator, anneal) used when those keys are ~ (None)
VARIANT_DEFAULTS = {"base": ("ste", "none"), "anl": ("gaussian", "two_stage")}
ESTIMATORS = ("ste", "gaussian")
ANNEALS = ("two_stage", "tanh_temperature", "none")


class L2QGCN(WarmupSwitchModelMixin, QuantizedRecommender):
    r"""L2Q-GCN / L2Q-GCN-anl: per-layer 1-bit codes with per-node, per-layer scales.

    Shapes: ``n_users`` users and ``n_items`` items (padding item 0 included), embedding size
    ``d``, ``G = n_layers + 1`` layers; a training batch holds ``B`` (user, positive, negative)
    triples.
    """

    input_type = InputType.PAIRWISE

    @property
    def quantized_from_epoch(self):
        """First epoch trained with binarisation on (read by :class:`QuantTrainer`)."""
        return self.binary_from_epoch

    @property
    def binary_from_epoch(self):
        """First epoch trained with binarisation on: ``binary_cap`` (0 without annealing,
        ``warmup_epochs`` or 0 with a warm start for ``two_stage``, ``tau_epochs`` for
        ``tanh_temperature``), or earlier where ``warmup_patience`` ended the two_stage
        warm-up."""
        return self.warmup_switch.switch_epoch

    @classmethod
    def read_options(cls, config):
        variant = options.choice(config, "variant", tuple(VARIANT_DEFAULTS))
        default_estimator, default_anneal = VARIANT_DEFAULTS[variant]
        anneal = options.choice(config, "anneal", ANNEALS, none_means=default_anneal)
        warmup_epochs = options.integer(config, "warmup_epochs", 0)
        pretrained_checkpoint = options.optional_path(config, "pretrained_checkpoint")
        schedule = None
        if anneal == "tanh_temperature":
            try:
                schedule = TemperatureSchedule(
                    config["tau_start"], config["tau_end"], config["tau_epochs"], config["tau_kind"]
                )
            except (TypeError, ValueError) as err:
                raise ConfigValueError(f"tanh_temperature schedule: {err}") from None
        warmup_patience = options.integer(config, "warmup_patience", 1, none_allowed=True)
        # first epoch trained with binarisation on (QuantTrainer's model-selection rule); a
        # two_stage warm-up may end earlier by warmup_patience
        if anneal == "two_stage":
            binary_cap = 0 if pretrained_checkpoint else warmup_epochs
        elif anneal == "tanh_temperature":
            binary_cap = schedule.epochs
        else:
            binary_cap = 0
        return dict(
            variant=variant,
            estimator=options.choice(config, "estimator", ESTIMATORS, none_means=default_estimator),
            anneal=anneal,
            latent_dim=options.integer(config, "embedding_size", 1),
            n_layers=options.integer(config, "n_layers", 0),
            layer_weighting=options.choice(config, "layer_weights", ("linear", "uniform")),
            gamma=options.number(config, "gamma", 0, strict=True),
            init_std=options.number(config, "init_std", 0, strict=True),
            reg_weight=options.number(config, "reg_weight", 0),
            scale_grad=options.boolean(config, "scale_grad"),
            warmup_epochs=warmup_epochs,
            pretrained_checkpoint=pretrained_checkpoint,
            schedule=schedule,
            binary_cap=binary_cap,
            warmup_patience=warmup_patience,
            **distillation.read_options(config),
        )

    def __init__(self, config, dataset):
        super().__init__(config, dataset)  # sets the attributes of read_options
        patience = self.warmup_patience if self.anneal == "two_stage" else None
        if self.warmup_patience is not None and patience is None:
            self.logger.warning(
                f"L2QGCN: warmup_patience={self.warmup_patience} applies to anneal=two_stage "
                f"only (its full-precision warm-up); ignored with anneal={self.anneal}."
            )
        self.warmup_switch = warmup_switch(
            config, "L2QGCN", self.binary_cap, patience, stage="binarised training"
        )
        if self.binary_from_epoch >= config["epochs"]:
            self.logger.warning(
                f"L2QGCN: epochs={config['epochs']} <= first binarised epoch "
                f"{self.binary_from_epoch} ({self.anneal}): binarised training never starts; "
                "the result is the sign of the annealing-stage model."
            )

        # define layers and loss
        self.user_embedding = nn.Embedding(self.n_users, self.latent_dim)
        self.item_embedding = nn.Embedding(self.n_items, self.latent_dim)
        self.propagation = LightGCNPropagation(normalized_adjacency(dataset), self.n_layers, config)
        self.binarizer = ScaledSign(self.estimator, self.gamma, self.scale_grad)
        # always present (tau = 1, unused, without tanh_temperature) so that every L2QGCN
        # checkpoint has the same keys
        self.relax = TanhSign(self.schedule) if self.schedule is not None else TanhSign(tau=1.0)
        self.register_buffer("layer_weight", self._layer_weights(), persistent=False)

        # training stage, set per epoch by on_train_epoch_start
        self.current_epoch = 0
        self.stage = self.stage_at(0)

        # parameters initialization: N(0, init_std^2) as BiGeaR, or a pretrained checkpoint
        nn.init.normal_(self.user_embedding.weight, std=self.init_std)
        nn.init.normal_(self.item_embedding.weight, std=self.init_std)
        if self.pretrained_checkpoint:
            load_layer0_tables(
                self.pretrained_checkpoint, config, self.user_embedding, self.item_embedding
            )
        # frozen full-precision teacher when distill_weight > 0 (else None, nothing read)
        self.teacher = build_teacher(self, config, dataset, self.propagation.norm_adj)

    def _layer_weights(self):
        """``w_l`` for l = 0..L: [G] float32."""
        n = self.n_layers + 1
        if self.layer_weighting == "linear":
            return torch.arange(1, n + 1, dtype=torch.float32) / n
        return torch.full((n,), 1.0 / n)

    # -- stages ----------------------------------------------------------------------------
    def stage_at(self, epoch_idx):
        """Training representation at ``epoch_idx``: 'float', 'binary' or 'tanh'."""
        if self.anneal == "tanh_temperature":
            return "tanh"
        if self.anneal == "two_stage" and epoch_idx < self.binary_from_epoch:
            return "float"
        return "binary"

    def on_train_epoch_start(self, epoch_idx, train_data):
        """Set the stage (and the tanh temperature) for ``epoch_idx``; called by the trainer
        before every epoch, also the first one after a resume."""
        self.warmup_switch.announce(epoch_idx)
        stage = self.stage_at(epoch_idx)
        if stage != self.stage or epoch_idx == self.binary_from_epoch > 0:
            self.logger.info(f"L2QGCN epoch {epoch_idx}: training stage '{stage}'")
        self.current_epoch, self.stage = epoch_idx, stage
        if self.anneal == "tanh_temperature":
            tau = self.relax.set_epoch(epoch_idx)
            self.logger.info(f"L2QGCN epoch {epoch_idx}: tanh temperature tau={tau:.4g}")

    # -- encoder ---------------------------------------------------------------------------
    def forward(self):
        r"""Full-precision LightGCN propagation, every layer kept.

        Returns:
            tuple of torch.Tensor: users [n_users, G, d], items [n_items, G, d]
            (layer l in ``[:, l]``).
        """
        ego = torch.cat([self.user_embedding.weight, self.item_embedding.weight], dim=0)
        layers = torch.stack(self.propagation(ego), dim=1)
        return torch.split(layers, [self.n_users, self.n_items])

    def batch_layers(self, user_ids, item_ids):
        r"""``forward()``'s rows ``user_ids`` and ``item_ids``, propagating only what they need.

        Same values and gradients as indexing :meth:`forward` (within float rounding), through
        :meth:`LightGCNPropagation.layers_rows` over the batch's distinct nodes: training never
        stacks the full layer tables.

        Returns:
            tuple of torch.Tensor: users [B_u, G, d], items [B_i, G, d].
        """
        ego = torch.cat([self.user_embedding.weight, self.item_embedding.weight], dim=0)
        rows, position = torch.unique(torch.cat([user_ids, item_ids + self.n_users]), return_inverse=True)
        layers = self.propagation.layers_rows(ego, rows)[position]
        return torch.split(layers, [user_ids.numel(), item_ids.numel()])

    def quantize(self, x, stage=None):
        r"""The training representation of rows of layer embeddings (before layer weights).

        Args:
            x (torch.Tensor): [..., G, d] full-precision layer embeddings.
            stage (str): 'float' (identity), 'binary' (``alpha * sign`` with the configured
                estimator) or 'tanh' (``alpha * tanh(tau x / alpha)``); default: current stage.

        Returns:
            torch.Tensor: [..., G, d].
        """
        stage = stage or self.stage
        if stage == "float":
            return x
        if stage == "binary":
            return self.binarizer(x)
        alpha = x.abs().mean(dim=-1, keepdim=True)
        if not self.scale_grad:
            alpha = alpha.detach()
        return alpha * self.relax(x / alpha.clamp_min(1e-12))

    def _score(self, u, i):
        """Weighted concatenation inner product: [B, G, d] x [B, G, d] -> [B]."""
        return ((u * i).sum(dim=-1) * self.layer_weight.pow(2)).sum(dim=-1)

    def calculate_loss(self, interaction):
        r"""BPR on the (stage's) binarised concatenation + L2 on the batch's layer-0 rows.

        With ``distill_weight > 0``, the teacher's listwise distillation over the batch's
        distinct users and items (:mod:`recbole_quant.model.distillation`) on the same
        scores (the stage's representation, layer-weighted) is a second term.

        Args:
            interaction (Interaction): ``USER_ID``, ``ITEM_ID``, ``NEG_ITEM_ID``, each [B].

        Returns:
            torch.Tensor: scalar loss; with distillation on, the tuple
            ``(BPR + L2, distill_weight * L_distill)``.
        """
        user = interaction[self.USER_ID]
        pos = interaction[self.ITEM_ID]
        neg = interaction[self.NEG_ITEM_ID]
        user_e, item_e = self.batch_layers(user, torch.cat([pos, neg]))
        pos_e, neg_e = torch.split(item_e, [pos.numel(), neg.numel()])
        u = self.quantize(user_e)
        p = self.quantize(pos_e)
        n = self.quantize(neg_e)
        mf_loss = bpr(self._score(u, p), self._score(u, n))
        reg_loss = layer0_l2(self.user_embedding, self.item_embedding, user, pos, neg)
        loss = mf_loss + self.reg_weight * reg_loss
        if self.teacher is None:
            return loss
        users, user_row, items, item_row = self.teacher.candidates(user, torch.cat([pos, neg]))
        student_u = self.quantize(user_e[user_row])  # [U, G, d]
        student_i = self.quantize(item_e[item_row])  # [M, G, d]
        scores = torch.einsum("ugd,mgd,g->um", student_u, student_i, self.layer_weight.pow(2))
        distill = self.teacher.loss(users, items, scores)
        return loss, self.distill_weight * distill

    # -- packed inference ------------------------------------------------------------------
    @torch.no_grad()
    def binary_codes(self):
        r"""Sign codes and layer-weighted scales of all users and items.

        Returns:
            tuple: user codes [n_users, G, d] int8 (+1 where e >= 0, else -1), user scales
            [n_users, G] float32 (``w_l * alpha_u(l)``), item codes [n_items, G, d], item
            scales [n_items, G].
        """
        out = []
        for table in self.forward():
            codes, alpha = self.binarizer.encode(table)
            out += [codes, alpha.squeeze(-1) * self.layer_weight]
        return tuple(out)

    def build_predictor(self):
        r"""Pack every layer's codes; score = sum_l (w_l alpha_u)(w_l alpha_i) <q_u, q_i>."""
        user_codes, user_scales, item_codes, item_scales = (t.cpu() for t in self.binary_codes())
        return PackedPredictor.from_signs(user_codes, item_codes, user_scales, item_scales)

    @torch.no_grad()
    def binary_scores(self, user):
        r"""Float64 reference of the packed scores, computed from the scaled codes.

        Args:
            user (torch.Tensor): [B] user ids.

        Returns:
            torch.Tensor: [B, n_items] float64.
        """
        user_codes, user_scales, item_codes, item_scales = self.binary_codes()
        u = user_codes[user].double() * user_scales[user].double().unsqueeze(-1)
        i = item_codes.double() * item_scales.double().unsqueeze(-1)
        return torch.einsum("bgd,ngd->bn", u, i)
