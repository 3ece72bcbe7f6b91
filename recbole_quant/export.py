"""Export a trained model's packed codes to one ``.npz`` file and serve top-k from it.

* :func:`export_model` -- checkpoint -> ``.npz``: the packed user and item codes with what
  reproduces their scores exactly (scales, ranges), the raw-token <-> internal-id maps, the
  users' history (for ``exclude_seen``) and a JSON header with a SHA-256 digest per array.
  This side rebuilds the RecBole dataset and model, so it needs the dataset files.
* :func:`load_export` -> :class:`ExportedCodes` -- reads and verifies the file and answers
  ``recommend(users, k)`` with raw tokens. It imports numpy, torch and
  :mod:`recbole_quant.packed` only: no RecBole, no model code, no dataset files.
* :func:`to_faiss` -- hands unscaled sign codes (HashGNN ``mode: hard``) to a faiss binary
  index; exact only there, see the function.

The file is written with ``np.savez_compressed`` and holds numeric and unicode arrays only, so
``np.load(path, allow_pickle=False)`` reads it; ``docs/export.md`` lists every array.
The digests detect damage and edits made after export (integrity); they are not a signature:
whoever can rewrite the file can rewrite the header too.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

import numpy as np

from recbole_quant.errors import CheckpointError, ExportError, QueryError
from recbole_quant.packed import PackedPredictor, StorageReport
from recbole_quant.packed.exclusion import history_exclusion

__all__ = ["FORMAT", "ExportSummary", "ExportedCodes", "export_model", "load_export", "to_faiss"]

FORMAT = "recbole_quant.export/1"
CODES = "codes."  # prefix of the PackedPredictor.to_arrays() arrays in the file
HISTORY_MODES = ("train", "all", "none")
PAD_TOKEN_ID = 0  # RecBole's padding user / item

# Keys RecBole derives while building a Config (enums saved as strings, the device, the
# ml-100k path, the distributed rank...): fed back, they would be wrong or start a
# distributed run (local_rank), so the rebuild lets RecBole derive them again.
_DERIVED_KEYS = (
    "model", "dataset", "MODEL_TYPE", "MODEL_INPUT_TYPE", "eval_type", "device",
    "single_spec", "local_rank", "valid_metric_bigger", "valid_neg_sample_args",
    "test_neg_sample_args",
)


# ---------------------------------------------------------------------------------- export


@dataclass(frozen=True)
class ExportSummary:
    """What :func:`export_model` wrote.

    ``code_bytes``: the arrays scoring needs (packed words, scales, ranges), uncompressed.
    ``float32_bytes``: float32 tables of width ``dim`` for the same users and items,
    ``(n_users + n_items) * dim * 4`` (a LightGCN's; padding rows included on both sides).
    """

    path: str
    file_bytes: int
    code_bytes: int
    float32_bytes: int
    model: str
    dataset: str
    kind: str
    dim: int
    groups: int
    bits: int
    n_users: int
    n_items: int
    history: str

    def __str__(self) -> str:
        width = f"{self.groups} x d={self.dim}" if self.groups > 1 else f"d={self.dim}"
        return (
            f"wrote {self.path}: {self.file_bytes:,} bytes on disk "
            f"({self.model} on {self.dataset}, history={self.history})\n"
            f"  codes ({self.kind}, {width}, {self.bits} bit): {self.code_bytes:,} bytes; "
            f"float32 tables ({self.n_users} + {self.n_items}) x {self.dim} x 4 = "
            f"{self.float32_bytes:,} bytes: codes {self.float32_bytes / self.code_bytes:.1f}x "
            f"smaller, whole file {self.float32_bytes / self.file_bytes:.1f}x smaller"
        )


def export_model(checkpoint_path, out_path, *, expected_model=None, history="train",
                 overrides=()):
    """Write the packed codes of a plugin checkpoint to ``out_path`` (one ``.npz``).

    Args:
        checkpoint_path (str): a checkpoint written by the plugin's trainers.
        out_path (str): the file to write (written as given: no ``.npz`` is appended).
        expected_model (str, optional): fail unless the checkpoint holds this model.
        history (str): items excluded by ``recommend(exclude_seen=True)``: ``train`` (the
            training split, what the model saw), ``all`` (every interaction of the dataset:
            train, valid and test) or ``none``.
        overrides (list of str): ``--key=value`` config overrides on top of the saved
            config, e.g. ``["--mode=hard"]`` (HashGNN) or ``["--data_path=..."]`` when the
            dataset moved since training.

    Returns:
        ExportSummary: the path, size on disk and code size vs float32 tables.

    Raises:
        CheckpointError: missing, damaged or foreign checkpoint, or another model than
            ``expected_model``, or weights that do not fit the dataset found now.
        ExportError: a model without packed codes, a bad ``history``, an unwritable path.
    """
    if history not in HISTORY_MODES:
        raise ExportError(f"history={history!r} is not valid: choose one of {', '.join(HISTORY_MODES)}.")
    from recbole_quant.checkpoint import load_checkpoint

    if isinstance(overrides, str):
        overrides = [overrides]
    checkpoint_path = str(checkpoint_path)
    if os.path.realpath(checkpoint_path) == os.path.realpath(str(out_path)):
        raise ExportError(
            f"The output {out_path} is the checkpoint itself: writing it would replace the "
            "checkpoint. Give another output file, e.g. model.npz."
        )
    state = load_checkpoint(checkpoint_path, "cpu", expected_model=expected_model)
    config, dataset, train_data, model = _rebuild(state, checkpoint_path, list(overrides))
    predictor = _packed_predictor(model, state["model"])

    arrays = {CODES + name: value for name, value in predictor.to_arrays().items()}
    arrays["user_tokens"] = np.asarray(dataset.field2id_token[config["USER_ID_FIELD"]]).astype(str)
    arrays["item_tokens"] = np.asarray(dataset.field2id_token[config["ITEM_ID_FIELD"]]).astype(str)
    if (len(arrays["user_tokens"]), len(arrays["item_tokens"])) != (predictor.n_users, predictor.n_items):
        raise ExportError(  # cannot happen with RecBole's datasets; guards the id maps
            f"token maps ({len(arrays['user_tokens'])} users, {len(arrays['item_tokens'])} items) "
            f"do not match the codes ({predictor.n_users}, {predictor.n_items})."
        )
    if history != "none":
        source = train_data._dataset if history == "train" else dataset
        matrix = source.inter_matrix(form="csr").tocsr()
        matrix.sum_duplicates()
        matrix.sort_indices()
        arrays["history_indptr"] = matrix.indptr.astype(np.int64)
        # item ids < n_items fit int32; halves the largest array of the file
        arrays["history_indices"] = matrix.indices.astype(np.int32)

    meta = {
        "format": FORMAT,
        "model": state["model"],
        "dataset": state["dataset"],
        "epoch": int(state.get("epoch", -1)),
        "kind": predictor.kind,
        "dim": predictor.dim,
        "groups": predictor.groups,
        "user_bits": predictor.bits,
        "item_bits": predictor.item_bits,
        "n_users": predictor.n_users,
        "n_items": predictor.n_items,
        "user_field": config["USER_ID_FIELD"],
        "item_field": config["ITEM_ID_FIELD"],
        "history": history,
        "arrays": {name: _describe(value) for name, value in sorted(arrays.items())},
    }
    arrays["meta"] = np.array(json.dumps(meta, sort_keys=True))
    _write(arrays, str(out_path))

    code_bytes = sum(v.nbytes for k, v in arrays.items() if k.startswith(CODES))
    return ExportSummary(
        path=str(out_path),
        file_bytes=os.path.getsize(out_path),
        code_bytes=int(code_bytes),
        float32_bytes=(predictor.n_users + predictor.n_items) * predictor.dim * 4,
        model=state["model"],
        dataset=state["dataset"],
        kind=predictor.kind,
        dim=predictor.dim,
        groups=predictor.groups,
        bits=predictor.bits,
        n_users=predictor.n_users,
        n_items=predictor.n_items,
        history=history,
    )


def _rebuild(state, checkpoint_path, overrides):
    """Config, dataset, train loader and model (weights loaded, eval mode) of a checkpoint."""
    from recbole.utils import init_seed

    from recbole_quant.config import Config
    from recbole_quant.quick_start import load_data

    saved = {k: v for k, v in state["config"].items() if k not in _DERIVED_KEYS}
    dataset_name = state["dataset"]
    data_path = saved.get("data_path")
    # RecBole saved <data_path>/<dataset>; the Config appends the dataset name again
    if isinstance(data_path, str) and os.path.basename(os.path.normpath(data_path)) == dataset_name:
        saved["data_path"] = os.path.dirname(os.path.normpath(data_path))
    if saved.get("pretrained_checkpoint"):
        saved["pretrained_checkpoint"] = None  # L2QGCN init only; the weights come from state
    if saved.get("teacher_checkpoint") or saved.get("distill_weight"):
        saved.update(teacher_checkpoint=None, distill_weight=0)  # training only: not read
    # a checkpoint is a file: it must not opt in to unpickling RecBole's dataset caches (or
    # point them elsewhere), resume training or write caches; the command line still can
    saved.update(use_gpu=False, show_progress=False, trust_saved_dataset=False, resume=None,
                 save_dataset=False, save_dataloaders=False)
    config = Config(model=state["model"], dataset=dataset_name, config_dict=saved, cmd_args=overrides)
    # the same seed as training: a random (RS) split comes out identical, so "train" history
    # is the training split the model saw
    init_seed(config["seed"], config["reproducibility"])
    dataset, train_data, _, _ = load_data(config)
    model = config.model_class(config, train_data._dataset)
    try:
        model.load_state_dict(state["state_dict"])
    except RuntimeError as err:
        raise CheckpointError(
            f"{checkpoint_path}: its weights do not fit dataset '{dataset_name}' as found at "
            f"{config['data_path']} (different files or split?). Detail: {err}"
        ) from None
    if hasattr(model, "load_other_parameter"):
        model.load_other_parameter(state.get("other_parameter"))
    model.eval()
    return config, dataset, train_data, model


def _packed_predictor(model, name):
    """The model's :class:`PackedPredictor`, or a clear error for models that rank otherwise."""
    if not hasattr(model, "build_predictor"):
        raise ExportError(
            f"{name} is not a quantized model: export needs packed codes "
            "(HQGNN, L2QGCN, or HashGNN with mode=hard)."
        )
    predictor = model.predictor
    if not isinstance(predictor, PackedPredictor):
        hint = ""
        if getattr(model, "quantize", True) is False:
            hint = (" This model was trained with quantize=False: it has no codes; retrain with "
                    "quantize=True.")
        elif getattr(model, "mode", None) == "soft":
            hint = (" mode=soft re-ranks with continuous vectors; export the Hamming ranking of "
                    "its codes with --mode=hard (python -m recbole_quant export CKPT OUT "
                    "--mode=hard, or overrides=['--mode=hard']).")
        raise ExportError(
            f"{name} ranks with a {type(predictor).__name__}, not packed codes alone: "
            f"export needs packed codes.{hint}"
        )
    return predictor


def _describe(array):
    return {"dtype": array.dtype.str, "shape": list(array.shape), "sha256": _sha256(array)}


def _sha256(array):
    # dtype and shape are hashed too, so a reinterpreted array does not pass
    digest = hashlib.sha256(f"{array.dtype.str}{list(array.shape)}".encode())
    digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _write(arrays, out_path):
    """Write atomically (temporary file + rename): a crash never leaves half a file."""
    import tempfile

    folder = os.path.dirname(os.path.abspath(out_path))
    tmp = None
    try:
        os.makedirs(folder, exist_ok=True)
        # a fresh name in the same folder: never clobbers a user's file, rename stays atomic
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=folder)
        with os.fdopen(fd, "wb") as f:  # a file object: np.savez would append ".npz" to a name
            np.savez_compressed(f, **arrays)
        os.replace(tmp, out_path)
    except OSError as err:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
        raise ExportError(f"Cannot write {out_path}: {err.strerror or err}.") from None


