"""Storage accounting of packed code tables.

Conventions
-----------
* Bits per code (``user_code_bits`` / ``item_code_bits``): the code bits
  ``G * d * b`` plus every per-node float (scales) at 32 bits each. This is
  the information actually needed per node, independent of word padding.
* Table bytes: what is stored: ``n * L`` packed 64-bit words (``L`` includes
  the zero tail of the last word), per-node float32 scales, and per-table
  floats (the uniform quantiser's ``(l, u)``) at 4 bytes each. Caches derived
  from the codes (per-item sums, biases, the torch path's unpacked copies) are
  not storage and are not counted.
* ``ratio_vs_float32``: float32 embedding of width ``d`` (``32 d`` bits) over
  bits per item code. For multi-group codes (L2Q-GCN: one d-bit code per
  layer) this compares against ONE float32 vector of width d, as the L2Q-GCN
  paper does; ``ratio_vs_float32_concat`` compares against the float32
  concatenation of all ``G`` groups (``32 G d`` bits).

Example: 1-bit d=64 sign codes: 64 bits = 8 bytes per item vs 256 bytes of
float32 -> 32x. L2Q-GCN d=256, 3 layers with one scale each: 3*256 + 3*32 =
864 bits per node -> 9.48x vs one float32 vector, 28.4x vs the concatenation.
"""
from __future__ import annotations

from dataclasses import dataclass

from .bitpack import n_words

__all__ = ["StorageReport", "storage_report"]


@dataclass(frozen=True)
class StorageReport:
    """Storage of a user and an item code table (see module conventions)."""

    kind: str  # "sign" or "uniform"
    dim: int  # d, coordinates per group
    groups: int  # G
    user_bits: int  # bits per coordinate
    item_bits: int
    n_users: int
    n_items: int
    user_code_bits: int  # per user: code bits + 32 * per-node floats
    item_code_bits: int
    user_table_bytes: int  # packed words + per-node floats + per-table floats
    item_table_bytes: int
    ratio_vs_float32: float  # 32 d / item_code_bits
    ratio_vs_float32_concat: float  # 32 G d / item_code_bits

    @property
    def item_code_bytes(self) -> float:
        """Bytes per item code (``item_code_bits / 8``)."""
        return self.item_code_bits / 8

    def __str__(self) -> str:
        return (
            f"{self.kind} codes d={self.dim} G={self.groups} bits={self.user_bits}/{self.item_bits}: "
            f"{self.user_code_bits} bits/user, {self.item_code_bits} bits/item; tables "
            f"{self.user_table_bytes} B (users) + {self.item_table_bytes} B (items); "
            f"{self.ratio_vs_float32:.2f}x vs float32 d={self.dim}"
            + (f", {self.ratio_vs_float32_concat:.2f}x vs float32 d={self.groups * self.dim}"
               if self.groups > 1 else "")
        )


def storage_report(kind: str, n_users: int, n_items: int, dim: int, groups: int = 1,
                   user_bits: int = 1, item_bits: int = 1, user_floats_per_node: int = 0,
                   item_floats_per_node: int = 0, user_table_floats: int = 0,
                   item_table_floats: int = 0) -> StorageReport:
    """Build a :class:`StorageReport`.

    Parameters
    ----------
    kind : "sign" or "uniform"
    n_users, n_items, dim, groups : table sizes; ``dim`` per group
    user_bits, item_bits : bits per coordinate
    user_floats_per_node, item_floats_per_node : float32 values stored per row (scales)
    user_table_floats, item_table_floats : float32 values stored once per table (ranges)
    """
    w = n_words(dim)
    user_code_bits = groups * dim * user_bits + 32 * user_floats_per_node
    item_code_bits = groups * dim * item_bits + 32 * item_floats_per_node
    user_table_bytes = n_users * (groups * user_bits * w * 8 + 4 * user_floats_per_node) + 4 * user_table_floats
    item_table_bytes = n_items * (groups * item_bits * w * 8 + 4 * item_floats_per_node) + 4 * item_table_floats
    return StorageReport(
        kind=kind,
        dim=dim,
        groups=groups,
        user_bits=user_bits,
        item_bits=item_bits,
        n_users=n_users,
        n_items=n_items,
        user_code_bits=user_code_bits,
        item_code_bits=item_code_bits,
        user_table_bytes=user_table_bytes,
        item_table_bytes=item_table_bytes,
        ratio_vs_float32=32 * dim / item_code_bits,
        ratio_vs_float32_concat=32 * groups * dim / item_code_bits,
    )
