"""The LightGCN/BiGeaR split importer and the dataset pre-flight checks."""

import os

import pytest

from helpers import make_lightgcn_split, write_inter
from recbole_quant import Config
from recbole_quant.data import check_dataset_files, import_lightgcn
from recbole_quant.data.__main__ import main as data_main
from recbole_quant.errors import DatasetNotFoundError, MalformedDatasetError


def read_inter(path):
    with open(path) as f:
        assert f.readline() == "user_id:token\titem_id:token\n"
        return [tuple(map(int, line.split("\t"))) for line in f]


def test_import_writes_three_benchmark_files_without_leaks(tmp_path):
    src = make_lightgcn_split(str(tmp_path / "src"))
    counts = import_lightgcn(src, "toy", str(tmp_path / "out"), valid_ratio=0.25, seed=1)
    folder = tmp_path / "out" / "toy"
    train = read_inter(folder / "toy.train.inter")
    valid = read_inter(folder / "toy.valid.inter")
    test = read_inter(folder / "toy.test.inter")
    assert counts["train"] == len(train) and counts["valid"] == len(valid)
    assert len(train) + len(valid) == 60 * 8  # every training interaction kept
    assert len(valid) == 60 * 2  # round(8 * 0.25) per user
    assert len(test) == 59 * 2  # user 3 has an empty test line
    assert not set(valid) & set(train)  # carved out of train, no duplicates
    assert not set(test) & (set(train) | set(valid))  # never validated on test
    assert counts["users"] == 60


def test_validation_split_is_seeded(tmp_path):
    src = make_lightgcn_split(str(tmp_path / "src"))
    import_lightgcn(src, "a", str(tmp_path / "o1"), seed=7)
    import_lightgcn(src, "a", str(tmp_path / "o2"), seed=7)
    import_lightgcn(src, "a", str(tmp_path / "o3"), seed=8)
    v1 = read_inter(tmp_path / "o1" / "a" / "a.valid.inter")
    assert v1 == read_inter(tmp_path / "o2" / "a" / "a.valid.inter")
    assert v1 != read_inter(tmp_path / "o3" / "a" / "a.valid.inter")


def test_malformed_split_names_file_and_line(tmp_path):
    src = make_lightgcn_split(str(tmp_path / "src"))
    with open(os.path.join(src, "test.txt"), "a") as f:
        f.write("61 4 x7\n")
    with pytest.raises(MalformedDatasetError, match=r"test\.txt, line 61: 'x7'"):
        import_lightgcn(src, "toy", str(tmp_path / "out"))


def test_overlapping_split_is_rejected(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "train.txt").write_text("0 1 2 3\n")
    (src / "test.txt").write_text("0 3\n")
    with pytest.raises(MalformedDatasetError, match="also occur in train"):
        import_lightgcn(str(src), "toy", str(tmp_path / "out"))


def test_cli_import_and_missing_source(tmp_path, capsys):
    src = make_lightgcn_split(str(tmp_path / "src"))
    assert data_main(["import-lightgcn", src, "--name", "toy", "--out", str(tmp_path / "o")]) == 0
    assert "--dataset=toy" in capsys.readouterr().out
    assert data_main(["import-lightgcn", str(tmp_path / "nope"), "--name", "t", "--out", "o"]) == 2
    assert "not found" in capsys.readouterr().err


def test_missing_dataset_names_path_and_import_command(tmp_path):
    config = Config(model="BPR", dataset="yelp", config_dict={"data_path": str(tmp_path)}, cmd_args=[])
    with pytest.raises(DatasetNotFoundError) as err:
        check_dataset_files(config)
    text = str(err.value)
    assert os.path.join(str(tmp_path), "yelp", "yelp.inter") in text
    assert "import-lightgcn" in text


def test_malformed_atomic_file_names_file_and_line(tmp_path):
    path = tmp_path / "toy" / "toy.inter"
    write_inter(str(path), [(1, 2), (2, 3)])
    with open(path, "a") as f:
        f.write("4\t5\t6\n")
    config = Config(model="BPR", dataset="toy", config_dict={"data_path": str(tmp_path)}, cmd_args=[])
    with pytest.raises(MalformedDatasetError, match=r"toy\.inter, line 4"):
        check_dataset_files(config)


def test_bad_header_is_reported(tmp_path):
    write_inter(str(tmp_path / "toy" / "toy.inter"), [(1, 2)], header="user\titem")
    config = Config(model="BPR", dataset="toy", config_dict={"data_path": str(tmp_path)}, cmd_args=[])
    with pytest.raises(MalformedDatasetError, match="line 1"):
        check_dataset_files(config)
