"""Dataset loaders on small fixtures written in each release's real on-disk format."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from piu_engine.common.errors import DatasetError
from piu_engine.core.config import DatasetConfig
from piu_engine.core.data import imageio, load_dataset
from piu_engine.core.data.check import find_problems, format_problems, phash
from piu_engine.core.data.identity_split import assign_identity_splits
from piu_engine.core.data.inspect import format_summary, summarize
from piu_engine.core.data.types import FaceDataset, Split, Task
from piu_engine.core.presets import get_preset

from conftest import CELEBA_ATTRIBUTES, write_mucac

SIZE = 16
PRESET = get_preset("tiny")
RNG = np.random.default_rng(1234)


def noise_rgb(path: Path, size: int = 24) -> None:
    """A random colour image: every fixture image looks different to pHash."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(RNG.integers(0, 256, (size, size, 3), dtype=np.uint8), "RGB").save(path, quality=95)


def noise_gray(path: Path, size: int = 24) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(RNG.integers(0, 256, (size, size), dtype=np.uint8), "L").save(path)


def cfg(kind: str, root: Path, **kw) -> DatasetConfig:
    return DatasetConfig(kind=kind, root=str(root), image_size=SIZE, **kw)


# ---------------------------------------------------------------- MUFAC

MUFAC_ROWS = {
    # csv, image folder, with leading index column, rows (family, person, class, file)
    "train": (
        "custom_train_dataset.csv",
        "train_images",
        True,
        [
            ("F0001", "D", "a", "F0001_AGE_D_18_a1.jpg"),
            ("F0001", "D", "c", "F0001_AGE_D_18_c1.jpg"),
            ("F0001", "F", "e", "F0001_AGE_F_45_e1.jpg"),
            ("F0002", "D", "b", "F0002_AGE_D_12_b1.jpg"),
            ("F0002", "GM", "h", "F0002_AGE_GM_77_h1.jpg"),
            ("F0002", "GM", "g", "F0002_AGE_GM_77_g2.jpg"),
        ],
    ),
    "val": (
        "custom_val_dataset.csv",
        "val_images",
        False,
        [
            ("F0801", "S", "d", "F0801_AGE_S_25_d1.jpg"),
            ("F0801", "M", "f", "F0801_AGE_M_50_f1.jpg"),
        ],
    ),
    "test": (
        "custom_test_dataset.csv",
        "test_images",
        False,
        [
            ("F0851", "S2", "a", "F0851_AGE_S2_5_a1.jpg"),
            ("F0851", "F", "e", "F0851_AGE_F_40_e1.jpg"),
        ],
    ),
}


@pytest.fixture
def mufac_root(tmp_path: Path) -> Path:
    root = tmp_path / "custom_korean_family_dataset_resolution_128"
    for csv_name, folder, indexed, rows in MUFAC_ROWS.values():
        lines = [
            (",family_id,person_id,age_class,image_path" if indexed else "family_id,person_id,age_class,image_path")
        ]
        for i, (fam, person, cls, name) in enumerate(rows):
            lines.append((f"{i}," if indexed else "") + f"{fam}, {person}, {cls}, {name}")
            noise_rgb(root / folder / name)
        (root / csv_name).write_text("\n".join(lines) + "\n")
    return root


def test_mufac_labels_identities_splits(mufac_root: Path, tmp_path: Path) -> None:
    ds = load_dataset(cfg("mufac", mufac_root), PRESET, tmp_path / "cache")
    assert ds.task is Task.MULTICLASS and len(ds) == 10
    assert ds.images.shape == (10, 3, SIZE, SIZE) and ds.images.dtype == torch.uint8
    assert ds.label_names == ["0-6", "7-12", "13-19", "20-30", "31-45", "46-55", "56-66", "67-80"]
    assert ds.labels.tolist() == [0, 2, 4, 1, 7, 6, 3, 5, 0, 4]
    assert ds.identities.tolist()[:6] == ["F0001/D", "F0001/D", "F0001/F", "F0002/D", "F0002/GM", "F0002/GM"]
    assert ds.splits.tolist() == ["train"] * 6 + ["test"] * 2 + ["unseen"] * 2
    assert ds.row_order.tolist() == [0, 1, 2, 3, 4, 5, 0, 1, 0, 1]
    assert ds.sources[0].endswith("train_images/F0001_AGE_D_18_a1.jpg")
    assert ds.identities_in(Split.UNSEEN) == ["F0851/F", "F0851/S2"]