# ---------------------------------------------------------------------------------- load


def load_export(path, *, backend="auto"):
    """Read and verify an export file.

    Args:
        path (str): a file written by :func:`export_model`.
        backend (str): the predictor's kernels, ``auto`` / ``numba`` / ``torch``.

    Returns:
        ExportedCodes

    Raises:
        ExportError: missing, truncated or damaged file, not an export, another format
            version, or an array that does not match its SHA-256 digest.
    """
    path = str(path)
    if not os.path.isfile(path):
        raise ExportError(f"Export file not found: {path}")
    try:
        npz = np.load(path, allow_pickle=False)
    except Exception as err:  # zip / pickle / header errors: name the file, not internals
        raise ExportError(
            f"Cannot read {path}: it is truncated, damaged or not a recbole_quant export "
            f"({type(err).__name__}: {err})."
        ) from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise ExportError(f"{path} is a single .npy array, not a recbole_quant export.")
    try:
        with npz:
            arrays = {name: npz[name] for name in npz.files}  # reads (and CRC-checks) all
    except Exception as err:
        raise ExportError(
            f"Cannot read {path}: it is truncated or damaged ({type(err).__name__}: {err})."
        ) from None
    meta = _read_meta(arrays, path)
    _verify(arrays, meta, path)
    return ExportedCodes(arrays, meta, path, backend=backend)


