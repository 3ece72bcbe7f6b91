"""Check a dataset's atomic files before RecBole touches them.

RecBole downloads any dataset name it knows but cannot find on disk; with no network that
ends in a ``URLError`` traceback, and an unknown name in ``ValueError: Neither [...] exists``.
Malformed files fail deep inside pandas. :func:`check_dataset_files` runs first and raises a
clear :class:`DatasetNotFoundError` or :class:`MalformedDatasetError` instead; RecBole's
download is never attempted.
"""

import os

from recbole_quant.errors import DatasetNotFoundError, MalformedDatasetError

IMPORT_HINT = (
    "To use a LightGCN-format split (train.txt/test.txt), import it first:\n"
    "  python -m recbole_quant.data import-lightgcn SRC --name NAME --out DIR\n"
    "then run with --dataset=NAME --data_path=DIR. RecBole's own atomic files "
    "(NAME.inter) work too; datasets are never downloaded by recbole_quant."
)
FIELD_TYPES = {"token", "token_seq", "float", "float_seq"}


def required_files(config):
    """The ``.inter`` files RecBole will read for this config."""
    name, folder = config["dataset"], config["data_path"]
    parts = config["benchmark_filename"]
    if parts:
        return [os.path.join(folder, f"{name}.{part}.inter") for part in parts]
    return [os.path.join(folder, f"{name}.inter")]


def check_dataset_files(config, scan_lines=True):
    """Raise a clear error if the dataset's interaction files are missing or malformed."""
    from recbole_quant.config import uses_bundled_dataset

    if uses_bundled_dataset(config):
        return  # shipped inside RecBole's wheel
    files = required_files(config)
    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
        raise DatasetNotFoundError(
            f"Dataset '{config['dataset']}' not found: looked for "
            + ", ".join(missing)
            + f" (data_path={config['data_path']}).\n"
            + IMPORT_HINT
        )
    for path in files:
        check_inter_file(path, config, scan_lines=scan_lines)


def check_inter_file(path, config, scan_lines=True):
    """Header must name the user and item columns with RecBole types; rows must match it."""
    sep = config["field_separator"] or "\t"
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n")
        fields = header.split(sep)
        names = []
        for field in fields:
            name, _, ftype = field.partition(":")
            if ftype not in FIELD_TYPES:
                raise MalformedDatasetError(
                    f"{path}, line 1: header field '{field}' is not 'name:type' with type in "
                    f"{sorted(FIELD_TYPES)} (RecBole atomic file header, e.g. "
                    "'user_id:token\\titem_id:token')."
                )
            names.append(name)
        for key in ("USER_ID_FIELD", "ITEM_ID_FIELD"):
            if config[key] not in names:
                raise MalformedDatasetError(
                    f"{path}, line 1: no '{config[key]}' column in header {names}."
                )
        if not scan_lines:
            return
        for line_no, line in enumerate(f, start=2):
            if line.count(sep) != len(fields) - 1:
                raise MalformedDatasetError(
                    f"{path}, line {line_no}: {line.count(sep) + 1} fields, the header has "
                    f"{len(fields)} (separator {sep!r})."
                )
