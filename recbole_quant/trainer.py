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
* a NaN or infinite loss stops training with :class:`TrainingDivergedError` naming the epoch;
  the best checkpoint saved so far stays on disk.
"""

import math
import os
import time

import torch
from recbole.trainer import Trainer
from recbole.utils import get_trainer as recbole_get_trainer
from recbole.utils import set_color

from recbole_quant.errors import CheckpointError, TrainingDivergedError
from recbole_quant.evaluation import PackedEvalMixin, SparseCollector

CHECKPOINT_FORMAT = "recbole_quant.checkpoint/1"
_PLAIN = (str, int, float, bool, type(None))


def plain_config(config):
    """The final config as plain values only (what ``weights_only`` loading accepts)."""

    def convert(value):
        if isinstance(value, _PLAIN):
            return value
        if isinstance(value, (list, tuple)):
            return [convert(v) for v in value]
        if isinstance(value, dict):
            return {str(k): convert(v) for k, v in value.items()}
        return str(value)  # enums, torch.device, ...

    return {str(k): convert(v) for k, v in config.final_config_dict.items()}


def load_checkpoint(path, map_location="cpu", expected_model=None):
    """Load a checkpoint written by :class:`SafeCheckpointMixin` with ``weights_only=True``.

    Raises
    ------
    CheckpointError
        missing file, not a checkpoint of this format (or damaged), or of another model.
    """
    path = str(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"Checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # unpickling / zip errors: report the file, not the internals
        raise CheckpointError(
            f"Cannot read checkpoint {path}: it is damaged or not a recbole_quant checkpoint "
            f"(checkpoints of plain RecBole cannot be loaded safely). Detail: {err}"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is not a recbole_quant checkpoint (expected format {CHECKPOINT_FORMAT})."
        )
    if expected_model is not None and state["model"] != expected_model:
        raise CheckpointError(
            f"{path} holds a {state['model']} model, not {expected_model}: "
            f"pass --model={state['model']} or another checkpoint."
        )
    return state


def reserve_checkpoint_name(path):
    """``path``, or ``<stem>-1.pth``, ``<stem>-2.pth``... if taken; the name is reserved on disk.

    RecBole names checkpoints ``<Model>-<date_time>.pth`` with one-second resolution, so two
    runs started in the same second in the same folder (a comparison, parallel jobs) would
    overwrite each other's best model and test the wrong one. The empty placeholder is
    created atomically (``open(..., "x")``) and replaced by the first real save.
    """
    stem, ext = os.path.splitext(path)
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    for n in range(1000):
        candidate = path if n == 0 else f"{stem}-{n}{ext}"
        try:
            with open(candidate, "x"):
                return candidate
        except FileExistsError:
            continue
    raise CheckpointError(f"Could not find a free checkpoint name next to {path}.")


class SafeCheckpointMixin:
    """Checkpoints of tensors and plain values, loaded with ``weights_only=True``."""

    def __init__(self, config, model):
        super().__init__(config, model)
        self._name_reserved = False

    def _reserve_name(self):
        if not self._name_reserved:
            self.saved_model_file = reserve_checkpoint_name(self.saved_model_file)
            self._name_reserved = True

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        if not self.config["single_spec"] and self.config["local_rank"] != 0:
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
        }
        torch.save(state, saved_model_file)
        if verbose:
            self.logger.info(set_color("Saving current", "blue") + f": {saved_model_file}")

    def _load_model_state(self, state):
        self.model.load_state_dict(state["state_dict"])
        self.model.load_other_parameter(state.get("other_parameter"))

    def resume_checkpoint(self, resume_file):
        state = load_checkpoint(resume_file, self.device, expected_model=self.config["model"])
        self.saved_model_file = str(resume_file)
        self._name_reserved = True  # continue writing the resumed file
        self.start_epoch = state["epoch"] + 1
        self.cur_step = state["cur_step"]
        self.best_valid_score = state["best_valid_score"]
        self._load_model_state(state)
        self.optimizer.load_state_dict(state["optimizer"])
        self.logger.info(f"Checkpoint loaded. Resume training from epoch {self.start_epoch}")

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


class SparseCollectorMixin:
    """Uses :class:`SparseCollector`: RecBole's metrics without the dense positives matrix."""

    deterministic_ties = False

    def __init__(self, config, model):
        super().__init__(config, model)
        self.eval_collector = SparseCollector(config, deterministic_ties=self.deterministic_ties)


class QuantTrainer(
    EpochTimerMixin,
    EpochHookMixin,
    SparseCollectorMixin,
    SafeCheckpointMixin,
    PackedEvalMixin,
    Trainer,
):
    """Trainer of the plugin's models (RecBole's ``Trainer`` plus the mixins above).

    Full-sort evaluation runs on the packed fused top-k (:class:`PackedEvalMixin`) unless
    ``eval_path: standard``; ties are broken by (higher score, lower item id) on both paths.
    """

    deterministic_ties = True

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        """Model selection across a full-precision warm-up.

        ``model.quantized_from_epoch`` (0 when absent) is the first epoch trained through the
        quantizers. For every epoch up to and including it, the best validation score and the
        early-stopping counter are reset after the epoch's training (so before its
        validation): warm-up evaluations (which rank the codes all the same) are logged and
        saved but never stop training, and once quantized training runs only its own
        checkpoints compete. A function of the epoch index, so it holds after a resume.
        """
        loss = super()._train_epoch(train_data, epoch_idx, loss_func, show_progress)
        start = getattr(self.model, "quantized_from_epoch", 0)
        if start > 0 and epoch_idx <= start:
            self.best_valid_score = -math.inf if self.valid_metric_bigger else math.inf
            self.cur_step = 0
        return loss

    def _check_nan(self, loss):
        value = loss.item() if torch.is_tensor(loss) else float(loss)
        if not math.isfinite(value):
            epoch = getattr(self, "_current_epoch", "?")
            kept = (
                f"The best checkpoint so far is kept at {self.saved_model_file}."
                if os.path.isfile(self.saved_model_file)
                else "No checkpoint had been saved yet."
            )
            raise TrainingDivergedError(
                f"Training loss became {value} at epoch {epoch}. {kept} "
                "Try a lower learning_rate or a larger reg_weight."
            )


def get_trainer(config, model_class):
    """The trainer class for a model: its own ``trainer_class``, else RecBole's choice.

    RecBole's choice is wrapped in :class:`SafeCheckpointMixin` so that baselines, too, reload
    their best checkpoint on torch >= 2.6.
    """
    own = getattr(model_class, "trainer_class", None)
    if own is not None:
        return own
    base = recbole_get_trainer(config["MODEL_TYPE"], config["model"])
    if issubclass(base, SafeCheckpointMixin) or not issubclass(base, Trainer):
        return base
    return type(
        base.__name__,
        (EpochTimerMixin, SparseCollectorMixin, SafeCheckpointMixin, base),
        {"__doc__": base.__doc__},
    )
