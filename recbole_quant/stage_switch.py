"""Full-precision warm-ups that end when validation stops improving (``warmup_patience``).

HQGNN (``warmup_epochs``), L2QGCN (``anneal: two_stage``, ``warmup_epochs``) and HashGNN
(``warmup_epochs``: ``beta = 0`` before its guided-STE schedule) train in full precision
first. With ``warmup_patience: ~`` that stage has the fixed length ``warmup_epochs``. With
``warmup_patience: P`` it ends after P evaluations in a row without improvement of the
validation score (the score RecBole's early stopping uses, ``valid_metric``), and at the
latest after ``warmup_epochs`` epochs (the cap). An evaluation improves when its score is
strictly better than the best warm-up score so far: a plateau (equal scores) counts as no
improvement, unlike RecBole's early stopping, which keeps a tie as the new best. During the
warm-up validation ranks the model's codes (as always), i.e. the codes the quantized stage
would start from.

Two halves, neither importing the other's side (models never import the trainer):

* :class:`WarmupSwitch` (model side): the switch epoch and the patience state; the models
  expose it through :class:`WarmupSwitchModelMixin`, which adds
  ``on_valid_end(epoch_idx, valid_score)`` and keeps the state in the model's
  ``other_parameter()``, so it is saved in every checkpoint and a ``--resume`` run knows
  whether (and when) the switch happened.
* :class:`StageSwitchMixin` (trainer side): calls ``model.on_valid_end`` after each
  validation, before RecBole's early stopping and checkpointing see the score, so the
  checkpoint of the evaluation that ends the warm-up already holds the switch.

The model's ``quantized_from_epoch`` is the switch epoch (the cap until patience ends the
warm-up); :class:`recbole_quant.trainer.QuantTrainer` resets the best validation score and the
early-stopping counter up to and including that epoch, so the quantized stage starts its own
model selection at the epoch the switch happened.
"""

import math
from logging import getLogger


class WarmupSwitch:
    """When the full-precision warm-up ends: after ``patience`` evaluations without
    improvement, or at ``cap`` epochs.

    Args:
        name (str): the model's name (in log lines).
        cap (int): the last warm-up epoch is ``cap - 1`` at the latest (0: no warm-up).
        patience (int or None): evaluations without improvement that end the warm-up;
            None: the warm-up lasts ``cap`` epochs.
        bigger (bool): whether a bigger validation score is better.
        stage (str): what starts at the switch (in log lines).
    """

    def __init__(self, name, cap, patience=None, bigger=True, stage="quantized training"):
        self.name = name
        self.cap = int(cap)
        self.patience = patience
        self.bigger = bool(bigger)
        self.stage = stage
        self.switched_at = None  # first epoch after a warm-up ended by patience
        self.best = None  # best warm-up validation score so far
        self.bad_evals = 0  # evaluations in a row without improvement

    @property
    def switch_epoch(self):
        """First epoch of the quantized stage: where patience ended the warm-up, else the cap."""
        return self.cap if self.switched_at is None else self.switched_at

    def observe(self, epoch_idx, score):
        """Record the validation score after epoch ``epoch_idx``; True if it ends the warm-up.

        Only warm-up evaluations whose next epoch is still below the cap count; later ones
        (and all of them with ``patience`` None) are ignored.
        """
        if self.patience is None or epoch_idx + 1 >= self.switch_epoch:
            return False
        score = float(score)  # RecBole's scores may be numpy floats: keep checkpoints plain
        if math.isnan(score):
            improved = False
        elif self.best is None:
            improved = True
        else:
            improved = score > self.best if self.bigger else score < self.best
        if improved:
            self.best, self.bad_evals = score, 0
            return False
        self.bad_evals += 1
        if self.bad_evals < self.patience:
            return False
        self.switched_at = epoch_idx + 1
        getLogger().info(
            f"{self.name}: full-precision warm-up ends after epoch {epoch_idx} (patience "
            f"reached: {self.bad_evals} evaluation(s) without improvement of the validation "
            f"score, best {self.best:.6g}, warmup_patience={self.patience}); {self.stage} "
            f"starts at epoch {self.switched_at}."
        )
        return True

    def announce(self, epoch_idx):
        """Log the switch by the cap when ``epoch_idx`` is its first epoch (patience set only)."""
        if self.patience is not None and self.switched_at is None and epoch_idx == self.cap > 0:
            getLogger().info(
                f"{self.name}: full-precision warm-up ends after epoch {self.cap - 1} (cap "
                f"reached: warmup_epochs={self.cap} before warmup_patience={self.patience} "
                f"evaluations without improvement); {self.stage} starts at epoch {self.cap}."
            )

    def state_dict(self):
        """Plain values (a checkpoint is loaded with ``weights_only=True``)."""
        return {"switched_at": self.switched_at, "best": self.best, "bad_evals": self.bad_evals}

    def load_state_dict(self, state):
        self.switched_at = state.get("switched_at")
        self.best = state.get("best")
        self.bad_evals = int(state.get("bad_evals") or 0)

    def __repr__(self):
        return (
            f"WarmupSwitch(cap={self.cap}, patience={self.patience}, "
            f"switched_at={self.switched_at}, bad_evals={self.bad_evals})"
        )


def warmup_switch(config, name, cap, patience, stage="quantized training"):
    """A :class:`WarmupSwitch` for a model, with a warning when patience cannot act."""
    if patience is not None and cap > 0:
        eval_step = config["eval_step"]
        if not eval_step or eval_step <= 0:
            getLogger().warning(
                f"{name}: warmup_patience={patience} needs validation, but eval_step="
                f"{eval_step}: the warm-up lasts warmup_epochs={cap} epochs."
            )
    bigger = config["valid_metric_bigger"]
    return WarmupSwitch(name, cap, patience, True if bigger is None else bigger, stage)


class WarmupSwitchModelMixin:
    """Model side: ``on_valid_end`` feeds ``self.warmup_switch``; its state is an
    ``other_parameter`` (saved in checkpoints, restored by ``--resume``)."""

    _OTHER_KEY = "warmup_switch"

    def on_valid_end(self, epoch_idx, valid_score):
        """Called by :class:`StageSwitchMixin` after each validation."""
        self.warmup_switch.observe(epoch_idx, valid_score)

    def other_parameter(self):
        return {**super().other_parameter(), self._OTHER_KEY: self.warmup_switch.state_dict()}

    def load_other_parameter(self, para):
        para = dict(para or {})
        state = para.pop(self._OTHER_KEY, None)
        if state is not None:  # checkpoints from before warmup_patience have none
            self.warmup_switch.load_state_dict(state)
        super().load_other_parameter(para)


class StageSwitchMixin:
    """Trainer side: ``model.on_valid_end(epoch_idx, valid_score)`` after each validation.

    Overrides RecBole's ``Trainer._valid_epoch``, which ``fit`` calls every ``eval_step``
    epochs just before early stopping and checkpointing: the model's reaction (ending its
    warm-up) is in the checkpoint of that same evaluation. Must come before RecBole's
    ``Trainer`` in the bases.
    """

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        self._validated_epoch = epoch_idx  # the epoch the next validation follows
        return super()._train_epoch(train_data, epoch_idx, loss_func, show_progress)

    def _valid_epoch(self, valid_data, show_progress=False):
        valid_score, valid_result = super()._valid_epoch(valid_data, show_progress=show_progress)
        hook = getattr(self.model, "on_valid_end", None)
        epoch_idx = getattr(self, "_validated_epoch", None)
        if hook is not None and epoch_idx is not None:
            hook(epoch_idx, valid_score)
        return valid_score, valid_result
