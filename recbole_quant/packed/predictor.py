"""The packed predictor: owns user and item codes, answers score and top-k calls.

One object per trained model (faiss-style: the codes live here, the kernels in
:mod:`.kernels` / :mod:`.torch_kernels`). The kernel is chosen once, at
construction: the numba kernels when the codes are on the CPU, the exact
torch matmul path when they come as CUDA tensors (``backend="torch"`` forces it
on the CPU too, which is how it is tested).

Scores are identical (bit for bit, float32) between :meth:`score`,
:meth:`topk` and the two backends; :meth:`topk` orders by higher score first,
then lower item id, and pads with -inf / -1 (see :mod:`.kernels`).
Item row 0 (RecBole's padding item) is scored like any other row.
"""
from __future__ import annotations

import numpy as np
import torch

from . import kernels, torch_kernels
from .bitpack import n_words, pack_planes, pack_signs, unpack_planes, word_major
from .dense import dense_topk
from .exclusion import batch_exclusion
from .limits import check_bits, check_k
from .sorted_items import sort_items
from .storage import StorageReport, storage_report

__all__ = ["PackedPredictor"]

_BACKENDS = ("auto", "numba", "torch")


def _device_of(*xs) -> torch.device:
    for x in xs:
        if isinstance(x, torch.Tensor):
            return x.device
    return torch.device("cpu")


