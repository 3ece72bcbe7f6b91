"""Hardening of the configuration (issue 12): nothing from the command line, a file or a
config dict runs as code; config files fail clearly; unknown keys are caught everywhere;
a given data_path wins for ml-100k."""

import os

import pytest
import yaml

from helpers import make_lightgcn_split
from recbole_quant import Config
from recbole_quant.cli import main
from recbole_quant.config import parse_config_value
from recbole_quant.data import import_lightgcn
from recbole_quant.errors import ConfigFileError, UnknownOptionError
from recbole_quant.quick_start import load_data

MARKER = "PWNED_CONFIG"
EVIL = f"__import__('os').system('touch {MARKER}') or 0.003"


# ---------------------------------------------------------------- item 1: no eval of values


def test_command_line_value_is_never_evaluated(isolated_cwd):
    config = Config(model="BPR", dataset="ml-100k", cmd_args=[f"--learning_rate={EVIL}"])
    assert not os.path.exists(isolated_cwd / MARKER)
    assert config["learning_rate"] == EVIL  # kept as the text it is


def test_config_dict_string_is_never_evaluated(isolated_cwd):
    config = Config(model="BPR", dataset="ml-100k", config_dict={"learning_rate": EVIL},
                    cmd_args=[])
    assert not os.path.exists(isolated_cwd / MARKER)
    assert config["learning_rate"] == EVIL


def test_yaml_python_tags_are_refused(isolated_cwd):
    path = isolated_cwd / "evil.yaml"
    path.write_text(f"learning_rate: !!python/object/apply:os.system ['touch {MARKER}']\n")
    with pytest.raises(ConfigFileError, match=r"evil\.yaml, line 1"):
        Config(model="BPR", dataset="ml-100k", config_file_list=[str(path)], cmd_args=[])
    assert not os.path.exists(isolated_cwd / MARKER)


@pytest.mark.parametrize("text, value", [
    ("0.01", 0.01),
    ("1e9", 1e9),
    ("1e-3", 0.001),
    ("-1", -1),
    ("[10,20]", [10, 20]),
    ("[10, 20, 50]", [10, 20, 50]),
    ("True", True),
    ("false", False),
    ("None", None),
    ("~", None),
    ("Recall@20", "Recall@20"),
    ("ml-100k", "ml-100k"),
    ("'quoted'", "quoted"),
    ("{'split': {'RS': [0.8,0.1,0.1]}, 'order': 'RO', 'mode': 'full'}",
     {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "RO", "mode": "full"}),
    ("{'RS':[0.8,0.1,0.1]}", {"RS": [0.8, 0.1, 0.1]}),
    ('{"valid": "full", "test": "full"}', {"valid": "full", "test": "full"}),
    ("a: b", "a: b"),  # block YAML is not a flow value: stays text
    ("[0,inf)", "[0,inf)"),  # RecBole's interval syntax stays text, as with eval
])
def test_recbole_value_forms_parse_as_before(text, value):
    assert parse_config_value(text) == value
    assert type(parse_config_value(text)) is type(value)


def test_eval_args_dict_from_command_line():
    config = Config(model="BPR", dataset="ml-100k", cmd_args=[
        "--eval_args={'split': {'RS': [0.7,0.2,0.1]}, 'order': 'RO', 'group_by': 'user', "
        "'mode': 'full'}", "--topk=[5,10]", "--valid_metric=Recall@5"])
    assert config["eval_args"]["split"] == {"RS": [0.7, 0.2, 0.1]}
    assert config["topk"] == [5, 10]


# ---------------------------------------------------------------- item 9: config files


def test_missing_config_file_is_a_clean_cli_error(capsys):
    assert main(["--model=BPR", "--config_files=nosuch.yaml"]) == 2
    err = capsys.readouterr().err
    assert "Config file nosuch.yaml does not exist" in err and "Traceback" not in err


def test_malformed_yaml_names_file_and_line(isolated_cwd, capsys):
    (isolated_cwd / "bad.yaml").write_text("epochs: 3\nlearning_rate: [0.1\nbits: 2\n")
    assert main(["--model=BPR", "--config_files=bad.yaml"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: bad.yaml, line 3: not valid YAML"), err


def test_yaml_that_is_not_a_mapping(isolated_cwd):
    (isolated_cwd / "list.yaml").write_text("- epochs\n- 3\n")
    with pytest.raises(ConfigFileError, match="a YAML mapping"):
        Config(model="BPR", dataset="ml-100k", config_file_list=["list.yaml"], cmd_args=[])


def test_latin1_config_file_names_the_line(isolated_cwd):
    (isolated_cwd / "l1.yaml").write_bytes(b"epochs: 3\n# caf\xe9\n")
    with pytest.raises(ConfigFileError, match=r"l1\.yaml, line 2: byte 0xe9 is not UTF-8"):
        Config(model="BPR", dataset="ml-100k", config_file_list=["l1.yaml"], cmd_args=[])


# ---------------------------------------------------------------- item 10: unknown keys


def test_typo_in_config_file_is_an_error_with_suggestion(isolated_cwd):
    (isolated_cwd / "my.yaml").write_text("learning_rat: 0.01\n")
    with pytest.raises(UnknownOptionError) as err:
        Config(model="BPR", dataset="ml-100k", config_file_list=["my.yaml"], cmd_args=[])
    assert "'learning_rat' in config file my.yaml" in str(err.value)
    assert "learning_rate" in str(err.value)


def test_typo_in_config_dict_is_an_error():
    with pytest.raises(UnknownOptionError, match="'epoch' in config_dict.*epochs"):
        Config(model="BPR", dataset="ml-100k", config_dict={"epoch": 3}, cmd_args=[])


def test_model_keys_in_files_are_known(isolated_cwd):
    (isolated_cwd / "hq.yaml").write_text(yaml.safe_dump({"bits": 2, "epochs": 1}))
    config = Config(model="HQGNN", dataset="ml-100k", config_file_list=["hq.yaml"], cmd_args=[])
    assert config["bits"] == 2


# ---------------------------------------------------------------- item 5: data_path wins


def test_given_data_path_wins_over_bundled_ml100k(tmp_path):
    src = make_lightgcn_split(str(tmp_path / "src"), n_users=30, n_items=25)
    import_lightgcn(src, "ml-100k", str(tmp_path / "shadow"))
    config = Config(model="BPR", dataset="ml-100k",
                    config_dict={"data_path": str(tmp_path / "shadow")}, cmd_args=[])
    assert config["data_path"] == os.path.join(str(tmp_path / "shadow"), "ml-100k")
    assert config["benchmark_filename"] == ["train", "valid", "test"]
    dataset, *_ = load_data(config)
    assert dataset.user_num == 30 + 1  # the shadow copy (RecBole's has 943 users)


def test_bundled_ml100k_without_data_path():
    config = Config(model="BPR", dataset="ml-100k", cmd_args=[])
    assert os.path.isfile(os.path.join(config["data_path"], "ml-100k.inter"))
    assert config["benchmark_filename"] is None


def test_given_data_path_without_ml100k_is_a_clear_error(tmp_path):
    from recbole_quant.errors import DatasetNotFoundError

    config = Config(model="BPR", dataset="ml-100k", config_dict={"data_path": str(tmp_path)},
                    cmd_args=[])
    with pytest.raises(DatasetNotFoundError, match="ml-100k.inter"):
        load_data(config)