def _read_meta(arrays, path):
    if "meta" not in arrays:
        raise ExportError(
            f"{path} is not a recbole_quant export (no 'meta' array). A checkpoint? Export it "
            "first: python -m recbole_quant export CHECKPOINT OUT."
        )
    try:
        meta = json.loads(str(arrays["meta"]))
    except ValueError:
        raise ExportError(f"{path}: its 'meta' header is not valid JSON (damaged file).") from None
    fmt = meta.get("format") if isinstance(meta, dict) else None
    if fmt != FORMAT:
        if isinstance(fmt, str) and fmt.startswith("recbole_quant.export/"):
            raise ExportError(
                f"{path} has export format {fmt}; this recbole_quant reads {FORMAT}: "
                "re-export the checkpoint with this version (or upgrade recbole_quant)."
            )
        raise ExportError(f"{path} is not a recbole_quant export (format {fmt!r}).")
    if not isinstance(meta.get("arrays"), dict):
        raise ExportError(f"{path}: its 'meta' header lists no array digests (damaged file).")
    return meta


def _verify(arrays, meta, path):
    listed = set(meta["arrays"])
    present = set(arrays) - {"meta"}
    if listed != present:
        missing, extra = sorted(listed - present), sorted(present - listed)
        what = "; ".join(
            part for part in (f"missing {missing}" if missing else "",
                              f"unexpected {extra}" if extra else "") if part
        )
        raise ExportError(f"{path} was modified after export (tampered or damaged): {what}.")
    for name in sorted(listed):
        if _sha256(arrays[name]) != meta["arrays"][name].get("sha256"):
            raise ExportError(
                f"{path}: array '{name}' does not match its SHA-256 digest: the file was "
                "modified after export (tampered or damaged). Re-export it from the checkpoint."
            )


