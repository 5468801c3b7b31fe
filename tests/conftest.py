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


CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose "
    "Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee "
    "Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard "
    "Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair "
    "Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
).split()


def write_mucac(root: Path, rows: list[tuple[int, int, int, int]], write_image) -> Path:
    """A MUCAC release on disk: image ``i`` of ``rows[i] = (identity, male, smiling, young)``
    is drawn by ``write_image(path, i)``; the attribute file sits in CelebAMask-HQ/."""
    hq = root / "CelebAMask-HQ"
    ident, attrs = [], [str(len(rows)), " ".join(CELEBA_ATTRIBUTES)]
    for i, (identity, male, smiling, young) in enumerate(rows):
        path = hq / "CelebA-HQ-img" / f"{i}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_image(path, i)
        ident.append(f"{i}.jpg {identity}")
        values = [-1] * 40
        for column, on in ((21, male), (32, smiling), (40, young)):
            values[column - 1] = 1 if on else -1
        attrs.append(f"{i}.jpg  " + " ".join(f"{v:2d}" for v in values))
    (root / "CelebA-HQ-identity.txt").write_text("\n".join(ident) + "\n")
    (hq / "CelebA-HQ-attribute.txt").write_text("\n".join(attrs) + "\n")  # the other accepted place
    return root


@pytest.fixture(scope="session")
def tiny_config(tmp_path_factory):
    from piu_engine.core.config import load_config

    return load_config(write_config(tmp_path_factory.mktemp("tiny") / "config.toml"))


@pytest.fixture(scope="session")
def tiny_bench(tiny_config):
    """A workbench on the tiny synthetic set with its original model trained once."""
    from piu_engine.core.bench import forget_split
    from piu_engine.core.workbench import Workbench

    wb = Workbench(tiny_config, "synthetic", "tiny")
    splits = forget_split(wb, 0)
    original, _, _ = wb.original(0)
    return wb, splits, original


@pytest.fixture
def piu_cli():
    """Run the real CLI in a subprocess: (args, cwd) -> CompletedProcess."""
    import subprocess

    def run(*args, cwd=None, timeout=1800, env=None):  # a hang guard: a loaded machine is slow
        return subprocess.run(
            [sys.executable, "-m", "piu_engine.cli", *map(str, args)],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
        )

    return run
