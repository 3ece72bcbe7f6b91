"""Trainers: safe checkpoints, per-epoch model hooks, clear divergence errors.

RecBole's ``Trainer`` pickles its whole ``Config`` into each checkpoint, and torch >= 2.6
refuses to load that with the default ``weights_only=True`` -- so the final test evaluation of
``run_recbole`` crashes after training. :class:`SafeCheckpointMixin` saves only tensors and
plain Python values and loads with ``weights_only=True``: no arbitrary pickle is ever loaded.
It is mixed into whatever trainer RecBole picks for a baseline (:func:`get_trainer`) and into
:class:`QuantTrainer`, the trainer of the plugin's models, which adds:

* ``model.on_train_epoch_start(epoch_idx, train_data)`` before every training epoch, if the
  model defines it (HQ-GNN refreshes its Hessian-aware delta there, HashGNN advances its
  guided-STE schedule, L2Q-GCN switches annealing stages). Resuming from a checkpoint calls
  it with the resumed epoch, so schedules continue where they stopped.
* full-sort evaluation on the packed codes, and a sparse collector for every model
  (:mod:`recbole_quant.evaluation`);

:class:`DivergenceGuardMixin` (in every trainer) stops training with
:class:`TrainingDivergedError` naming the epoch when the loss, a weight or buffer stops being
finite, or a quantized model's codes can no longer be built (e.g. a quantizer range collapsed
to one value); it checks after each training epoch, before anything is evaluated or saved, so
the best checkpoint saved so far stays on disk and is never replaced by diverged weights.
"""

import itertools
import math
import os
import time

import torch
from recbole.trainer import Trainer
from recbole.utils import get_trainer as recbole_get_trainer
from recbole.utils import set_color

from recbole_quant.checkpoint import (
    CHECKPOINT_FORMAT,
    load_checkpoint,
    plain_config,
    reserve_checkpoint_name,
    save_atomic,
)
from recbole_quant.diagnostics import CodeHealthMixin
from recbole_quant.distributed import SlicedBatchMixin, broadcast_text, is_distributed, is_rank_zero
from recbole_quant.errors import CheckpointError, TrainingDivergedError
from recbole_quant.evaluation import PackedEvalMixin, SparseCollector
from recbole_quant.registry import is_plugin_model
from recbole_quant.rng_state import capture_rng_state, restore_rng_state
from recbole_quant.stage_switch import StageSwitchMixin

