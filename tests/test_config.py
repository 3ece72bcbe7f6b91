"""recbole_quant.Config: model resolution, property files and precedence, option checks."""

import os

import pytest
import yaml

from recbole_quant import Config
from recbole_quant.config import PROPERTIES_DIR
from recbole_quant.errors import UnknownModelError, UnknownOptionError
from helpers import write_inter


def test_plugin_overall_defaults_override_recbole():
    config = Config(model="BPR", dataset="ml-100k", cmd_args=[])
    assert config["valid_metric"] == "Recall@20"  # RecBole's default is MRR@10
    assert config["topk"] == [10, 20, 50]
    assert config["metrics"] == ["Recall", "NDCG", "Hit", "Precision", "MRR"]
    # many users per evaluation batch
    assert config["eval_batch_size"] // 1683 >= 256


def test_precedence_file_then_dict_then_command_line(tmp_path):
    first = tmp_path / "a.yaml"
    second = tmp_path / "b.yaml"
    first.write_text("learning_rate: 0.1\ntrain_batch_size: 64\nstopping_step: 3\n")
    second.write_text("learning_rate: 0.2\n")
    config = Config(
        model="BPR",
        dataset="ml-100k",
        config_file_list=[str(first), str(second)],
        config_dict={"train_batch_size": 128, "valid_metric": "NDCG@10"},
        cmd_args=["--train_batch_size=256"],
    )
    assert config["learning_rate"] == 0.2  # later file wins over earlier file
    assert config["stopping_step"] == 3  # file wins over RecBole's default 10
    assert config["valid_metric"] == "NDCG@10"  # dict wins over plugin default
    assert config["train_batch_size"] == 256  # command line wins over dict


def test_plugin_model_properties_load_after_recbole_and_before_user(tmp_path, monkeypatch):
    # A model yaml in the plugin's properties/model/ folder is read for its model only.
    model_dir = os.path.join(PROPERTIES_DIR, "model")
    path = os.path.join(model_dir, "BPR.yaml")
    assert not os.path.exists(path)
    os.makedirs(model_dir, exist_ok=True)
    try:
        with open(path, "w") as f:
            yaml.safe_dump({"embedding_size": 32, "stopping_step": 7}, f)
        config = Config(model="BPR", dataset="ml-100k", cmd_args=[])
        assert config["embedding_size"] == 32  # over RecBole's BPR.yaml (64)
        assert config["stopping_step"] == 7
        config = Config(
            model="BPR", dataset="ml-100k", config_dict={"embedding_size": 16}, cmd_args=[]
        )
        assert config["embedding_size"] == 16  # user dict over plugin model yaml
    finally:
        os.remove(path)


def test_properties_are_inside_the_package():
    # Found after a non-editable install: the folder ships as package data.
    assert os.path.isfile(os.path.join(PROPERTIES_DIR, "overall.yaml"))


def test_unknown_model_lists_available_models():
    with pytest.raises(UnknownModelError) as err:
        Config(model="NoSuchModel", dataset="ml-100k", cmd_args=[])
    text = str(err.value)
    assert "NoSuchModel" in text and "LightGCN" in text and "BPR" in text


def test_wrong_case_model_name_suggests_the_right_one():
    with pytest.raises(UnknownModelError, match="Did you mean 'LightGCN'"):
        Config(model="lightgcn", dataset="ml-100k", cmd_args=[])


def test_unknown_command_line_option_is_an_error_with_suggestion():
    with pytest.raises(UnknownOptionError) as err:
        Config(model="BPR", dataset="ml-100k", cmd_args=["--learning_rat=0.1"])
    assert "--learning_rat" in str(err.value) and "--learning_rate" in str(err.value)


def test_command_line_values_are_typed_like_recbole():
    config = Config(
        model="BPR",
        dataset="ml-100k",
        cmd_args=["--learning_rate=0.005", "--topk=[5,10]", "--reproducibility=False"],
    )
    assert config["learning_rate"] == 0.005
    assert config["topk"] == [5, 10]
    assert config["reproducibility"] is False


def test_malformed_command_line_argument():
    with pytest.raises(UnknownOptionError, match="--key=value"):
        Config(model="BPR", dataset="ml-100k", cmd_args=["learning_rate"])


def test_benchmark_files_are_detected(tmp_path):
    for part in ("train", "valid", "test"):
        write_inter(str(tmp_path / "toy" / f"toy.{part}.inter"), [(1, 2), (2, 3)])
    config = Config(model="BPR", dataset="toy", config_dict={"data_path": str(tmp_path)}, cmd_args=[])
    assert config["benchmark_filename"] == ["train", "valid", "test"]
    assert config["data_path"] == os.path.join(str(tmp_path), "toy")


def test_single_inter_file_is_not_a_benchmark(tmp_path):
    write_inter(str(tmp_path / "toy" / "toy.inter"), [(1, 2)])
    config = Config(model="BPR", dataset="toy", config_dict={"data_path": str(tmp_path)}, cmd_args=[])
    assert config["benchmark_filename"] is None
