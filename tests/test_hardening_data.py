"""Hardening of the LightGCN-split importer and the atomic-file checks (issue 12, items 3, 4,
6 and the input errors of item 9): honest splits, writes only inside --out, clear errors."""

import os

import pytest

from helpers import make_lightgcn_split, write_inter
from recbole_quant import Config
from recbole_quant.data import check_dataset_files, import_lightgcn
from recbole_quant.data.__main__ import main as data_main
from recbole_quant.errors import MalformedDatasetError


def read_pairs(path):
    with open(path) as f:
        f.readline()
        return [tuple(map(int, line.split("\t"))) for line in f]


def split(tmp_path, train, test):
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / "train.txt").write_text(train)
    (src / "test.txt").write_text(test)
    return str(src)


# ---------------------------------------------------------------- item 3: duplicates


def test_repeated_items_are_dropped_and_never_leak_into_valid(tmp_path):
    # user 0 lists item 5 four times: before, it could land in both train and valid
    src = split(tmp_path, "0 5 5 5 5 1 2 3 4 6 7 8 9\n1 1 2 3\n", "0 10 10\n1 4\n")
    counts = import_lightgcn(src, "d", str(tmp_path / "out"), valid_ratio=0.5, seed=0)
    folder = tmp_path / "out" / "d"
    train, valid = read_pairs(folder / "d.train.inter"), read_pairs(folder / "d.valid.inter")
    test = read_pairs(folder / "d.test.inter")
    assert not set(train) & set(valid)
    assert len(train) == len(set(train)) and len(valid) == len(set(valid))
    assert len(train) + len(valid) == 9 + 3  # distinct training items
    assert test == [(0, 10), (1, 4)]
    assert counts["duplicates"] == {"train": 3, "test": 1}


def test_cli_reports_dropped_duplicates_and_unseen_test_items(tmp_path, capsys):
    src = split(tmp_path, "0 1 1 2\n1 2 3\n", "0 9\n1 1\n")
    assert data_main(["import-lightgcn", src, "--name", "d", "--out", str(tmp_path / "o"),
                      "--valid-ratio", "0"]) == 0
    out, err = capsys.readouterr()
    assert "dropped repeated items on a line: 1 in train.txt, 0 in test.txt" in out
    assert "warning: 1 test interactions have an item that never occurs" in err


# ---------------------------------------------------------------- item 4: --name, --force


