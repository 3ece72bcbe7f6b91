"""The plugin's checkpoint format: tensors and plain values, loaded with ``weights_only=True``.

RecBole's ``Trainer`` pickles its whole ``Config`` into each checkpoint; loading that needs
arbitrary unpickling (refused by torch >= 2.6, and unsafe for a file someone else wrote).
A recbole_quant checkpoint is a dict of tensors and plain Python values only:

``format``, ``model``, ``dataset``, ``config`` (plain values), ``epoch``, ``cur_step``,
``best_valid_score``, ``state_dict``, ``other_parameter``, ``optimizer``.

This module has no RecBole dependency: models (warm starts), the trainer and the exporter
all read checkpoints through :func:`load_checkpoint`.
"""

import os
import tempfile

import torch

from recbole_quant.errors import CheckpointError

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


def save_atomic(obj, path):
    """``torch.save(obj, path)`` through a temporary file in the same folder + rename.

    A crash or Ctrl-C while writing leaves the previous file intact, never a truncated one.
    """
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pth", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_checkpoint(path, map_location="cpu", expected_model=None):
    """Load a recbole_quant checkpoint with ``weights_only=True``.

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


def reserve_file_name(path):
    """``path``, or ``<stem>-1<ext>``, ``<stem>-2<ext>``... if taken; the name is reserved on disk.

    RecBole names checkpoints ``<Model>-<date_time>.pth`` and logs
    ``<Model>-<dataset>-<date_time>-<hash>.log`` with one-second resolution, so two runs
    started in the same second in the same folder (a comparison, parallel jobs) would
    overwrite each other's best model (and test the wrong one) or share one log. The empty
    placeholder is created atomically (``open(..., "x")``) and replaced or appended to by
    its owner.
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
    raise CheckpointError(f"Could not find a free file name next to {path}.")


reserve_checkpoint_name = reserve_file_name  # the trainer's name for it
