"""Warm starts: layer-0 user/item tables of a trained checkpoint start a quantized model.

One full-precision model feeds every quantized one: a converged LightGCN (RecBole's, run
through recbole_quant so its checkpoint is safe to load) -- or a plugin model with the same
tables -- starts HQGNN, L2QGCN and HashGNN (``pretrained_checkpoint``). The checkpoint is
read with ``weights_only=True`` (:func:`recbole_quant.checkpoint.load_checkpoint`); one of
another dataset, or whose tables do not have this model's shape, is refused with a message
that says what differs.
"""

from logging import getLogger

import torch

from recbole_quant.checkpoint import load_checkpoint
from recbole_quant.errors import CheckpointError

# checkpoints that hold layer-0 tables under these names
WARM_START_MODELS = ("LightGCN", "HQGNN", "L2QGCN", "HashGNN")
EMBEDDING_KEYS = ("user_embedding.weight", "item_embedding.weight")


def read_layer0_tables(path, config, option="pretrained_checkpoint", role="warm-start"):
    """Load a checkpoint's layer-0 user/item tables, refusing one of another model or dataset.

    Shared by warm starts (``pretrained_checkpoint``) and distillation teachers
    (``teacher_checkpoint``, :mod:`recbole_quant.model.distillation`); the shape checks
    against the model are the caller's.

    Args:
        path (str): a recbole_quant checkpoint (``saved/<Model>-<time>.pth``).
        config: the run's Config (its ``dataset`` is checked against the file).
        option (str): the option that named the file (quoted in every message).
        role (str): what the checkpoint is for, in messages ("warm-start", "teacher").

    Returns:
        tuple: the checkpoint dict, the user table [n_users, d] and the item table
        [n_items, d] (tensors of the file).

    Raises:
        CheckpointError: missing / damaged file, a model without such tables, another
        dataset.
    """
    path = str(path)
    state = load_checkpoint(path)  # CheckpointError: missing, damaged, not ours
    source = state.get("model")
    where = f"{option}={path}"
    if source not in WARM_START_MODELS:
        need = "a warm start" if role == "warm-start" else f"a {role}"
        raise CheckpointError(
            f"{where} holds a {source} model: {need} needs layer-0 user/item tables, "
            f"from a checkpoint of {', '.join(WARM_START_MODELS)}."
        )
    if state.get("dataset") != config["dataset"]:
        raise CheckpointError(
            f"{where} was trained on dataset {state.get('dataset')!r}, not "
            f"{config['dataset']!r}: its user/item ids do not match. Train the {role} "
            f"model on {config['dataset']!r} first."
        )
    _check_same_split(state, config, where, role)
    weights = state["state_dict"]
    for key in EMBEDDING_KEYS:
        if key not in weights:
            raise CheckpointError(f"{where} has no {key} (its {source} has no ID embeddings).")
    return state, weights[EMBEDDING_KEYS[0]], weights[EMBEDDING_KEYS[1]]


def split_of(config):
    """What decides which interactions are training ones: the split files when
    ``benchmark_filename`` is set; else ``eval_args`` and, with random ordering (``RO``),
    the seed (RecBole shuffles each user's interactions with it before splitting)."""
    get = config.get if isinstance(config, dict) else (lambda key: config[key])
    files = get("benchmark_filename")
    if files:
        return {"split files": list(files)}
    eval_args = dict(get("eval_args") or {})
    order = eval_args.get("order", "RO")
    split = {"split": eval_args.get("split"), "group_by": eval_args.get("group_by"),
             "order": order}
    if order == "RO":
        split["seed"] = get("seed")
    return split


def _check_same_split(state, config, where, role):
    """Refuse a checkpoint trained on another split of the dataset: its training
    interactions would include this run's validation and test interactions (a leak)."""
    saved = state.get("config")
    if not isinstance(saved, dict):
        return
    theirs, ours = split_of(saved), split_of(config)
    if theirs == ours:
        return
    only_seed_differs = dict(theirs, seed=None) == dict(ours, seed=None)
    hint = (f"train the {role} model with --seed={ours['seed']}" if only_seed_differs
            else f"train the {role} model with this run's split settings")
    raise CheckpointError(
        f"{where} was trained on another split of {config['dataset']!r} ({theirs}; this run: "
        f"{ours}): its training interactions include this run's validation or test "
        f"interactions. To use it, {hint}."
    )


def load_layer0_tables(path, config, user_table, item_table, size_key="embedding_size"):
    """Copy the checkpoint's user and item layer-0 tables into ``user_table`` / ``item_table``.

    Args:
        path (str): a recbole_quant checkpoint (``saved/<Model>-<time>.pth``).
        config: the run's Config (its ``model`` and ``dataset`` are checked against the file).
        user_table, item_table (nn.Embedding): the model's layer-0 tables.
        size_key (str): the option that sets the tables' width (named in the size error).

    Raises:
        CheckpointError: missing / damaged file, a model without such tables, another
        dataset, or tables of another shape.
    """
    path = str(path)
    state, user_weights, item_weights = read_layer0_tables(path, config)
    source = state.get("model")
    where = f"pretrained_checkpoint={path}"
    for key, weights, table in zip(
        EMBEDDING_KEYS, (user_weights, item_weights), (user_table, item_table)
    ):
        if tuple(weights.shape) != tuple(table.weight.shape):
            raise CheckpointError(
                f"{where}: {key} has shape {tuple(weights.shape)}, this "
                f"{config['model']} needs {tuple(table.weight.shape)}. Use the same dataset "
                f"split and set --{size_key}={weights.shape[1]}."
            )
    with torch.no_grad():
        user_table.weight.copy_(user_weights)
        item_table.weight.copy_(item_weights)
    getLogger().info(
        f"{config['model']}: layer-0 embeddings loaded from {source} checkpoint {path} "
        f"(epoch {state.get('epoch')})"
    )
    return source
