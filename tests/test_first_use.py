"""What a new user meets first (issue 17): early option checks, the valid_metric rule, the
terminal output of a run (one configuration line, a closing summary), a clean Ctrl-C, and a
missing export checkpoint answered at once.

Speed checks measure the child process's CPU seconds (user + system), not wall time: on the
shared 2-core development machine a process that needs 3.5 CPU-s takes 15+ s of wall time,
while on a quiet machine the two are about equal (one thread busy)."""

import os
import re
import resource
import signal
import subprocess
import sys
import threading

import pytest

from conftest import FAST_RUN
from helpers import make_toy_benchmark
from recbole_quant import Config
from recbole_quant.checkpoint import load_checkpoint
from recbole_quant.errors import ConfigValueError
from recbole_quant.quick_start import check_before_loading, run_recbole_quant

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "run_recbole_quant.py")
# what a run logs once data starts loading / RecBole's config dump
DATA_LOADED = ("The number of users", "Hyper Parameters", "epoch 0 training")


@pytest.fixture
def toy(isolated_cwd):
    return make_toy_benchmark(isolated_cwd / "data")


def run_timed(args, timeout=120):
    """Run a command; return (process, CPU seconds it used)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return proc, cpu


# ------------------------------------------------------------------ early validation


@pytest.fixture(scope="module")
def import_cpu():
    """CPU seconds of a process that only imports the runner (torch, RecBole, the plugin):
    the floor of any refusal; measured first, so it also pays a cold cache."""
    proc, cpu = run_timed([sys.executable, "-c", "import recbole_quant.quick_start"])
    assert proc.returncode == 0, proc.stderr
    return cpu


@pytest.mark.parametrize("extra, message", [
    (["--bits=9"], "bits=9 is not valid: an integer in 1..8."),
    (["--grad_estimator=fast"], "grad_estimator='fast' is not valid: choose one of gste, ste"),
    (["--dataset=nosuch"], "Dataset 'nosuch' not found: looked for"),
    (["--valid_metric=Recal@20"], "RecBole has no metric 'Recal'"),
    (["--cpu_threads=0"], "cpu_threads=0 is not valid"),
])
def test_bad_option_or_missing_dataset_fails_fast_before_any_data(tmp_path, extra, message,
                                                                 import_cpu):
    args = [sys.executable, SCRIPT, "--model=HQGNN", f"--data_path={tmp_path}", *extra]
    if "--dataset=nosuch" not in extra:
        args.remove(f"--data_path={tmp_path}")  # ml-100k: RecBole's bundled copy
    proc, cpu = run_timed(args)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not any(mark in proc.stdout + proc.stderr for mark in DATA_LOADED)
    # against what importing the runner costs on this machine now (not a fixed number of
    # seconds: a cold cache or a busy machine moved an absolute 5 CPU-s bound)
    assert cpu < 1.5 * import_cpu + 1.0, f"{cpu:.1f} CPU-s to refuse {extra}, import {import_cpu:.1f}"


def test_missing_export_checkpoint_is_answered_before_torch_loads(tmp_path):
    proc, cpu = run_timed([sys.executable, "-m", "recbole_quant", "export",
                           str(tmp_path / "nope.pth"), str(tmp_path / "out.npz")])
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: Checkpoint not found: {tmp_path / 'nope.pth'}"
    assert cpu < 1.5, f"{cpu:.1f} CPU-s"  # torch's import alone takes ~1.4 CPU-s
    assert not os.path.exists(tmp_path / "out.npz")


def test_valid_metric_cutoff_and_metric_join_topk_and_metrics():
    config = Config(model="HQGNN", dataset="ml-100k", cmd_args=[],
                    config_dict={"topk": [10], "metrics": ["NDCG"], "valid_metric": "Recall@20"})
    check_before_loading(config)
    assert config["topk"] == [10, 20] and config["metrics"] == ["NDCG", "Recall"]
    config = Config(model="HQGNN", dataset="ml-100k", cmd_args=[],
                    config_dict={"topk": 5, "valid_metric": "ndcg@5"})
    check_before_loading(config)
    assert config["topk"] == [5]  # already there: unchanged (a lone int is a list of one)
    config = Config(model="HQGNN", dataset="ml-100k", cmd_args=[],
                    config_dict={"valid_metric": "Recall@top"})
    with pytest.raises(ConfigValueError, match="cut-off after '@' must be a positive integer"):
        check_before_loading(config)


# ------------------------------------------------------------------ terminal output, summary


def _summary_block(text):
    return text[text.index("run summary"):]


def test_run_ends_with_summary_and_terminal_shows_changed_options_only(toy, capsys):
    # topk=[10] with the default valid_metric Recall@20: once a KeyError after epoch 0
    options = dict(FAST_RUN, state="INFO", data_path=toy, topk=[10], bits=2, use_gpu=True)
    result = run_recbole_quant(model="HQGNN", dataset="toy", config_dict=options)
    terminal = capsys.readouterr().err

    assert set(result["test_result"]) >= {"recall@10", "recall@20", "ndcg@10", "ndcg@20"}
    assert "Hyper Parameters" not in terminal  # RecBole's dump: log file only
    config_line = next(line for line in terminal.splitlines() if "options that differ" in line)
    assert "HQGNN on toy, device cpu;" in config_line
    assert "bits=2" in config_line and "topk=[10, 20]" in config_line
    assert "learning_rate" not in config_line  # a default stays out
    assert f"full configuration in {result['log_file']}" in config_line

    summary = _summary_block(terminal)
    for metric in ("recall", "ndcg", "hit", "precision", "mrr"):
        line = next(l for l in summary.splitlines() if re.search(rf"\s{metric}\s+@10", l))
        for k in (10, 20):
            assert f"@{k} {result['test_result'][f'{metric}@{k}']:.4f}" in line
    assert "128 bits per user, 128 bits per item" in summary  # d=64 x 2 bits
    assert "16.0x smaller than float32 d=64" in summary
    assert f"{FAST_RUN['epochs']} trained, {result['seconds_per_epoch']:.2f} s per epoch" in summary
    best = load_checkpoint(result["checkpoint"])["epoch"]
    assert result["best_epoch"] == best and f"best validation epoch {best}" in summary
    for label, key in (("log", "log_file"), ("checkpoint", "checkpoint"),
                       ("tensorboard", "tensorboard_dir")):
        assert re.search(rf"\n  {label}\s+{re.escape(result[key])}\n?", summary)
        assert os.path.exists(result[key])

    with open(result["log_file"], encoding="utf-8") as f:
        log = f.read()
    assert "General Hyper Parameters" in log and "run summary" in log
    if result["config"]["device"].type == "cpu":  # RecBole keeps use_gpu = True beside cpu
        assert "(no CUDA device here: the run uses device = cpu)" in log


def test_show_config_prints_the_dump_and_baselines_say_float32(toy, capsys):
    options = dict(FAST_RUN, state="INFO", data_path=toy, topk=[10], valid_metric="recall@10",
                   show_config=True, epochs=1)
    run_recbole_quant(model="BPR", dataset="toy", config_dict=options)
    terminal = capsys.readouterr().err
    assert "General Hyper Parameters" in terminal
    assert "float32 embeddings (not a quantized model)" in _summary_block(terminal)


# ------------------------------------------------------------------ Ctrl-C


def test_sigint_during_training_prints_one_line_and_exits_130(toy):
    args = [sys.executable, SCRIPT, "--model=HQGNN", "--dataset=toy", f"--data_path={toy}",
            "--topk=[10]", "--valid_metric=recall@10", "--show_progress=False",
            "--epochs=1000000", "--stopping_step=1000000"]
    # A shell without job control starts background jobs with SIGINT ignored, and Python
    # keeps an inherited SIG_IGN: give the child the default disposition a terminal gives.
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    watchdog = threading.Timer(300, proc.kill)  # never hang the suite
    watchdog.start()
    try:
        seen = []
        for line in proc.stderr:  # RecBole logs to stderr
            seen.append(line)
            if "Saving current" in line:  # a checkpoint exists: training is under way
                break
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=120)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert "Traceback" not in rest and "KeyboardInterrupt" not in rest
    last = rest.strip().splitlines()[-1]
    match = re.fullmatch(r"interrupted at epoch \d+: best checkpoint so far \(epoch (\d+)\) is "
                         r"(\S+\.pth); resume: the same command with --resume=\S+; "
                         r"export: python -m recbole_quant export \S+ OUT\.npz", last)
    assert match, rest[-2000:]
    assert load_checkpoint(os.path.join(os.getcwd(), match.group(2)))["epoch"] == int(match.group(1))