def _as_float64(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if not np.isfinite(x).all():
        raise ValueError(f"{name} must be finite")
    return x


def _scales(scales, n: int, groups: int, name: str) -> np.ndarray:
    """Scales [n] or [n, G] (None = 1) -> float64 [n, G]."""
    if scales is None:
        return np.ones((n, groups))
    s = _as_float64(scales, name)
    if s.ndim == 1 and groups == 1:
        s = s[:, None]
    if s.shape != (n, groups):
        raise ValueError(f"{name} must be [{n}] or [{n}, {groups}], got {list(s.shape)}")
    return s


def _range(r, name: str):
    lo, hi = (float(v) for v in r)
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        raise ValueError(f"{name} must be finite (l, u) with u > l, got ({lo}, {hi})")
    return lo, hi


class PackedPredictor:
    """Full-sort scoring and top-k over bit-packed user and item codes.

    Build with :meth:`from_signs` (HashGNN, L2Q-GCN) or :meth:`from_uniform`
    (HQ-GNN); the constructor itself takes already packed arrays. :meth:`to_arrays` /
    :meth:`from_arrays` save and restore one exactly (``recbole_quant.export``).

    Parameters
    ----------
    kind : "sign" or "uniform"
    user_words : uint64 [n_users, L] packed user codes (row-major)
    item_words : uint64 [n_items, L'] packed item codes (row-major)
    dim : int, coordinates per group
    groups : int, sign groups (1 for uniform codes)
    user_bits, item_bits : int, bits per coordinate (1 for signs)
    user_scales, item_scales : float64 [n, G] or None (sign codes only)
    mult : float; item_bias : float64 [n_items]; user_const : float64 [n_users]
        ``score = float32((mult * raw + item_bias) + user_const)``.
    table_floats : int, per-table float32 values (storage accounting only)
    backend : "auto" | "numba" | "torch"
    device : torch.device where the torch path computes and results live
    """

    def __init__(self, kind, user_words, item_words, dim, groups, user_bits, item_bits,
                 user_scales, item_scales, mult, item_bias, user_const, table_floats=0,
                 backend="auto", device="cpu"):
        if backend not in _BACKENDS:
            raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
        self._kind = kind
        self._dim = int(dim)
        self._groups = int(groups)
        self._user_bits = int(user_bits)
        self._item_bits = int(item_bits)
        self._user_words = np.ascontiguousarray(user_words.reshape(user_words.shape[0], -1))
        self._item_words_t = word_major(item_words)  # [L, n_items]: contiguous item scans
        self._n_users = self._user_words.shape[0]
        self._n_items = self._item_words_t.shape[1]
        self._scaled = user_scales is not None
        self._su = user_scales if self._scaled else np.zeros((self._n_users, 0))
        self._si_t = np.ascontiguousarray(item_scales.T) if self._scaled else np.zeros((0, self._n_items))
        self._mult = float(mult)
        self._bias = np.ascontiguousarray(item_bias, dtype=np.float64)
        self._ucons = np.ascontiguousarray(user_const, dtype=np.float64)
        self._table_floats = int(table_floats)
        # (user_range, item_range) when built by from_uniform: the affine terms derive from
        # them and the codes, so to_arrays stores 4 floats instead of n_users + n_items
        self._ranges = None
        self._device = torch.device(device)
        if backend == "auto":
            backend = "torch" if self._device.type == "cuda" else "numba"
        if backend == "numba" and self._device.type != "cpu":
            raise ValueError("the numba backend needs codes on the CPU")
        self._backend = backend
        # kernel choice, made once
        if kind == "sign":
            self._kernel_kind = kernels.SIGN
            plain = not self._scaled and self._mult == 1.0 and not self._bias.any() and not self._ucons.any()
            self._topk_kind = kernels.SIGN_INT if plain else kernels.SIGN
            self._small = True
        else:
            self._kernel_kind = self._topk_kind = kernels.PLANE
            self._small = kernels.plane_dot_fits_int32(n_words(self._dim), self._user_bits, self._item_bits)
        self._bounds = (kernels.plane_bound_params(self._mult, self._bias, n_words(self._dim),
                                                   self._user_bits, self._item_bits)
                        if kind == "uniform" else kernels.NO_BOUNDS)
        # 1-bit uniform codes in one word (HQ-GNN's default, d <= 64): the top-k scans a copy
        # of the items sorted by bias (.sorted_items), 1.4x faster there; wider or multi-bit
        # codes keep the fused proxy pass, which measured faster for them
        one_bit_word = self._user_bits == self._item_bits == 1 and n_words(self._dim) == 1
        self._sorted = (sort_items(self._item_words_t, self._bias)
                        if kind == "uniform" and one_bit_word and self._mult > 0
                        and backend == "numba" else None)
        if backend == "torch":
            self._init_torch()

    # ------------------------------------------------------------------ builders

    @classmethod
    def from_signs(cls, user_codes, item_codes, user_scales=None, item_scales=None, *,
                   backend="auto"):
        """Predictor over sign codes.

        Parameters
        ----------
        user_codes : [n_users, d] or [n_users, G, d], float / int / bool (torch or numpy)
            ``x >= 0`` (or True) is +1, anything else -1.
        item_codes : [n_items, d] or [n_items, G, d]
        user_scales : [n_users] or [n_users, G] float, or None (= 1)
        item_scales : [n_items] or [n_items, G] float, or None (= 1)

        Scores: ``score(u, i) = sum_g su[u, g] * si[i, g] * <q_u,g , q_i,g>``
        (without scales: the integer ``sum_g <q_u,g , q_i,g>``).
        """
        device = _device_of(user_codes, item_codes)
        uw, iw = pack_signs(user_codes), pack_signs(item_codes)
        if uw.ndim != iw.ndim or uw.shape[1:] != iw.shape[1:]:
            raise ValueError("user and item codes must have the same [G,] d")
        d = user_codes.shape[-1]
        groups = uw.shape[1] if uw.ndim == 3 else 1
        n_users, n_items = uw.shape[0], iw.shape[0]
        scaled = user_scales is not None or item_scales is not None
        su = _scales(user_scales, n_users, groups, "user_scales") if scaled else None
        si = _scales(item_scales, n_items, groups, "item_scales") if scaled else None
        return cls("sign", uw, iw, d, groups, 1, 1, su, si, 1.0, np.zeros(n_items), np.zeros(n_users),
                   backend=backend, device=device)

    @classmethod
    def from_uniform(cls, user_codes, item_codes, bits, user_range, item_range, item_bits=None, *,
                     backend="auto"):
        """Predictor over uniform b-bit codes (HQ-GNN).

        Parameters
        ----------
        user_codes : [n_users, d] unsigned integer codes in [0, 2^bits)
        item_codes : [n_items, d] codes in [0, 2^item_bits)
        bits : int 1..8; item_bits : int or None (= bits)
        user_range, item_range : (l, u) floats with u > l

        The dequantised value is ``e = l + delta * k`` with
        ``delta = (u - l) / (2^bits - 1)``, and
        ``score(u, i) = <e_u, e_i> = delta_u delta_i K + l_u delta_i S_i
        + l_i delta_u S_u + d l_u l_i`` (``K = <k_u, k_i>``, ``S`` = sum of a
        code). The kernels use ``mult = delta_u delta_i``, the per-item bias
        ``l_u delta_i S_i`` and the per-user constant (added before rounding,
        so top-k scores equal :meth:`score`).
        """
        item_bits = bits if item_bits is None else item_bits
        bits, item_bits = check_bits(bits), check_bits(item_bits, "item_bits")
        device = _device_of(user_codes, item_codes)
        up, ip = pack_planes(user_codes, bits), pack_planes(item_codes, item_bits)
        d = user_codes.shape[1]
        if item_codes.shape[1] != d:
            raise ValueError(f"users have d={d}, items d={item_codes.shape[1]}")
        ranges = (_range(user_range, "user_range"), _range(item_range, "item_range"))
        mult, item_bias, user_const = _uniform_affine(
            _code_sums(user_codes), _code_sums(item_codes), d, bits, item_bits, *ranges)
        p = cls("uniform", up, ip, d, 1, bits, item_bits, None, None, mult, item_bias, user_const,
                table_floats=2, backend=backend, device=device)
        p._ranges = ranges
        return p

    # ------------------------------------------------------------------ arrays

    def to_arrays(self) -> dict:
        """Everything that defines the scores, as plain numpy arrays (``np.savez``-able).

        Returns
        -------
        dict of np.ndarray (no object arrays; loads with ``allow_pickle=False``):

        * ``kind`` : str, 0-d unicode, "sign" or "uniform"
        * ``shape`` : int64 [4], ``(dim, groups, user_bits, item_bits)``
        * ``user_words`` : uint64 [n_users, L_u], ``item_words`` : uint64 [n_items, L_i],
          row-major packed codes (:mod:`.bitpack`; L = G * W sign, b * W planes)
        * ``user_scales`` : [n_users, G], ``item_scales`` : [n_items, G] (scaled sign codes
          only): float32 when that is lossless (models keep float32 scales), else float64
        * ``user_range``, ``item_range`` : float64 [2] ``(l, u)`` (built by
          :meth:`from_uniform`: the affine terms are recomputed from them and the codes)
        * ``mult`` : float64 [], ``item_bias`` : float64 [n_items], ``user_const`` :
          float64 [n_users] (only when not derivable as above and not the identity)

        :meth:`from_arrays` rebuilds a predictor whose scores are bit-identical.
        """
        out = {
            "kind": np.array(self._kind),
            "shape": np.array([self._dim, self._groups, self._user_bits, self._item_bits], np.int64),
            "user_words": self._user_words.copy(),
            "item_words": np.ascontiguousarray(self._item_words_t.T),
        }
        if self._scaled:
            out["user_scales"] = _compact(self._su)
            out["item_scales"] = _compact(np.ascontiguousarray(self._si_t.T))
        if self._ranges is not None:
            out["user_range"] = np.array(self._ranges[0], np.float64)
            out["item_range"] = np.array(self._ranges[1], np.float64)
        elif self._mult != 1.0 or self._bias.any() or self._ucons.any():
            out["mult"] = np.array(self._mult, np.float64)
            out["item_bias"] = self._bias.copy()
            out["user_const"] = self._ucons.copy()
        return out

    @classmethod
    def from_arrays(cls, arrays, *, backend="auto", device="cpu") -> "PackedPredictor":
        """Inverse of :meth:`to_arrays` (any mapping of name -> array, e.g. an ``NpzFile``).

        Raises ``ValueError`` naming the first array that is missing or inconsistent.
        """
        def get(name, required=True):
            if name not in arrays:
                if required:
                    raise ValueError(f"packed predictor arrays lack {name!r}")
                return None
            return np.asarray(arrays[name])

        kind = str(get("kind"))
        if kind not in ("sign", "uniform"):
            raise ValueError(f"kind must be 'sign' or 'uniform', got {kind!r}")
        shape = get("shape")
        if shape.shape != (4,) or not np.issubdtype(shape.dtype, np.integer):
            raise ValueError("shape must be 4 integers (dim, groups, user_bits, item_bits)")
        dim, groups, ub, ib = (int(v) for v in shape)
        if dim < 1 or groups < 1:
            raise ValueError(f"dim and groups must be >= 1, got dim={dim}, groups={groups}")
        if kind == "sign" and (ub, ib) != (1, 1):
            raise ValueError(f"sign codes have 1 bit per coordinate, got {ub}/{ib}")
        if kind == "uniform":
            if groups != 1:
                raise ValueError(f"uniform codes have groups=1, got {groups}")
            ub, ib = check_bits(ub, "user_bits"), check_bits(ib, "item_bits")
        w = n_words(dim)
        words = {}
        for side, b in (("user", ub), ("item", ib)):
            x = get(f"{side}_words")
            width = (groups if kind == "sign" else b) * w
            if x.dtype != np.uint64 or x.ndim != 2 or x.shape[1] != width:
                raise ValueError(f"{side}_words must be uint64 [n, {width}], got {x.dtype} {list(x.shape)}")
            words[side] = x
        n_users, n_items = len(words["user"]), len(words["item"])
        su, si = get("user_scales", False), get("item_scales", False)
        if (su is None) != (si is None) or (su is not None and kind != "sign"):
            raise ValueError("user_scales and item_scales come together, for sign codes only")
        if su is not None:
            su = _scales(su, n_users, groups, "user_scales")
            si = _scales(si, n_items, groups, "item_scales")
        mult, bias, ucons, table_floats = 1.0, np.zeros(n_items), np.zeros(n_users), 0
        ranges = None
        if "user_range" in arrays or "item_range" in arrays:
            if kind != "uniform":
                raise ValueError("user_range / item_range belong to uniform codes")
            ranges = (_range(get("user_range"), "user_range"), _range(get("item_range"), "item_range"))
            up = words["user"].reshape(n_users, ub, w)
            ip = words["item"].reshape(n_items, ib, w)
            mult, bias, ucons = _uniform_affine(
                _code_sums(unpack_planes(up, dim)), _code_sums(unpack_planes(ip, dim)),
                dim, ub, ib, *ranges)
        elif "mult" in arrays:
            mult = float(_as_float64(get("mult"), "mult"))
            bias = _as_float64(get("item_bias"), "item_bias")
            ucons = _as_float64(get("user_const"), "user_const")
            if bias.shape != (n_items,) or ucons.shape != (n_users,):
                raise ValueError(f"item_bias must be [{n_items}] and user_const [{n_users}]")
        if ranges is not None:
            table_floats = 2  # the two (l, u) ranges, as from_uniform counts them
        p = cls(kind, words["user"], words["item"], dim, groups, ub, ib, su, si, mult, bias, ucons,
                table_floats=table_floats, backend=backend, device=device)
        p._ranges = ranges
        return p

    # ------------------------------------------------------------------ properties

    @property
    def n_users(self) -> int:
        return self._n_users

    @property
    def n_items(self) -> int:
        return self._n_items

    @property
    def dim(self) -> int:
        """Coordinates per code group ``d``."""
        return self._dim

    @property
    def groups(self) -> int:
        return self._groups

    @property
    def bits(self) -> int:
        """Bits per user coordinate (also per item coordinate unless ``item_bits`` differs)."""
        return self._user_bits

    @property
    def item_bits(self) -> int:
        return self._item_bits

    @property
    def kind(self) -> str:
        return self._kind

    @property
    def backend(self) -> str:
        return self._backend

    @property
    def device(self) -> torch.device:
        return self._device

    def storage(self) -> StorageReport:
        """Storage of the code tables (see :mod:`.storage` for the conventions)."""
        per_node = self._groups if self._scaled else 0
        return storage_report(
            self._kind, self._n_users, self._n_items, self._dim, self._groups,
            self._user_bits, self._item_bits, per_node, per_node,
            self._table_floats, self._table_floats,
        )

    # ------------------------------------------------------------------ queries

    def score(self, user_index) -> torch.Tensor:
        """Scores of all items for a batch of users.

        Parameters
        ----------
        user_index : int64 tensor / array / list [B], rows of the user table

        Returns
        -------
        torch.Tensor float32 [B, n_items], a fresh tensor on every call (callers
        may write into it, e.g. RecBole's -inf masking).
        """
        users = self._users(user_index)
        if self._backend == "torch":
            return self._torch_scores(users)
        out = kernels.run_scores(
            self._kernel_kind, self._user_words[users], self._item_words_t, self._groups,
            self._dim, self._su[users], self._si_t, self._user_bits, self._item_bits,
            self._small, self._mult, self._bias, self._ucons[users],
        )
        return torch.from_numpy(out)

    def topk(self, user_index, k: int, exclude=None):
        """Top-k items per user without building the score matrix (numba path).

        Parameters
        ----------
        user_index : int64 [B]
        k : int > 0; if fewer than k items remain, the tail is -inf / -1
        exclude : None, a scipy.sparse matrix [n_users, n_items] of items to
            skip (e.g. the training history), or ``(indptr, indices)`` CSR rows
            for exactly these B users.

        Returns
        -------
        scores : torch.Tensor float32 [B, k]
        item_ids : torch.Tensor int64 [B, k]
        """
        k = check_k(k)
        users = self._users(user_index)
        indptr, indices = batch_exclusion(exclude, users, self._n_users, self._n_items)
        if self._backend == "torch":
            return dense_topk(self._torch_scores(users), k, indptr, indices)
        s, i = kernels.run_topk(
            self._topk_kind, self._user_words[users], self._item_words_t, self._groups,
            self._dim, self._su[users], self._si_t, self._user_bits, self._item_bits,
            self._small, self._mult, self._bias, self._ucons[users], k, indptr, indices, self._bounds,
            sorted_items=self._sorted,
        )
        return torch.from_numpy(s), torch.from_numpy(i)

    # ------------------------------------------------------------------ internals

    def _users(self, user_index) -> np.ndarray:
        if isinstance(user_index, torch.Tensor):
            user_index = user_index.detach().cpu().numpy()
        users = np.asarray(user_index)
        if users.ndim == 0:
            users = users[None]
        if users.ndim != 1 or not (np.issubdtype(users.dtype, np.integer) or users.size == 0):
            raise ValueError(f"user_index must be a 1-D integer array, got {users.dtype} {users.shape}")
        users = users.astype(np.int64, copy=False)
        if users.size and (users.min() < 0 or users.max() >= self._n_users):
            raise IndexError(f"user ids must lie in [0, {self._n_users})")
        return users

    def _init_torch(self):
        """Unpack the codes once onto the device for the exact matmul path."""
        dev, d = self._device, self._dim
        if self._kind == "sign":
            # |partial sums| <= d per group (scaled: one matmul per group), G * d otherwise
            bound = d if self._scaled else self._groups * d
            dtype = torch_kernels.matmul_dtype(bound, dev, allow_half=True)
            w = n_words(d)
            uw = self._user_words.reshape(self._n_users, self._groups, w)
            iw = np.ascontiguousarray(self._item_words_t.T).reshape(self._n_items, self._groups, w)
            self._tu = torch_kernels.signs_to_device(uw, d, dtype, dev)
            self._ti = torch_kernels.signs_to_device(iw, d, dtype, dev)
            self._t_su = torch.from_numpy(self._su).to(dev) if self._scaled else None
            self._t_si = torch.from_numpy(np.ascontiguousarray(self._si_t.T)).to(dev) if self._scaled else None
        else:
            k_max = d * ((1 << self._user_bits) - 1) * ((1 << self._item_bits) - 1)
            dtype = torch_kernels.matmul_dtype(k_max, dev)
            w = n_words(d)
            up = self._user_words.reshape(self._n_users, self._user_bits, w)
            ip = np.ascontiguousarray(self._item_words_t.T).reshape(self._n_items, self._item_bits, w)
            self._tu = torch_kernels.planes_to_device(up, d, dtype, dev)
            self._ti = torch_kernels.planes_to_device(ip, d, dtype, dev)
        self._t_bias = torch.from_numpy(self._bias).to(dev)
        self._t_ucons = torch.from_numpy(self._ucons).to(dev)

    def _torch_scores(self, users: np.ndarray) -> torch.Tensor:
        idx = torch.from_numpy(users).to(self._device)
        ucons = self._t_ucons[idx]
        if self._kind == "sign":
            su = self._t_su[idx] if self._scaled else None
            return torch_kernels.sign_scores(self._tu[idx], self._ti, su, self._t_si,
                                             self._mult, self._t_bias, ucons)
        return torch_kernels.plane_scores(self._tu[idx], self._ti, self._mult, self._t_bias, ucons)

    def __repr__(self) -> str:
        return (f"PackedPredictor(kind={self._kind!r}, n_users={self._n_users}, n_items={self._n_items}, "
                f"dim={self._dim}, groups={self._groups}, bits={self._user_bits}/{self._item_bits}, "
                f"backend={self._backend!r})")


def _compact(x: np.ndarray) -> np.ndarray:
    """float64 -> float32 when every value survives the round trip (half the bytes)."""
    x32 = x.astype(np.float32)
    return x32 if np.array_equal(x32.astype(np.float64), x) else x.copy()


def _uniform_affine(s_u, s_i, d, bits, item_bits, user_range, item_range):
    """``(mult, item_bias [n_items], user_const [n_users])`` of uniform codes.

    One function for :meth:`PackedPredictor.from_uniform` and
    :meth:`PackedPredictor.from_arrays`: the same float64 operations in the same
    order, so a reloaded predictor scores bit-identically.
    """
    (lu, hu), (li, hi) = user_range, item_range
    du = (hu - lu) / ((1 << int(bits)) - 1)
    di = (hi - li) / ((1 << int(item_bits)) - 1)
    return du * di, lu * di * s_i, li * du * s_u + d * lu * li


def _code_sums(codes) -> np.ndarray:
    """Per-row sum of integer codes, float64 [n] (exact: sums < 2^53)."""
    if isinstance(codes, torch.Tensor):
        codes = codes.detach().cpu().numpy()
    return np.asarray(codes).astype(np.int64).sum(axis=1).astype(np.float64)