@pytest.mark.parametrize("name", ["../x", "a/b", "", ".", "..", "/abs/path", ".hidden"])
def test_name_must_be_plain_and_nothing_is_written(tmp_path, capsys, name):
    src = make_lightgcn_split(str(tmp_path / "src"))
    out = tmp_path / "work" / "out"
    before = sorted(p for p in tmp_path.rglob("*"))
    assert data_main(["import-lightgcn", src, "--name", name, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "is not a plain dataset name" in err and "Traceback" not in err
    assert sorted(p for p in tmp_path.rglob("*")) == before  # no folder, no file anywhere


def test_reimport_needs_force_and_names_the_files(tmp_path, capsys):
    src = make_lightgcn_split(str(tmp_path / "src"))
    args = ["import-lightgcn", src, "--name", "d", "--out", str(tmp_path / "o")]
    assert data_main(args) == 0
    train = tmp_path / "o" / "d" / "d.train.inter"
    train.write_text("user_id:token\titem_id:token\n1\t2\n")  # the user's own edit
    capsys.readouterr()
    assert data_main(args) == 2
    err = capsys.readouterr().err
    assert "Would replace existing files" in err and str(train) in err and "--force" in err
    assert train.read_text() == "user_id:token\titem_id:token\n1\t2\n"
    assert data_main(args + ["--force"]) == 0
    assert len(read_pairs(train)) > 1


def test_out_pointing_at_a_file(tmp_path, capsys):
    src = make_lightgcn_split(str(tmp_path / "src"))
    (tmp_path / "f").write_text("keep")
    assert data_main(["import-lightgcn", src, "--name", "d", "--out", str(tmp_path / "f")]) == 2
    assert "is a file: give a folder" in capsys.readouterr().err
    assert (tmp_path / "f").read_text() == "keep"


# ---------------------------------------------------------------- item 6 / 9: empty splits


def test_empty_train_is_refused_at_import(tmp_path):
    src = split(tmp_path, "", "0 1\n")
    with pytest.raises(MalformedDatasetError, match=r"train\.txt has no interactions"):
        import_lightgcn(src, "d", str(tmp_path / "out"))
    assert not (tmp_path / "out" / "d").exists()


def test_users_without_items_only_is_empty_too(tmp_path):
    src = split(tmp_path, "0\n1\n", "0 1\n")
    with pytest.raises(MalformedDatasetError, match="has no interactions"):
        import_lightgcn(src, "d", str(tmp_path / "out"))


def test_both_split_files_empty_is_a_clean_cli_error(tmp_path, capsys):
    src = split(tmp_path, "", "")
    assert data_main(["import-lightgcn", src, "--name", "d", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "train.txt has no interactions" in err and "Traceback" not in err


# ---------------------------------------------------------------- item 9: odd input


@pytest.mark.parametrize("content, message", [
    ("0 1 100000000000000000000\n", r"line 1: id 100000000000000000000 is too large"),
    ("0 1 \u00b2\n", r"line 1: '²' is not an integer id, character '²' \(U\+00B2 SUPERSCRIPT TWO\)"),
    ("0 1 2\n1 \u0663\n", r"line 2: '٣' is not an integer id, character '٣' \(U\+0663 ARABIC-INDIC DIGIT THREE\)"),
    ("\ufeff0 1 2\n", r"line 1: starts with a UTF-8 byte-order mark '\\ufeff' \(U\+FEFF ZERO WIDTH NO-BREAK SPACE\)"),
    ("0 1 -2\n", r"line 1: negative id -2"),
])
def test_odd_tokens_name_file_line_and_character(tmp_path, capsys, content, message):
    src = split(tmp_path, content, "0 3\n")
    with pytest.raises(MalformedDatasetError, match=r"train\.txt, " + message):
        import_lightgcn(src, "d", str(tmp_path / "out"))
    assert data_main(["import-lightgcn", src, "--name", "d", "--out", str(tmp_path / "o")]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_latin1_byte_names_file_and_line(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "train.txt").write_bytes(b"0 1 2\n1 2 3 \xe9\n")
    (src / "test.txt").write_text("0 3\n")
    with pytest.raises(MalformedDatasetError, match=r"train\.txt, line 2: byte 0xe9 is not UTF-8"):
        import_lightgcn(str(src), "d", str(tmp_path / "out"))


def test_latin1_byte_in_an_atomic_file(tmp_path):
    path = tmp_path / "toy" / "toy.inter"
    write_inter(str(path), [(1, 2), (2, 3)])
    with open(path, "ab") as f:
        f.write(b"caf\xe9\t4\n")
    config = Config(model="BPR", dataset="toy", config_dict={"data_path": str(tmp_path)}, cmd_args=[])
    with pytest.raises(MalformedDatasetError, match=r"toy\.inter, line 4: byte 0xe9 is not UTF-8"):
        check_dataset_files(config)


def test_bom_in_an_atomic_file_header(tmp_path):
    path = tmp_path / "toy" / "toy.inter"
    write_inter(str(path), [(1, 2)], header="\ufeffuser_id:token\titem_id:token")
    config = Config(model="BPR", dataset="toy", config_dict={"data_path": str(tmp_path)}, cmd_args=[])
    with pytest.raises(MalformedDatasetError, match=r"line 1: starts with a UTF-8 byte-order mark"):
        check_dataset_files(config)


def test_unchanged_split_output_for_clean_input(tmp_path):
    # deduplication must not move the seeded split of files without repeats
    src = make_lightgcn_split(str(tmp_path / "src"))
    import_lightgcn(src, "a", str(tmp_path / "o"), seed=7)
    valid = read_pairs(tmp_path / "o" / "a" / "a.valid.inter")
    assert len(valid) == 60 and os.path.getsize(tmp_path / "o" / "a" / "a.train.inter") > 0