def _check_history(indptr, indices, n_users, n_items, path):
    """The history must be CSR rows of sorted, distinct, in-range item ids per user.

    The digests only prove the arrays are the ones written; a file written by other code
    with valid digests could still hold rows the exclusion kernels would misread.
    """
    if indptr.shape != (n_users + 1,) or indptr[0] != 0 or indptr[-1] != len(indices):
        raise ExportError(f"{path}: history arrays do not match the users.")
    if (np.diff(indptr) < 0).any():
        raise ExportError(f"{path}: history_indptr decreases (not CSR row offsets).")
    if len(indices) and (indices.min() < 0 or indices.max() >= n_items):
        raise ExportError(f"{path}: history holds item ids outside 0..{n_items - 1}.")
    steps = np.diff(indices)
    row_starts = indptr[1:-1]
    inside = np.ones(len(steps), bool)
    inside[row_starts[(row_starts > 0) & (row_starts < len(indices))] - 1] = False
    bad = np.flatnonzero(inside & (steps <= 0))
    if len(bad):
        user = int(np.searchsorted(indptr, bad[0], side="right") - 1)
        raise ExportError(
            f"{path}: history row of internal user {user} is not sorted ascending without "
            "repeats; this file was not written by recbole_quant's export. Re-export it."
        )


