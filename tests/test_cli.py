"""run_recbole_quant.py: argument forms and clean errors for bad input."""

import os
import subprocess
import sys


from helpers import write_inter
from recbole_quant.cli import main, parse_args

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "run_recbole_quant.py")


def run_script(*args, timeout=60):
    return subprocess.run(
        [sys.executable, SCRIPT, *args], capture_output=True, text=True, timeout=timeout
    )


def test_model_with_space_or_equals_and_overrides():
    own, overrides = parse_args(
        ["--model", "HQGNN", "--dataset=ml-100k", "--bits=2", "--learning_rate", "0.01"]
    )
    assert own == {"model": "HQGNN", "dataset": "ml-100k"}
    assert overrides == ["--bits=2", "--learning_rate=0.01"]


def test_unknown_model_exits_fast_with_model_list():
    # timeout=10: the check must not hang or load data first.
    proc = run_script("--model=NoSuchModel", timeout=10)
    assert proc.returncode == 2
    assert "Unknown model 'NoSuchModel'" in proc.stderr
    assert "LightGCN" in proc.stderr and "Traceback" not in proc.stderr


def test_list_models(capsys):
    assert main(["--list-models"]) == 0
    out = capsys.readouterr().out
    assert "recbole_quant models:" in out and "LightGCN" in out


def test_missing_model_and_stray_argument(capsys):
    assert main([]) == 2
    assert "No model given" in capsys.readouterr().err
    assert main(["--model=BPR", "oops"]) == 2
    assert "Unexpected argument 'oops'" in capsys.readouterr().err


def test_unknown_option_is_a_clean_error(capsys):
    assert main(["--model=BPR", "--epoch=3"]) == 2
    err = capsys.readouterr().err
    assert "Unknown option --epoch" in err and "--epochs" in err


def test_missing_dataset_no_download_no_traceback(tmp_path):
    # 'yelp' is a name RecBole would try to download: we must not.
    proc = run_script("--model=BPR", "--dataset=yelp", f"--data_path={tmp_path}", timeout=60)
    assert proc.returncode == 2
    assert "Dataset 'yelp' not found" in proc.stderr
    assert "import-lightgcn" in proc.stderr
    assert "Traceback" not in proc.stderr and "URLError" not in proc.stderr


def test_malformed_dataset_is_a_clean_error(tmp_path, capsys):
    path = tmp_path / "toy" / "toy.inter"
    write_inter(str(path), [(1, 2), (2, 3)])
    with open(path, "a") as f:
        f.write("garbage line without tabs\n")
    assert main(["--model=BPR", "--dataset=toy", f"--data_path={tmp_path}"]) == 2
    assert "toy.inter, line 4" in capsys.readouterr().err