class SafeCheckpointMixin:
    """Checkpoints of tensors and plain values, loaded with ``weights_only=True``."""

    def __init__(self, config, model):
        super().__init__(config, model)
        self._name_reserved = False
        self.saved_epoch = None  # epoch of the checkpoint on disk (None: nothing saved yet)
        if is_distributed(config):
            # rank 0 reserves the name now and tells the others, which load it for testing
            # (a collective: every rank is here at the same point)
            reserved = reserve_checkpoint_name(self.saved_model_file) if is_rank_zero(config) else None
            self.saved_model_file = broadcast_text(reserved, config)
            self._name_reserved = True

    def _reserve_name(self):
        if not self._name_reserved:
            self.saved_model_file = reserve_checkpoint_name(self.saved_model_file)
            self._name_reserved = True

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        if not self.config["single_spec"] and self.config["local_rank"] != 0:
            return
        if epoch == -1 and self.saved_epoch is not None and "saved_model_file" not in kwargs:
            # RecBole's fit saves "epoch -1" when a resumed run has nothing left to train: the
            # resumed file already holds this model, and rewriting it as epoch -1 would make
            # a later --resume start again from epoch 0
            return
        if "saved_model_file" not in kwargs:
            self._reserve_name()
        saved_model_file = kwargs.pop("saved_model_file", self.saved_model_file)
        state = {
            "format": CHECKPOINT_FORMAT,
            "model": self.config["model"],
            "dataset": self.config["dataset"],
            "config": plain_config(self.config),
            "epoch": int(epoch),
            "cur_step": int(self.cur_step),
            "best_valid_score": float(self.best_valid_score),
            "state_dict": self.model.state_dict(),
            "other_parameter": self.model.other_parameter(),
            "optimizer": self.optimizer.state_dict(),
            # what the next epoch draws from (negatives, batch order): a resume continues it
            "rng_state": capture_rng_state(getattr(self, "_train_loader", None)),
        }
        save_atomic(state, saved_model_file)
        if saved_model_file == self.saved_model_file:
            self.saved_epoch = int(epoch)
        if verbose:
            self.logger.info(set_color("Saving current", "blue") + f": {saved_model_file}")

    def _load_model_state(self, state):
        self.model.load_state_dict(state["state_dict"])
        self.model.load_other_parameter(state.get("other_parameter"))

    def resume_checkpoint(self, resume_file):
        state = load_checkpoint(resume_file, self.device, expected_model=self.config["model"])
        if state["dataset"] != self.config["dataset"]:
            raise CheckpointError(
                f"{resume_file} was trained on dataset {state['dataset']!r}, not "
                f"{self.config['dataset']!r}: resume it with --dataset={state['dataset']}."
            )
        placeholder = self.saved_model_file if self._name_reserved else None
        if placeholder and placeholder != str(resume_file) and is_rank_zero(self.config):
            if os.path.isfile(placeholder) and os.path.getsize(placeholder) == 0:
                os.remove(placeholder)  # the name reserved at start-up is not needed
        self.saved_model_file = str(resume_file)
        self.saved_epoch = state["epoch"]
        self._name_reserved = True  # continue writing the resumed file
        self.start_epoch = state["epoch"] + 1
        self.cur_step = state["cur_step"]
        self.best_valid_score = state["best_valid_score"]
        try:
            self._load_model_state(state)
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as err:
            raise CheckpointError(
                f"{resume_file} does not fit the model built from this config (a different "
                f"embedding_size, bits, dataset split or learner?). Resume with the options it "
                f"was trained with. Detail: {str(err).splitlines()[0]}"
            ) from None
        self._apply_resumed_learning_rate(state, resume_file)
        self._resumed_rng_state = state.get("rng_state")
        if self._resumed_rng_state is None:
            self.logger.warning(
                f"{resume_file} holds no random-number state (written before it was saved): "
                "the resumed epochs draw their negatives and batch order from the seed again."
            )
        self.logger.info(f"Checkpoint loaded. Resume training from epoch {self.start_epoch}")

    def fit(self, train_data, *args, **kwargs):  # RecBole's trainers differ in the rest
        # the loader's shuffle generator is saved with every checkpoint (rng_state)
        self._train_loader = train_data
        resumed = getattr(self, "_resumed_rng_state", None)
        if resumed is not None:  # continue the streams where the checkpoint left them
            restore_rng_state(resumed, train_data)
            self._resumed_rng_state = None
        return super().fit(train_data, *args, **kwargs)

    def _apply_resumed_learning_rate(self, state, resume_file):
        """The configured ``learning_rate`` wins over the one in the optimizer state.

        ``optimizer.load_state_dict`` restores the saved rate; a resume with another
        ``--learning_rate`` is a second stage at a new rate (e.g. a converged fast-preset run
        continued at 0.001), so the configured value is set on every parameter group.
        """
        saved_config = state.get("config") or {}
        saved_lr = saved_config.get("learning_rate") if isinstance(saved_config, dict) else None
        if saved_lr is None or float(saved_lr) == float(self.learning_rate):
            return
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate
        self.logger.warning(
            f"{resume_file} was trained with learning_rate={saved_lr}; training continues at "
            f"learning_rate={self.learning_rate} from this run's config (pass "
            f"--learning_rate={saved_lr} to keep the old rate)."
        )

    @torch.no_grad()
    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if eval_data and load_best_model:
            checkpoint_file = model_file or self.saved_model_file
            state = load_checkpoint(checkpoint_file, self.device, self.config["model"])
            self._load_model_state(state)
            self.logger.info(
                f"Loading model structure and parameters from {checkpoint_file}"
            )
        return super().evaluate(
            eval_data, load_best_model=False, model_file=None, show_progress=show_progress
        )


