"""The engine and the service never load the terminal UI: the daemon must
run on a server without it (checked in a fresh interpreter)."""

import subprocess
import sys

import pytest

MODULES = [
    "piu_engine",
    "piu_engine.cli",
    "piu_engine.core.bench",
    "piu_engine.core.workbench",
    "piu_engine.core.methods",
    "piu_engine.core.forget",
    "piu_engine.commands.bench",
    "piu_engine.commands.data",
]


@pytest.mark.parametrize("module", MODULES)
def test_engine_module_does_not_import_textual(module):
    code = f"import sys, importlib; importlib.import_module({module!r}); print('textual' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_cli_parser_builds_without_textual():
    code = "import sys; from piu_engine.cli import build_parser; build_parser(); print('textual' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