def test_mufac_paper_forget_indices(mufac_root: Path, tmp_path: Path, monkeypatch) -> None:
    from piu_engine.core.data import mufac

    ds = load_dataset(cfg("mufac", mufac_root), PRESET, tmp_path / "cache")
    assert mufac.paper_forget_indices(ds).tolist() == [0, 1, 2, 3, 4, 5]
    monkeypatch.setattr(mufac, "PAPER_FORGET_ROWS", 3)
    assert mufac.paper_forget_indices(ds).tolist() == [0, 1, 2]  # never the val/test rows 0-2


def test_mufac_missing_files_are_named(mufac_root: Path, tmp_path: Path) -> None:
    (mufac_root / "custom_val_dataset.csv").unlink()
    with pytest.raises(DatasetError, match="custom_val_dataset.csv") as err:
        load_dataset(cfg("mufac", mufac_root), PRESET, tmp_path / "cache")
    assert "never downloads" in str(err.value)
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError, match=str(missing)):
        load_dataset(cfg("mufac", missing), PRESET, tmp_path / "cache")


def test_mufac_missing_image_is_named(mufac_root: Path, tmp_path: Path) -> None:
    (mufac_root / "test_images" / "F0851_AGE_F_40_e1.jpg").unlink()
    with pytest.raises(DatasetError, match="F0851_AGE_F_40_e1.jpg"):
        load_dataset(cfg("mufac", mufac_root), PRESET, tmp_path / "cache")


# ---------------------------------------------------------------- MUCAC

# image number -> (identity id, male, smiling, young)
MUCAC_IMAGES = {
    0: (5, 1, 0, 1),
    1: (5, 0, 1, 1),
    2: (200, 1, 1, 0),
    3: (1249, 0, 0, 0),
    4: (1250, 1, 0, 1),
    5: (4854, 0, 1, 0),
    6: (4855, 1, 1, 1),
    7: (6000, 0, 0, 1),
}


@pytest.fixture
def mucac_root(tmp_path: Path) -> Path:
    return write_mucac(tmp_path / "mucac", list(MUCAC_IMAGES.values()), lambda path, _: noise_rgb(path))


def test_mucac_multilabel_and_identity_ranges(mucac_root: Path, tmp_path: Path) -> None:
    from piu_engine.core.data import mucac

    assert [CELEBA_ATTRIBUTES[c - 1] for c in mucac.ATTRIBUTE_COLUMNS.values()] == ["Male", "Smiling", "Young"]
    ds = load_dataset(cfg("mucac", mucac_root), PRESET, tmp_path / "cache")
    assert ds.task is Task.MULTILABEL and ds.label_names == ["male", "smiling", "young"]
    assert ds.labels.dtype == torch.float32
    assert ds.labels.tolist() == [[float(v) for v in MUCAC_IMAGES[i][1:]] for i in range(8)]
    assert ds.identities.tolist() == [str(MUCAC_IMAGES[i][0]) for i in range(8)]
    assert ds.splits.tolist() == ["test", "test", "train", "train", "train", "train", "unseen", "unseen"]
    assert ds.row_order.tolist() == list(range(8))
    assert mucac.paper_forget_identities(ds) == ["200", "1249"]


def test_mucac_single_attribute(mucac_root: Path, tmp_path: Path) -> None:
    ds = load_dataset(cfg("mucac", mucac_root, attribute="smiling"), PRESET, tmp_path / "cache")
    assert ds.task is Task.MULTICLASS and ds.label_names == ["not_smiling", "smiling"]
    assert ds.labels.tolist() == [MUCAC_IMAGES[i][2] for i in range(8)]


def test_mucac_missing_text_file(mucac_root: Path, tmp_path: Path) -> None:
    (mucac_root / "CelebA-HQ-identity.txt").unlink()
    with pytest.raises(DatasetError, match="CelebA-HQ-identity.txt"):
        load_dataset(cfg("mucac", mucac_root), PRESET, tmp_path / "cache")
    shutil.rmtree(mucac_root / "CelebAMask-HQ" / "CelebA-HQ-img")
    with pytest.raises(DatasetError, match="CelebA-HQ-img"):
        load_dataset(cfg("mucac", mucac_root), PRESET, tmp_path / "cache")