class EpochTimerMixin:
    """Records the wall time of each training epoch (``epoch_seconds``) for reports."""

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        if not hasattr(self, "epoch_seconds"):
            self.epoch_seconds = []
        start = time.perf_counter()
        loss = super()._train_epoch(train_data, epoch_idx, loss_func, show_progress)
        self.epoch_seconds.append(time.perf_counter() - start)
        return loss


class EpochHookMixin:
    """Calls ``model.on_train_epoch_start(epoch_idx, train_data)`` before each epoch.

    Placed after :class:`EpochTimerMixin` in the MRO so the hook's work (e.g. a Hessian
    refresh) counts in the epoch's time.
    """

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        self._current_epoch = epoch_idx
        hook = getattr(self.model, "on_train_epoch_start", None)
        if hook is not None:
            hook(epoch_idx, train_data)
        return super()._train_epoch(train_data, epoch_idx, loss_func, show_progress)


class DivergenceGuardMixin:
    """Stops training with :class:`TrainingDivergedError` as soon as it diverges.

    Per batch: the loss must be finite (RecBole only catches NaN, with a bare ``ValueError``).
    After each training epoch, before it is validated or saved: every floating weight and
    buffer must be finite, and a quantized model must still yield codes (its predictor is
    built here -- the validation that follows reuses it -- so a collapsed quantizer range
    is reported as divergence, not as a ``ValueError`` deep inside the packing).
    """

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        self._current_epoch = epoch_idx
        loss = super()._train_epoch(train_data, epoch_idx, loss_func, show_progress)
        self._check_weights()
        return loss

    def _check_nan(self, loss):
        value = loss.item() if torch.is_tensor(loss) else float(loss)
        if not math.isfinite(value):
            raise self._diverged(f"Training loss became {value}")

    def _check_weights(self):
        named = itertools.chain(self.model.named_parameters(), self.model.named_buffers())
        for name, tensor in named:
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                raise self._diverged(f"Weight '{name}' became non-finite (inf or nan)")
        if hasattr(self.model, "build_predictor"):
            self.model.eval()
            try:
                self.model.predictor
            except ValueError as err:  # the packing's own check on ranges / scales
                raise self._diverged(f"The codes cannot be built any more ({err})") from None

    def _diverged(self, what):
        epoch = getattr(self, "_current_epoch", "?")
        saved = getattr(self, "saved_epoch", None)
        kept = (
            f"The best checkpoint so far (epoch {saved}) is kept at {self.saved_model_file}."
            if saved is not None
            else "No checkpoint had been saved yet."
        )
        return TrainingDivergedError(
            f"Training diverged: {what} at epoch {epoch}. {kept} "
            "Try a lower learning_rate or a larger reg_weight."
        )


class SparseCollectorMixin:
    """Uses :class:`SparseCollector`: RecBole's metrics without the dense positives matrix."""

    deterministic_ties = False

    def __init__(self, config, model):
        super().__init__(config, model)
        self.eval_collector = SparseCollector(config, deterministic_ties=self.deterministic_ties)