class ExportedCodes:
    """An export loaded for serving: packed codes, id maps, history.

    Attributes:
        path, model, dataset (str); meta (dict): the JSON header;
        predictor (PackedPredictor): over all internal ids (padding user / item 0 included);
        user_tokens, item_tokens (np.ndarray str [n_users] / [n_items]): internal id -> raw
        token (index 0 is RecBole's ``[PAD]``).
    """

    def __init__(self, arrays, meta, path, backend="auto"):
        self.path = path
        self.meta = meta
        self.model = meta.get("model")
        self.dataset = meta.get("dataset")
        codes = {k[len(CODES):]: v for k, v in arrays.items() if k.startswith(CODES)}
        self._codes = codes  # as read (row-major words): faiss codes come from these
        try:
            self.predictor = PackedPredictor.from_arrays(codes, backend=backend)
        except ValueError as err:
            raise ExportError(f"{path}: inconsistent code arrays: {err}") from None
        self.user_tokens = arrays.get("user_tokens")
        self.item_tokens = arrays.get("item_tokens")
        if (self.user_tokens is None or self.item_tokens is None
                or len(self.user_tokens) != self.predictor.n_users
                or len(self.item_tokens) != self.predictor.n_items):
            raise ExportError(f"{path}: token maps missing or not matching the codes.")
        self._history = None
        if "history_indptr" in arrays:
            indptr = arrays["history_indptr"].astype(np.int64)
            indices = arrays["history_indices"].astype(np.int64)
            _check_history(indptr, indices, self.predictor.n_users, self.predictor.n_items, path)
            self._history = (indptr, indices)
        self._user_ids = {tok: i for i, tok in enumerate(self.user_tokens.tolist()) if i != PAD_TOKEN_ID}

    # -- sizes -----------------------------------------------------------------------------
    @property
    def n_users(self) -> int:
        """Real users (padding user 0 not counted)."""
        return self.predictor.n_users - 1

    @property
    def n_items(self) -> int:
        """Real items, the largest possible ``k`` (padding item 0 not counted)."""
        return self.predictor.n_items - 1

    def storage(self) -> StorageReport:
        return self.predictor.storage()

    # -- queries ---------------------------------------------------------------------------
    def user_ids(self, users) -> np.ndarray:
        """Internal ids of raw user tokens (a token or a list of them), int64 [B].

        Raises:
            QueryError: a token that is not a user of the export.
        """
        tokens = [users] if isinstance(users, (str, int, np.integer)) else list(users)
        ids = np.empty(len(tokens), np.int64)
        for n, token in enumerate(tokens):
            uid = self._user_ids.get(str(token))
            if uid is None:
                raise QueryError(
                    f"Unknown user '{token}': not a user of this {self.model} export of "
                    f"{self.dataset} ({self.n_users} users; raw tokens as in the dataset "
                    f"files). List them with: python -m recbole_quant info {self.path} --users"
                )
            ids[n] = uid
        return ids

    def recommend(self, users, k=10, exclude_seen=True):
        """Top-k items of each user, from the packed codes.

        Args:
            users: a raw user token (str or int) or a list of them.
            k (int): 1 <= k <= :attr:`n_items`.
            exclude_seen (bool): skip the user's history stored in the export (the
                padding item 0 is always skipped, as in evaluation).

        Returns:
            list (one per user, in order) of lists of ``(item_token, score)``, best first;
            ties by lower internal item id. Scores are the model's float32 scores exactly.
            A user with fewer than ``k`` unseen items gets a shorter list.

        Raises:
            QueryError: unknown user token, or k not in 1..n_items.
        """
        k = self._check_k(k)
        ids = self.user_ids(users)
        if len(ids) == 0:
            return []
        scores, items = self.predictor.topk(ids, k, exclude=self._exclusion(ids, exclude_seen))
        out = []
        for row_scores, row_items in zip(scores.tolist(), items.tolist()):
            out.append([(str(self.item_tokens[i]), s) for s, i in zip(row_scores, row_items) if i >= 0])
        return out

    def seen_items(self, user) -> list:
        """Raw item tokens of a user's stored history (empty with ``history: none``)."""
        uid = int(self.user_ids(user)[0])
        if self._history is None:
            return []
        indptr, indices = self._history
        return [str(t) for t in self.item_tokens[indices[indptr[uid]:indptr[uid + 1]]]]

    def _check_k(self, k):
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or k < 1:
            raise QueryError(f"k={k!r} is not valid: a positive integer (items per user).")
        if k > self.n_items:
            raise QueryError(
                f"k={k} is larger than the {self.n_items} items of {self.dataset}: "
                f"use k <= {self.n_items}."
            )
        return int(k)

    def _exclusion(self, ids, exclude_seen):
        """CSR rows for the batch: padding item 0, then the history (as in evaluation)."""
        if not exclude_seen or self._history is None:
            return history_exclusion([()] * len(ids))
        indptr, indices = self._history
        return history_exclusion([indices[indptr[u]:indptr[u + 1]] for u in ids])

    # -- faiss hand-off --------------------------------------------------------------------
    def faiss_queries(self, users) -> np.ndarray:
        """Query codes for :func:`to_faiss` indexes: uint8 [B, code_bytes] of raw user tokens."""
        _hamming_exact(self)
        words = self._codes["user_words"][self.user_ids(users)]
        return _faiss_codes(words, self.predictor.dim, self.predictor.groups)

    def hamming_to_score(self, distances) -> np.ndarray:
        """faiss Hamming distances -> the model's scores, ``groups * dim - 2 * distance``."""
        p = self.predictor
        return (p.groups * p.dim - 2 * np.asarray(distances, np.int64)).astype(np.float32)

    def __repr__(self) -> str:
        return (f"ExportedCodes({self.model} on {self.dataset}: {self.n_users} users, "
                f"{self.n_items} items, {self.predictor.kind} d={self.predictor.dim} "
                f"G={self.predictor.groups} bits={self.predictor.bits}, "
                f"history={self.meta.get('history')})")


