"""--preset=NAME: a shipped yaml read as the first config file."""

import pytest

from recbole_quant import Config
from recbole_quant.cli import main
from recbole_quant.config import preset_file, preset_names
from recbole_quant.errors import ConfigValueError

import yaml


def test_fast_preset_is_shipped_and_every_key_is_known():
    assert "fast" in preset_names()
    values = yaml.safe_load(open(preset_file("fast")))
    config = Config(model="LightGCN", dataset="ml-100k", cmd_args=["--preset=fast"])
    for key, value in values.items():
        assert config[key] == value, key


def test_preset_is_below_config_files_dicts_and_command_line(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("learning_rate: 0.0007\n")
    config = Config(model="LightGCN", dataset="ml-100k", config_file_list=[str(mine)],
                    cmd_args=["--preset=fast"])
    assert config["learning_rate"] == 0.0007  # the user's file wins
    assert config["train_batch_size"] == yaml.safe_load(open(preset_file("fast")))["train_batch_size"]
    config = Config(model="HQGNN", dataset="ml-100k", config_dict={"preset": "fast"},
                    cmd_args=["--train_batch_size=512"])
    assert config["train_batch_size"] == 512


def test_without_preset_nothing_changes():
    assert Config(model="LightGCN", dataset="ml-100k", cmd_args=[])["train_batch_size"] == 2048


def test_unknown_preset_lists_the_presets(capsys):
    with pytest.raises(ConfigValueError, match="Unknown preset 'quick'. Presets: fast"):
        Config(model="LightGCN", dataset="ml-100k", cmd_args=["--preset=quick"])
    assert main(["--model=HQGNN", "--preset=quick"]) == 2
    assert "Presets: fast" in capsys.readouterr().err
