"""Import the LightGCN / BiGeaR split format into RecBole atomic benchmark files.

Source format (``train.txt``, ``test.txt``): one line per user, ``user item item ...``,
space separated, 0-based integer ids (ASCII digits, UTF-8 file). A user may have an empty
line or a line with only its id (no test items); blank lines are skipped. An item repeated
on a line is kept once (the count dropped is reported).

Output: ``OUT/NAME/NAME.train.inter``, ``NAME.valid.inter``, ``NAME.test.inter`` with the
header ``user_id:token<TAB>item_id:token``. RecBole's ``benchmark_filename`` reads them as a
fixed split; :class:`recbole_quant.Config` sets it automatically when it finds the three files.
``NAME`` must be a plain name (the files never land outside ``OUT``), existing files are
replaced only with ``force=True``, and each file is written to a temporary name and renamed.

The validation split is carved out of *train*, never out of test: per user, a seeded shuffle
of its (deduplicated) training items puts ``round(n * valid_ratio)`` of them into valid,
keeping at least one in train (users with a single training item keep it in train), so train
and valid are disjoint.
"""

import os
import re
import tempfile

import numpy as np

from recbole_quant.data.checks import decoded_lines, describe_char
from recbole_quant.errors import DatasetNotFoundError, MalformedDatasetError

HEADER = "user_id:token\titem_id:token\n"
MAX_ID = np.iinfo(np.int64).max
PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def check_dataset_name(name):
    """``name`` must be a plain file name: it becomes ``OUT/name/name.*.inter``."""
    if not PLAIN_NAME.fullmatch(name or "") or name in (".", ".."):
        raise MalformedDatasetError(
            f"--name {name!r} is not a plain dataset name: use letters, digits, '.', '_' or "
            "'-', starting with a letter or digit (no '/', no '..'); the files are written "
            "to OUT/NAME/ and NAME is what --dataset takes."
        )


def _parse_id(token, path, line_no):
    if not (token.isascii() and token.isdigit()):
        odd = [c for c in token if not (c.isascii() and c.isdigit())]
        detail = f", character {describe_char(odd[0])}" if odd and not odd[0].isascii() else ""
        if token.startswith("-") and token[1:].isascii() and token[1:].isdigit():
            raise MalformedDatasetError(f"{path}, line {line_no}: negative id {token}.")
        raise MalformedDatasetError(
            f"{path}, line {line_no}: {token!r} is not an integer id{detail} "
            "(expected 'user item item ...', space separated ASCII digits)."
        )
    value = int(token)
    if value > MAX_ID:
        raise MalformedDatasetError(
            f"{path}, line {line_no}: id {token} is too large (at most {MAX_ID})."
        )
    return value


def read_user_item_lines(path, duplicates=None):
    """Read ``user item item ...`` lines.

    Args:
        path (str): the split file.
        duplicates (dict, optional): filled with user id -> number of repeated items dropped.

    Returns
    -------
    dict[int, np.ndarray]
        user id -> int64 item ids [n_u] in file order, each item once (users with no items
        map to an empty array).

    Raises
    ------
    MalformedDatasetError
        a token that is not a non-negative integer (an odd character is named), an id that
        does not fit 64 bits, a byte that is not UTF-8, or a user listed twice (names file
        and line).
    """
    if not os.path.isfile(path):
        raise DatasetNotFoundError(f"Split file not found: {path}")
    rows = {}
    for line_no, line in decoded_lines(path, what="ids must be ASCII digits in a UTF-8 file"):
        tokens = line.split()
        if not tokens:
            continue
        ids = [_parse_id(t, path, line_no) for t in tokens]
        user = ids[0]
        if user in rows:
            raise MalformedDatasetError(f"{path}, line {line_no}: user {user} is listed twice.")
        items = list(dict.fromkeys(ids[1:]))  # first occurrence kept, file order
        if duplicates is not None and len(items) < len(ids) - 1:
            duplicates[user] = len(ids) - 1 - len(items)
        rows[user] = np.array(items, dtype=np.int64)
    return rows


def split_validation(train_rows, valid_ratio, seed):
    """Move a seeded per-user share of training items into a validation split.

    Returns
    -------
    (dict, dict)
        train and valid rows, user -> item ids.
    """
    if not 0.0 <= valid_ratio < 1.0:
        raise ValueError(f"valid_ratio must be in [0, 1), got {valid_ratio}.")
    rng = np.random.default_rng(seed)
    train, valid = {}, {}
    for user in sorted(train_rows):
        items = train_rows[user]
        n_valid = min(int(round(len(items) * valid_ratio)), max(len(items) - 1, 0))
        order = rng.permutation(len(items))
        valid[user] = np.sort(items[order[:n_valid]])
        train[user] = np.sort(items[order[n_valid:]])
    return train, valid