class QuantTrainer(
    CodeHealthMixin,
    DivergenceGuardMixin,
    EpochTimerMixin,
    EpochHookMixin,
    StageSwitchMixin,
    SlicedBatchMixin,
    SparseCollectorMixin,
    SafeCheckpointMixin,
    PackedEvalMixin,
    Trainer,
):
    """Trainer of the plugin's models (RecBole's ``Trainer`` plus the mixins above).

    Full-sort evaluation runs on the packed fused top-k (:class:`PackedEvalMixin`) unless
    ``eval_path: standard``; ties are broken by (higher score, lower item id) on both paths.

    The base order matters (Python calls the leftmost first):

    * ``CodeHealthMixin`` (:mod:`recbole_quant.diagnostics`) before ``DivergenceGuardMixin``:
      its per-epoch code diagnostics run once the guard has checked the weights and built
      the predictor, so they read that predictor's codes (never diverged weights) and stay
      outside the epoch's measured time;
    * ``DivergenceGuardMixin`` next: its weight check runs after the whole epoch, outside
      the epoch's measured time;
    * ``EpochTimerMixin`` before ``EpochHookMixin``: the hook's work (a Hessian refresh)
      counts in the epoch's time;
    * ``EpochHookMixin`` before ``SlicedBatchMixin``: the hook sees the whole global batch
      stream on every rank; the slicing (multi-process runs only) wraps just the loss;
    * ``StageSwitchMixin`` (:mod:`recbole_quant.stage_switch`) next to the other model hook,
      anywhere before RecBole's ``Trainer``, whose ``_valid_epoch`` it wraps: the model's
      ``on_valid_end(epoch, score)`` (a ``warmup_patience`` warm-up ending) runs before
      early stopping and checkpointing see that evaluation;
    * ``SafeCheckpointMixin`` before ``PackedEvalMixin``: its ``evaluate`` loads the best
      checkpoint, then hands over to the packed path;
    * ``PackedEvalMixin`` before RecBole's ``Trainer``: it overrides ``_full_sort_batch_eval``
      and ``evaluate``; placed after ``Trainer`` it would be skipped and evaluation would
      silently fall back to the dense path (``tests/test_trainer_mixins.py`` guards this).
    """

    deterministic_ties = True

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        """Model selection across a full-precision warm-up.

        ``model.quantized_from_epoch`` (0 when absent) is the first epoch trained through the
        quantizers: fixed, or the epoch where ``warmup_patience`` ended the warm-up (the
        model keeps it in its checkpointed ``other_parameter``). For every epoch up to and
        including it, the best validation score and the early-stopping counter are reset
        after the epoch's training (so before its validation): warm-up evaluations (which
        rank the codes all the same) are logged and saved but never stop training, and once
        quantized training runs only its own checkpoints compete. A function of the epoch
        index and the model's saved switch epoch, so it holds after a resume.
        """
        loss = super()._train_epoch(train_data, epoch_idx, loss_func, show_progress)
        start = getattr(self.model, "quantized_from_epoch", 0)
        if start > 0 and epoch_idx <= start:
            self.best_valid_score = -math.inf if self.valid_metric_bigger else math.inf
            self.cur_step = 0
        return loss


def get_trainer(config, model_class):
    """The trainer class for a model, chosen by name as RecBole-GNN does.

    A plugin model (see :mod:`recbole_quant.registry`) gets ``<Model>Trainer`` from this
    module if one is defined, else :class:`QuantTrainer`. Any other model gets RecBole's
    choice, wrapped in :class:`SafeCheckpointMixin` (and the timer and sparse collector) so
    that baselines, too, reload their best checkpoint on torch >= 2.6. Models never name
    their trainer: ``recbole_quant.model`` does not import this module.
    """
    name = model_class if isinstance(model_class, str) else model_class.__name__
    if is_plugin_model(name):
        return globals().get(f"{name}Trainer", QuantTrainer)
    base = recbole_get_trainer(config["MODEL_TYPE"], config["model"])
    if issubclass(base, SafeCheckpointMixin) or not issubclass(base, Trainer):
        return base
    return type(
        base.__name__,
        (DivergenceGuardMixin, EpochTimerMixin, SlicedBatchMixin, SparseCollectorMixin,
         SafeCheckpointMixin, base),
        {"__doc__": base.__doc__},
    )
