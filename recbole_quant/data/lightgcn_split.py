"""Import the LightGCN / BiGeaR split format into RecBole atomic benchmark files.

Source format (``train.txt``, ``test.txt``): one line per user, ``user item item ...``,
space separated, 0-based integer ids. A user may have an empty line or a line with only its
id (no test items); blank lines are skipped.

Output: ``OUT/NAME/NAME.train.inter``, ``NAME.valid.inter``, ``NAME.test.inter`` with the
header ``user_id:token<TAB>item_id:token``. RecBole's ``benchmark_filename`` reads them as a
fixed split; :class:`recbole_quant.Config` sets it automatically when it finds the three files.

The validation split is carved out of *train*, never out of test: per user, a seeded shuffle
of its training items puts ``round(n * valid_ratio)`` of them into valid, keeping at least one
in train (users with a single training item keep it in train).
"""

import os

import numpy as np

from recbole_quant.errors import DatasetNotFoundError, MalformedDatasetError

HEADER = "user_id:token\titem_id:token\n"


def read_user_item_lines(path):
    """Read ``user item item ...`` lines.

    Returns
    -------
    dict[int, np.ndarray]
        user id -> int64 item ids [n_u] in file order (users with no items map to an empty array).

    Raises
    ------
    MalformedDatasetError
        a token that is not a non-negative integer, or a user listed twice (names file and line).
    """
    if not os.path.isfile(path):
        raise DatasetNotFoundError(f"Split file not found: {path}")
    rows = {}
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            tokens = line.split()
            if not tokens:
                continue
            try:
                ids = np.array([int(t) for t in tokens], dtype=np.int64)
            except ValueError:
                bad = next(t for t in tokens if not t.lstrip("-").isdigit())
                raise MalformedDatasetError(
                    f"{path}, line {line_no}: '{bad}' is not an integer id "
                    "(expected 'user item item ...', space separated)."
                ) from None
            if (ids < 0).any():
                raise MalformedDatasetError(f"{path}, line {line_no}: negative id.")
            user = int(ids[0])
            if user in rows:
                raise MalformedDatasetError(
                    f"{path}, line {line_no}: user {user} is listed twice."
                )
            rows[user] = ids[1:]
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
    with open(path, "w", encoding="utf-8") as f:
        f.write(HEADER)
        if len(users):
            np.savetxt(f, np.stack([users, items], axis=1), fmt="%d", delimiter="\t")
    return len(users)


def import_lightgcn(src, name, out, valid_ratio=0.1, seed=2020):
    """Convert ``src/train.txt`` + ``src/test.txt`` into RecBole benchmark files.

    Args:
        src (str): folder holding ``train.txt`` and ``test.txt``.
        name (str): dataset name; files go to ``out/name/name.{train,valid,test}.inter``.
        out (str): output root, used as ``--data_path`` afterwards.
        valid_ratio (float): share of each user's training items moved to validation.
        seed (int): seed of that split.

    Returns:
        dict: counts (users, items, train, valid, test interactions) and the folder written.
    """
    train_rows = read_user_item_lines(os.path.join(src, "train.txt"))
    test_rows = read_user_item_lines(os.path.join(src, "test.txt"))
    overlap = sum(
        len(np.intersect1d(test_rows[u], train_rows.get(u, []))) for u in test_rows
    )
    if overlap:
        raise MalformedDatasetError(
            f"{src}: {overlap} test interactions also occur in train; a split must not overlap."
        )
    train, valid = split_validation(train_rows, valid_ratio, seed)
    test = {u: np.sort(v) for u, v in sorted(test_rows.items()) if len(v)}
    folder = os.path.join(out, name)
    os.makedirs(folder, exist_ok=True)
    counts = {
        "train": _write_inter(os.path.join(folder, f"{name}.train.inter"), train),
        "valid": _write_inter(os.path.join(folder, f"{name}.valid.inter"), valid),
        "test": _write_inter(os.path.join(folder, f"{name}.test.inter"), test),
    }
    all_rows = list(train_rows.values()) + list(test_rows.values())
    counts["users"] = len(set(train_rows) | {u for u, v in test_rows.items() if len(v)})
    counts["items"] = int(np.unique(np.concatenate(all_rows)).size)
    counts["folder"] = folder
    return counts
