"""Shared fixtures: a tiny real workbench (real training on tiny data)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("PIU_TEST", "1")


def write_config(path: Path, body: str = "") -> Path:
    """A config.toml for tests: tiny preset, CPU, cache inside the temp dir."""
    path.write_text(
        '[engine]\ndevice = "cpu"\ncache_dir = "cache"\n\n'
        '[bench]\npreset = "tiny"\n\n'
        '[datasets.synthetic]\nkind = "synthetic"\n' + body
    )
    return path


@pytest.fixture(scope="session")
def tiny_config(tmp_path_factory):
    from piu_engine.config import load_config

    return load_config(write_config(tmp_path_factory.mktemp("tiny") / "config.toml"))


@pytest.fixture(scope="session")
def tiny_bench(tiny_config):
    """A workbench on the tiny synthetic set with its original model trained once."""
    from piu_engine.bench import forget_split
    from piu_engine.workbench import Workbench

    wb = Workbench(tiny_config, "synthetic", "tiny")
    splits = forget_split(wb, 0)
    original, _, _ = wb.original(0)
    return wb, splits, original


@pytest.fixture
def piu_cli():
    """Run the real CLI in a subprocess: (args, cwd) -> CompletedProcess."""
    import subprocess

    def run(*args, cwd=None, timeout=600, env=None):
        return subprocess.run([sys.executable, "-m", "piu_engine.cli", *map(str, args)], cwd=cwd,
                              capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})})

    return run