# ---------------------------------------------------------------- JAFFE

JAFFE_SUBJECTS = ["KA", "KL", "KM", "KR", "MK", "NA", "NM", "TM", "UY", "YM"]


def write_jaffe(root: Path) -> list[tuple[str, str]]:
    files = []
    for s, subject in enumerate(JAFFE_SUBJECTS):
        for k, expr in enumerate(("AN", "HA", "SU") if s % 2 else ("NE", "DI", "FE", "SA")):
            name = f"{subject}.{expr}{k + 1}.{s * 10 + k}.tiff"
            noise_gray(root / name)
            files.append((subject, expr))
    (root / "README").write_text("not an image\n")
    return files


@pytest.fixture
def jaffe_root(tmp_path: Path) -> Path:
    root = tmp_path / "jaffe"
    write_jaffe(root)
    return root


def test_jaffe_subjects_expressions_and_subject_split(jaffe_root: Path, tmp_path: Path) -> None:
    ds = load_dataset(cfg("jaffe", jaffe_root), PRESET, tmp_path / "cache")
    assert len(ds) == 35 and ds.images.shape == (35, 3, SIZE, SIZE)
    # grayscale replicated into three equal channels
    assert torch.equal(ds.images[:, 0], ds.images[:, 1]) and torch.equal(ds.images[:, 1], ds.images[:, 2])
    codes = ["AN", "DI", "FE", "HA", "NE", "SA", "SU"]
    for src, subject, label in zip(ds.sources, ds.identities, ds.labels.tolist(), strict=True):
        name = Path(src).name
        assert subject == name[:2] and codes[label] == name[3:5]
    for person in set(ds.identities):
        assert len(set(ds.splits[ds.identities == person])) == 1
    assert [len(ds.identities_in(s)) for s in (Split.TRAIN, Split.TEST, Split.UNSEEN)] == [6, 2, 2]
    again = load_dataset(cfg("jaffe", jaffe_root), PRESET, tmp_path / "cache2")
    assert again.splits.tolist() == ds.splits.tolist()