def _write_inter(path, rows):
    users = np.concatenate([np.full(len(v), u, dtype=np.int64) for u, v in rows.items()] or [np.empty(0, np.int64)])
    items = np.concatenate(list(rows.values()) or [np.empty(0, np.int64)])
    # a fresh temporary name in the same folder, then rename: a crash never leaves half a
    # file under the final name, and no file of the user's is clobbered
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".inter", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(HEADER)
            if len(users):
                np.savetxt(f, np.stack([users, items], axis=1), fmt="%d", delimiter="\t")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return len(users)


def _output_folder(name, out, force):
    """``out/name``, checked: a plain name, ``out`` not a file, no silent replacement."""
    check_dataset_name(name)
    if os.path.exists(out) and not os.path.isdir(out):
        raise MalformedDatasetError(f"--out {out} is a file: give a folder (created if missing).")
    folder = os.path.join(out, name)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise MalformedDatasetError(f"{folder} is a file: give another --name or --out.")
    targets = [os.path.join(folder, f"{name}.{part}.inter") for part in ("train", "valid", "test")]
    existing = [t for t in targets if os.path.exists(t)]
    if existing and not force:
        raise MalformedDatasetError(
            "Would replace existing files: " + ", ".join(existing)
            + ". Pass --force to replace them, or choose another --name / --out."
        )
    return folder


def import_lightgcn(src, name, out, valid_ratio=0.1, seed=2020, force=False):
    """Convert ``src/train.txt`` + ``src/test.txt`` into RecBole benchmark files.

    Args:
        src (str): folder holding ``train.txt`` and ``test.txt``.
        name (str): dataset name, a plain name; files go to
            ``out/name/name.{train,valid,test}.inter``.
        out (str): output root, used as ``--data_path`` afterwards.
        valid_ratio (float): share of each user's training items moved to validation.
        seed (int): seed of that split.
        force (bool): replace existing output files (otherwise an error lists them).

    Returns:
        dict: counts (users, items, train, valid, test interactions), ``duplicates`` (repeated
        items dropped, per file), ``test_unseen`` (test interactions whose item never occurs
        in the train split) and the folder written.
    """
    folder = _output_folder(name, out, force)
    dup_train, dup_test = {}, {}
    train_path, test_path = os.path.join(src, "train.txt"), os.path.join(src, "test.txt")
    train_rows = read_user_item_lines(train_path, dup_train)
    test_rows = read_user_item_lines(test_path, dup_test)
    for path, rows in ((train_path, train_rows), (test_path, test_rows)):
        if not any(len(v) for v in rows.values()):
            raise MalformedDatasetError(
                f"{path} has no interactions (no line with a user and at least one item): "
                "nothing to train or test on."
            )
    overlap = sum(
        len(np.intersect1d(test_rows[u], train_rows.get(u, []))) for u in test_rows
    )
    if overlap:
        raise MalformedDatasetError(
            f"{src}: {overlap} test interactions also occur in train; a split must not overlap."
        )
    train, valid = split_validation(train_rows, valid_ratio, seed)
    test = {u: np.sort(v) for u, v in sorted(test_rows.items()) if len(v)}
    os.makedirs(folder, exist_ok=True)
    counts = {
        "train": _write_inter(os.path.join(folder, f"{name}.train.inter"), train),
        "valid": _write_inter(os.path.join(folder, f"{name}.valid.inter"), valid),
        "test": _write_inter(os.path.join(folder, f"{name}.test.inter"), test),
    }
    all_rows = list(train_rows.values()) + list(test_rows.values())
    counts["users"] = len(set(train_rows) | {u for u, v in test_rows.items() if len(v)})
    counts["items"] = int(np.unique(np.concatenate(all_rows)).size)
    counts["duplicates"] = {"train": sum(dup_train.values()), "test": sum(dup_test.values())}
    trained_items = np.unique(np.concatenate(list(train.values())))
    counts["test_unseen"] = int(sum((~np.isin(v, trained_items)).sum() for v in test.values()))
    counts["folder"] = folder
    return counts