# ---------------------------------------------------------------------------------- faiss


def to_faiss(exported, ivf_nlist=None, nprobe=None):
    """A faiss binary index over the item codes (ids = internal item ids, padding left out).

    Exact only for unscaled sign codes (HashGNN ``mode: hard``): there
    ``score = groups * dim - 2 * hamming`` (:meth:`ExportedCodes.hamming_to_score`), so the
    Hamming order is the score order. HQ-GNN's uniform codes (even 1-bit: ``score = mult *
    <k_u, k_i> + item_bias + user_const``) and L2Q-GCN's scaled codes are not functions of the
    Hamming distance alone and raise :class:`ExportError`.

    faiss does not exclude history and orders ties its own way; an IVF index
    (``ivf_nlist``) is exact only with ``nprobe == ivf_nlist``.

    Args:
        exported (ExportedCodes): from :func:`load_export`.
        ivf_nlist (int, optional): build ``IndexBinaryIVF`` with this many lists (trained on
            the item codes); default ``IndexBinaryFlat`` (exhaustive, exact).
        nprobe (int, optional): lists searched per query (IVF only; default 1).

    Returns:
        faiss.IndexBinary: search it with :meth:`ExportedCodes.faiss_queries`.
    """
    _hamming_exact(exported)
    try:
        import faiss
    except ImportError:
        raise ExportError(
            "the faiss hand-off needs faiss: pip install 'recbole-quant[faiss]' (faiss-cpu)."
        ) from None
    p = exported.predictor
    words = exported._codes["item_words"][1:]  # padding item 0 is never recommended
    codes = _faiss_codes(words, p.dim, p.groups)
    nbits = codes.shape[1] * 8
    ids = np.arange(1, p.n_items, dtype=np.int64)
    if ivf_nlist is None:
        if nprobe is not None:
            raise ExportError("nprobe applies to IVF indexes only: give ivf_nlist too.")
        index = faiss.IndexBinaryIDMap(faiss.IndexBinaryFlat(nbits))
    else:
        n = len(ids)
        if isinstance(ivf_nlist, bool) or not isinstance(ivf_nlist, (int, np.integer)) or not 1 <= ivf_nlist <= n:
            raise ExportError(f"ivf_nlist={ivf_nlist!r} is not valid: an integer in 1..{n} (items).")
        nprobe = 1 if nprobe is None else nprobe
        if isinstance(nprobe, bool) or not isinstance(nprobe, (int, np.integer)) or not 1 <= nprobe <= ivf_nlist:
            raise ExportError(f"nprobe={nprobe!r} is not valid: an integer in 1..{ivf_nlist} (ivf_nlist).")
        index = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(nbits), nbits, int(ivf_nlist))
        index.train(codes)
        index.nprobe = int(nprobe)
    index.add_with_ids(codes, ids)
    return index


