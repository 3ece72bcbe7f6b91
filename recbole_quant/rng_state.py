"""Random-number state saved with a checkpoint, so a resumed run continues the same streams.

Training draws its negatives from numpy's global generator (RecBole's samplers), shuffles
with the train loader's own ``torch.Generator`` and may use torch's and Python's global
generators (dropout, probes). A run resumed from a checkpoint used to re-seed them all from
``seed``, so it replayed the **first** epochs' negatives and batch order instead of the ones
the uninterrupted run would have drawn next: a second stage (``--resume`` with a new
``--learning_rate``) trained again on the batches it had just fitted, and its training loss
jumped whenever the replay reached batches seen long ago. The checkpoint now holds the
states at the moment it was written (after that epoch's validation, so exactly what the next
epoch starts from), and a resume restores them: the resumed epochs draw what the
uninterrupted run would have drawn.

The states are stored as tensors and plain values (numpy's Mersenne-Twister key as an int64
tensor), so checkpoints still load with ``weights_only=True``.
"""

import random

import numpy as np
import torch

__all__ = ["capture_rng_state", "restore_rng_state"]


def capture_rng_state(train_data=None):
    """The global generators' states, and the train loader's shuffle generator if given."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, py_state, gauss_next = random.getstate()
    state = {
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(version), "state": list(py_state), "gauss_next": gauss_next},
        "torch": torch.get_rng_state(),
    }
    generator = getattr(train_data, "generator", None)
    if isinstance(generator, torch.Generator):
        state["train_loader"] = generator.get_state()
    return state


def restore_rng_state(state, train_data=None):
    """Set the generators captured by :func:`capture_rng_state` (the loader's if both have one)."""
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss_next"]))
    torch.set_rng_state(state["torch"])
    generator = getattr(train_data, "generator", None)
    if isinstance(generator, torch.Generator) and "train_loader" in state:
        generator.set_state(state["train_loader"])
