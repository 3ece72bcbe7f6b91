"""Shared fixtures: every test runs in its own temporary working directory.

RecBole writes ``./log/``, ``./log_tensorboard/`` and ``./saved/`` relative to the working
directory, with one-second checkpoint names: isolating the cwd keeps tests independent.
"""

import os
import warnings

import pytest

import recbole_quant  # noqa: F401  (applies the compatibility layer)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Quiet, small runs: no progress bars, few epochs, CPU.
FAST_RUN = {
    "show_progress": False,
    "state": "WARNING",
    "epochs": 2,
    "eval_step": 1,
    "use_gpu": False,
}


@pytest.fixture(autouse=True)
def isolated_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    warnings.filterwarnings("ignore", category=UserWarning)
    yield tmp_path

