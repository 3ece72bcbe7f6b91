"""Check a dataset's atomic files before RecBole touches them.

RecBole downloads any dataset name it knows but cannot find on disk; with no network that
ends in a ``URLError`` traceback, and an unknown name in ``ValueError: Neither [...] exists``.
Malformed files fail deep inside pandas. :func:`check_dataset_files` runs first and raises a
clear :class:`DatasetNotFoundError` or :class:`MalformedDatasetError` instead; RecBole's
download is never attempted.
"""

import os
import unicodedata

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


def describe_char(char):
    """``'²' (U+00B2 SUPERSCRIPT TWO)``: names characters that look alike or are invisible."""
    return f"{char!r} (U+{ord(char):04X} {unicodedata.name(char, 'unnamed character')})"


def decoded_lines(path, what="save the file as UTF-8"):
    """``(line number, text)`` of a UTF-8 file; a byte that is not UTF-8 or a byte-order mark
    is a :class:`MalformedDatasetError` naming the file, the line and the byte."""
    with open(path, "rb") as f:
        for line_no, line in enumerate(f, start=1):
            if line_no == 1 and line.startswith(b"\xef\xbb\xbf"):
                raise MalformedDatasetError(
                    f"{path}, line 1: starts with a UTF-8 byte-order mark "
                    f"{describe_char(chr(0xFEFF))}; save the file as UTF-8 without BOM."
                )
            try:
                yield line_no, line.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as err:
                raise MalformedDatasetError(
                    f"{path}, line {line_no}: byte 0x{line[err.start]:02x} is not UTF-8 (a "
                    f"Latin-1 or other legacy encoding?): {what}."
                ) from None


def check_inter_file(path, config, scan_lines=True):
    """Header must name the user and item columns with RecBole types; rows must match it."""
    sep = config["field_separator"] or "\t"
    lines = decoded_lines(path)
    header = next(lines, (1, ""))[1]
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
        lines.close()
        return
    for line_no, line in lines:
        if not line.strip():
            continue  # the final newline, blank lines
        if line.count(sep) != len(fields) - 1:
            raise MalformedDatasetError(
                f"{path}, line {line_no}: {line.count(sep) + 1} fields, the header has "
                f"{len(fields)} (separator {sep!r})."
            )