def _hamming_exact(exported):
    """Raise unless the export's scores are ``groups * dim - 2 * hamming``."""
    arrays = exported._codes
    kind = str(arrays["kind"])
    if kind != "sign":
        detail = f"{kind} {exported.predictor.bits}-bit codes (score = mult * <k_u, k_i> + item_bias + user_const)"
    elif "user_scales" in arrays:
        detail = "sign codes with per-node scales (score = sum_g s_u s_i <q_u, q_i>)"
    elif "mult" in arrays:
        detail = "sign codes with an affine score"
    else:
        return
    raise ExportError(
        f"faiss Hamming search is exact only for unscaled sign codes (HashGNN mode=hard); this "
        f"{exported.model} export holds {detail}, which Hamming distance does not rank. "
        "Use ExportedCodes.recommend (exact) instead."
    )


def _faiss_codes(words, dim, groups):
    """Packed uint64 [n, G * W] -> faiss binary codes uint8 [n, G * ceil(dim / 8)].

    Our words are little-endian with coordinate j at bit j % 64 of word j // 64, so their
    bytes hold coordinate j at bit j % 8 of byte j // 8 (bitpack uses packbits
    bitorder="little"). faiss only XORs and popcounts bytes, so any bit order shared by
    queries and database gives the same distance; the zero tail bits of both sides add none.
    """
    n = len(words)
    w = words.shape[1] // groups
    as_bytes = np.ascontiguousarray(words, dtype="<u8").view(np.uint8).reshape(n, groups, w * 8)
    return np.ascontiguousarray(as_bytes[:, :, : (dim + 7) // 8].reshape(n, -1))