def test_jaffe_bad_name_and_missing_root(jaffe_root: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no-jaffe-here"
    with pytest.raises(DatasetError, match=str(missing)):
        load_dataset(cfg("jaffe", missing), PRESET, tmp_path / "cache")
    noise_gray(jaffe_root / "KA.XX1.1.tiff")
    with pytest.raises(DatasetError, match="KA.XX1.1.tiff"):
        load_dataset(cfg("jaffe", jaffe_root), PRESET, tmp_path / "cache")


def test_second_load_hits_cache_and_changed_file_redecodes(jaffe_root: Path, tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    first = load_dataset(cfg("jaffe", jaffe_root), PRESET, cache)
    assert len(list((cache / "images").glob("*.pt"))) == 1

    def no_decoding(*_a, **_k):
        raise AssertionError("decoded again although the cache was valid")

    original = imageio.decode_all
    monkeypatch.setattr(imageio, "decode_all", no_decoding)
    second = load_dataset(cfg("jaffe", jaffe_root), PRESET, cache)
    assert torch.equal(first.images, second.images)

    calls = []
    monkeypatch.setattr(imageio, "decode_all", lambda paths, size: calls.append(len(paths)) or original(paths, size))
    changed = Path(first.sources[0])
    noise_gray(changed)
    st = changed.stat()
    os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    third = load_dataset(cfg("jaffe", jaffe_root), PRESET, cache)
    assert calls == [35]
    assert not torch.equal(third.images[0], first.images[0])
    assert torch.equal(third.images[1:], first.images[1:])


# ---------------------------------------------------------------- folder

PEOPLE = ["alice", "bob", "carol", "dave", "erin", "frank", "grace"]


@pytest.fixture
def folder_root(tmp_path: Path) -> Path:
    root = tmp_path / "faces"
    lines = ["path,label"]
    for p, person in enumerate(PEOPLE):
        for k in range(2):
            noise_rgb(root / person / f"{k:03d}.{'jpg' if k == 0 else 'png'}")
            lines.append(f"{person}/{k:03d}.{'jpg' if k == 0 else 'png'},{'happy' if (p + k) % 2 else 'calm'}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


def test_folder_labels_and_identity_split(folder_root: Path, tmp_path: Path) -> None:
    ds = load_dataset(cfg("folder", folder_root), PRESET, tmp_path / "cache")
    assert ds.label_names == ["calm", "happy"] and len(ds) == 14
    assert ds.labels.tolist() == [(p + k) % 2 for p in range(7) for k in range(2)]
    assert ds.identities.tolist() == [p for p in PEOPLE for _ in range(2)]
    for person in PEOPLE:
        assert len(set(ds.splits[ds.identities == person])) == 1
    assert {len(ds.identities_in(s)) for s in (Split.TEST, Split.UNSEEN)} == {1}
    assert len(ds.identities_in(Split.TRAIN)) == 5


def test_folder_split_column(folder_root: Path, tmp_path: Path) -> None:
    lines = (folder_root / "labels.csv").read_text().splitlines()
    split = {"alice": "test", "bob": "unseen"}
    rows = ["path,label,split"] + [f"{line},{split.get(line.split('/')[0], 'train')}" for line in lines[1:]]
    (folder_root / "labels.csv").write_text("\n".join(rows) + "\n")
    ds = load_dataset(cfg("folder", folder_root), PRESET, tmp_path / "cache")
    assert ds.identities_in(Split.TEST) == ["alice"] and ds.identities_in(Split.UNSEEN) == ["bob"]


def test_folder_unlabelled_and_missing_images(folder_root: Path, tmp_path: Path) -> None:
    noise_rgb(folder_root / "alice" / "extra.jpg")
    with pytest.raises(DatasetError, match="alice/extra.jpg"):
        load_dataset(cfg("folder", folder_root), PRESET, tmp_path / "cache")
    (folder_root / "alice" / "extra.jpg").unlink()
    (folder_root / "bob" / "001.png").unlink()
    with pytest.raises(DatasetError, match="bob/001.png"):
        load_dataset(cfg("folder", folder_root), PRESET, tmp_path / "cache")
    (folder_root / "labels.csv").unlink()
    with pytest.raises(DatasetError, match="labels.csv"):
        load_dataset(cfg("folder", folder_root), PRESET, tmp_path / "cache")


def test_assign_identity_splits_is_deterministic() -> None:
    people = [f"p{i:02d}" for i in range(20)]
    a = assign_identity_splits(people, 0.2, 0.3)
    assert a == assign_identity_splits(list(reversed(people)), 0.2, 0.3)
    assert [sum(v is s for v in a.values()) for s in (Split.TEST, Split.UNSEEN, Split.TRAIN)] == [4, 6, 10]
    small = assign_identity_splits(["a", "b", "c"], 0.1, 0.1)
    assert sorted(small.values()) == sorted([Split.TRAIN, Split.TEST, Split.UNSEEN])
    with pytest.raises(DatasetError):
        assign_identity_splits(["a", "b"], 0.2, 0.2)


# ---------------------------------------------------------------- inspect / check


def tiny_dataset(images: torch.Tensor, identities, splits) -> FaceDataset:
    n = len(images)
    return FaceDataset(
        name="t",
        task=Task.MULTICLASS,
        images=images,
        labels=torch.zeros(n, dtype=torch.int64),
        identities=np.asarray(identities, dtype=object),
        splits=np.asarray(splits, dtype=object),
        sources=[f"img{i}" for i in range(n)],
        label_names=["only"],
    )


def test_check_exact_near_and_identity_overlap() -> None:
    gen = torch.Generator().manual_seed(0)
    smooth = torch.nn.functional.interpolate(
        torch.randint(0, 256, (5, 3, 4, 4), generator=gen).float(), size=(32, 32), mode="bilinear"
    )
    images = smooth.clamp(20, 230).to(torch.uint8)
    images = torch.cat([images, images[:1], (images[1:2].int() + 4).to(torch.uint8)])  # 5 = exact of 0, 6 = near of 1
    ds = tiny_dataset(
        images, ["a", "b", "c", "d", "a", "x", "y"], ["train", "train", "test", "unseen", "test", "unseen", "test"]
    )
    hashes = phash(ds.images)
    assert hashes.dtype == np.uint64 and len(set(hashes[:5].tolist())) == 5
    d = find_problems(ds)
    assert [g["indices"] for g in d["exact_duplicates"]] == [[0, 5]]
    assert d["exact_duplicates"][0]["crosses"] == ["train-unseen"]
    assert d["exact_duplicates"][0]["identities_differ"]
    assert [g["indices"] for g in d["near_duplicates"]] == [[1, 6]]
    assert d["near_duplicates"][0]["crosses"] == ["train-test"]
    assert d["identities_in_multiple_splits"] == [{"identity": "a", "splits": ["train", "test"]}]
    assert d["counts"]["groups_crossing_splits"] == {"train-test": 1, "train-unseen": 1, "test-unseen": 0}
    assert not d["clean"] and "exact duplicates" in format_problems(d)
    clean = find_problems(tiny_dataset(images[:4], ["a", "b", "c", "d"], ["train", "train", "test", "unseen"]))
    assert clean["clean"] and "no problems" in format_problems(clean)


def test_summary_counts(folder_root: Path, tmp_path: Path) -> None:
    ds = load_dataset(cfg("folder", folder_root), PRESET, tmp_path / "cache")
    s = summarize(ds)
    assert s["total"] == {"images": 14, "identities": 7, "labels": {"calm": 7, "happy": 7}}
    assert sum(s["splits"][k]["images"] for k in ("train", "test", "unseen")) == 14
    assert "identities" in format_summary(s)


def test_summary_multilabel_positives(mucac_root: Path, tmp_path: Path) -> None:
    s = summarize(load_dataset(cfg("mucac", mucac_root), PRESET, tmp_path / "cache"))
    assert s["splits"]["test"]["labels"] == {"male": 1, "smiling": 1, "young": 2}
    assert "positives male" in format_summary(s)


# ---------------------------------------------------------------- CLI


def write_config(tmp_path: Path, root: Path) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[engine]\ncache_dir = "cache"\n\n[bench]\ndataset = "x"\npreset = "tiny"\n\n'
        f'[datasets.x]\nkind = "jaffe"\nroot = "{root.as_posix()}"\nimage_size = {SIZE}\n'
    )
    return config


def test_cli_inspect_json_and_clean_check(jaffe_root: Path, tmp_path: Path, capsys) -> None:
    from piu_engine.cli import main

    config = write_config(tmp_path, jaffe_root)
    assert main(["--config", str(config), "data", "inspect", "--dataset", "x", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["total"]["images"] == 35 and out["image_size"] == SIZE
    assert out["dataset"] == "x"  # as configured
    assert out["splits"]["test"]["identities"] == 2
    assert (tmp_path / "cache" / "images").is_dir()
    assert main(["--config", str(config), "data", "check", "--dataset", "x"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("dataset x: 35 images checked") and "no problems" in out
    # a loader kind with --root works without a [datasets] entry
    assert main(["--config", str(config), "data", "inspect", "--dataset", "jaffe", "--root", str(jaffe_root)]) == 0
    assert "identities" in capsys.readouterr().out


def test_cli_check_finds_planted_cross_split_duplicate(jaffe_root: Path, tmp_path: Path, capsys) -> None:
    from piu_engine.cli import main

    split_of = assign_identity_splits(JAFFE_SUBJECTS, 0.2, 0.2)
    train = next(s for s in JAFFE_SUBJECTS if split_of[s] is Split.TRAIN)
    test = next(s for s in JAFFE_SUBJECTS if split_of[s] is Split.TEST)
    original = sorted(jaffe_root.glob(f"{train}.*.tiff"))[0]
    shutil.copyfile(original, jaffe_root / f"{test}.HA9.999.tiff")
    config = write_config(tmp_path, jaffe_root)
    assert main(["--config", str(config), "data", "check", "--dataset", "x", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["counts"]["groups_crossing_splits"]["train-test"] == 1
    (group,) = report["exact_duplicates"]
    assert {Path(s).name for s in group["sources"]} == {original.name, f"{test}.HA9.999.tiff"}
    assert main(["--config", str(config), "data", "check", "--dataset", "x"]) == 1
    assert "crosses train-test" in capsys.readouterr().out


def test_cli_missing_root_is_a_clear_error(tmp_path: Path, capsys) -> None:
    from piu_engine.cli import main

    missing = tmp_path / "absent"
    config = write_config(tmp_path, missing)
    assert main(["--config", str(config), "data", "inspect", "--dataset", "x"]) == 2
    assert str(missing) in capsys.readouterr().err
    assert main(["--config", str(config), "data", "inspect", "--dataset", "nope"]) == 2
    assert "unknown dataset" in capsys.readouterr().err
