"""The built-in synthetic face set: runs anywhere, no download.

Drawn procedurally and deterministically from a seed. Every identity has its
own face geometry, skin, hair and eye colours, background and a latent age;
every photo varies pose, light, expression and noise, and carries an
age-group label that the picture shows through visible cues (grey hair,
forehead lines). Labels of one person's photos spread over neighbouring
groups and the cues are noisy, so a model can generalise but also memorises
the people it was trained on: the membership signal that unlearning removes.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from piu_engine.core.config import DatasetConfig
from piu_engine.core.data.types import FaceDataset, Split, Task
from piu_engine.core.presets import Preset

AGE_GROUPS = ["child", "teen", "young-adult", "adult", "middle-aged", "senior"]
_SKIN = np.array(
    [
        [0.96, 0.80, 0.69],
        [0.87, 0.67, 0.52],
        [0.72, 0.52, 0.38],
        [0.55, 0.38, 0.26],
        [0.98, 0.87, 0.77],
        [0.80, 0.60, 0.45],
    ]
)
_HAIR = np.array(
    [
        [0.10, 0.07, 0.05],
        [0.35, 0.22, 0.12],
        [0.80, 0.65, 0.35],
        [0.55, 0.20, 0.08],
        [0.20, 0.15, 0.12],
        [0.05, 0.05, 0.08],
    ]
)


def _identity_params(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    k = len(AGE_GROUPS)
    return {
        "bg": rng.uniform(0.1, 0.9, (n, 3)),
        "bg_grad": rng.uniform(-1, 1, (n, 2)),
        "face_rx": rng.uniform(0.40, 0.56, n),
        "face_ry": rng.uniform(0.55, 0.70, n),
        "face_cy": rng.uniform(0.0, 0.12, n),
        "skin": _SKIN[rng.integers(len(_SKIN), size=n)] + rng.normal(0, 0.04, (n, 3)),
        "hair": _HAIR[rng.integers(len(_HAIR), size=n)] + rng.normal(0, 0.04, (n, 3)),
        "hairline": rng.uniform(0.15, 0.40, n),
        "hair_side": rng.uniform(0.02, 0.16, n),
        "eye_dx": rng.uniform(0.16, 0.26, n),
        "eye_y": rng.uniform(-0.12, 0.02, n),
        "eye_r": rng.uniform(0.05, 0.09, n),
        "iris": rng.uniform(0.0, 0.6, (n, 3)),
        "brow_w": rng.uniform(0.015, 0.04, n),
        "nose_len": rng.uniform(0.08, 0.2, n),
        "mouth_w": rng.uniform(0.12, 0.25, n),
        "mouth_y": rng.uniform(0.25, 0.38, n),
        "age": rng.uniform(-0.3, k - 0.7, n),  # latent age group (continuous)
    }


def _photo_params(rng: np.random.Generator, ident: dict[str, np.ndarray], who: np.ndarray) -> dict[str, np.ndarray]:
    m, k = len(who), len(AGE_GROUPS)
    label = np.clip(np.rint(ident["age"][who] + rng.normal(0, 0.6, m)), 0, k - 1).astype(np.int64)
    # What the picture shows: the label's age with noise, so some photos are ambiguous.
    cue = np.clip((label + rng.normal(0, 0.45, m)) / (k - 1), 0, 1)
    return {
        "label": label,
        "cue": cue,
        "dx": rng.normal(0, 0.06, m),
        "dy": rng.normal(0, 0.05, m),
        "scale": rng.uniform(0.88, 1.12, m),
        "rot": rng.normal(0, 0.12, m),
        "light": rng.uniform(0.75, 1.25, m),
        "light_dir": rng.uniform(-1, 1, (m, 2)),
        "smile": rng.uniform(-1, 1, m),
        "open": rng.uniform(0.4, 1.0, m),
        "noise": rng.uniform(0.02, 0.06, m),
    }


def _soft(sdf: torch.Tensor, sharp: float) -> torch.Tensor:
    return torch.sigmoid(-sdf * sharp)


def _render(ident: dict, photo: dict, who: np.ndarray, size: int, gen: torch.Generator) -> torch.Tensor:
    """Draw a batch of faces as float [M, 3, size, size] in [0, 1] on ``gen``'s device."""
    big = size * 2
    dev = gen.device
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32, device=dev)  # noqa: E731
    pi = {k: t(v[who]) for k, v in ident.items()}
    ph = {k: t(v) for k, v in photo.items() if k != "label"}
    m = len(who)
    lin = torch.linspace(-1, 1, big, device=dev)
    v0, u0 = torch.meshgrid(lin, lin, indexing="ij")
    u0, v0 = u0[None].expand(m, -1, -1), v0[None].expand(m, -1, -1)
    col = lambda x: x[:, :, None, None]  # noqa: E731
    sc = lambda x: x[:, None, None]  # noqa: E731

    # Pose: shift, scale, rotate the face's coordinate frame.
    cu, cv = (u0 - sc(ph["dx"])) / sc(ph["scale"]), (v0 - sc(ph["dy"])) / sc(ph["scale"])
    cr, sr = torch.cos(sc(ph["rot"])), torch.sin(sc(ph["rot"]))
    u, v = cr * cu - sr * cv, sr * cu + cr * cv
    sharp = big / 2.0

    img = col(pi["bg"]) * (1 + 0.25 * (sc(pi["bg_grad"][:, 0]) * u0 + sc(pi["bg_grad"][:, 1]) * v0))[:, None]
    grey = sc(ph["cue"]) ** 1.5  # grey hair grows with age
    hair_col = col(pi["hair"]) * (1 - grey[:, None]) + 0.78 * grey[:, None]

    def paint(mask: torch.Tensor, colour: torch.Tensor) -> None:
        nonlocal img
        img = img * (1 - mask[:, None]) + colour * mask[:, None]

    rx, ry, fy = sc(pi["face_rx"]), sc(pi["face_ry"]), sc(pi["face_cy"])
    face_sdf = torch.sqrt((u / rx) ** 2 + ((v - fy) / ry) ** 2) - 1
    hair_back = torch.sqrt((u / (rx + sc(pi["hair_side"]))) ** 2 + ((v - fy + 0.06) / (ry + 0.08)) ** 2) - 1
    paint(_soft(hair_back, sharp) * _soft(v - fy - 0.1, sharp), hair_col)
    paint(_soft(face_sdf, sharp), col(pi["skin"]))
    top = fy - ry
    hairline = top + sc(pi["hairline"]) * ry * (1 - 0.5 * grey)  # receding with age
    paint(_soft(face_sdf, sharp) * _soft(v - hairline, sharp), hair_col)

    # Forehead lines: more and darker with age.
    eye_y = fy + sc(pi["eye_y"])
    lines = torch.zeros_like(u)
    for j in range(4):
        y = hairline + (eye_y - hairline) * (0.3 + 0.14 * j)
        strength = torch.clamp(sc(ph["cue"]) * 4 - j, 0, 1)
        lines = lines + strength * torch.exp(-(((v - y) / 0.02) ** 2)) * _soft(u.abs() - rx * 0.6, sharp)
    paint(lines.clamp(0, 1) * 0.7 * _soft(face_sdf, sharp), col(pi["skin"]) * 0.45)

    # Eyes, irises, brows.
    for side in (-1.0, 1.0):
        ex = side * sc(pi["eye_dx"])
        er = sc(pi["eye_r"])
        eye = torch.sqrt(((u - ex) / er) ** 2 + ((v - eye_y) / (er * sc(ph["open"]) * 0.7)) ** 2) - 1
        paint(_soft(eye, sharp), torch.full((m, 3, 1, 1), 0.95, device=dev))
        iris = torch.sqrt((u - ex) ** 2 + (v - eye_y) ** 2) - er * 0.55
        paint(_soft(iris, sharp) * _soft(eye, sharp), col(pi["iris"]))
        brow = torch.maximum((u - ex).abs() - er * 1.2, (v - eye_y + er * 1.6).abs() - sc(pi["brow_w"]))
        paint(_soft(brow, sharp), hair_col * 0.8)

    nose = torch.maximum(u.abs() - 0.025, (v - eye_y - sc(pi["nose_len"]) / 2 - 0.08).abs() - sc(pi["nose_len"]) / 2)
    paint(_soft(nose, sharp) * 0.5, col(pi["skin"]) * 0.6)
    mw, my = sc(pi["mouth_w"]), fy + sc(pi["mouth_y"])
    curve = v - my + sc(ph["smile"]) * 0.12 * (1 - (u / mw) ** 2)
    mouth = torch.maximum(curve.abs() - 0.025, u.abs() - mw)
    paint(_soft(mouth, sharp), torch.tensor([0.55, 0.12, 0.15], device=dev)[None, :, None, None])

    # Light and sensor noise.
    light = sc(ph["light"]) * (1 + 0.2 * (sc(ph["light_dir"][:, 0]) * u0 + sc(ph["light_dir"][:, 1]) * v0))
    img = img * light[:, None]
    img = F.avg_pool2d(img, 2)
    img = img + torch.randn(img.shape, generator=gen, device=dev) * ph["noise"][:, None, None, None]
    return img.clamp(0, 1)


def generate(
    train_ids: int,
    test_ids: int,
    unseen_ids: int,
    photos: int,
    size: int,
    seed: int = 0,
    name: str = "synthetic",
    device: str = "cpu",
) -> FaceDataset:
    """Deterministic: the same arguments on the same kind of device give the
    same pixels. Large sets render on the GPU when one is given."""
    rng = np.random.default_rng(seed)
    n_ids = train_ids + test_ids + unseen_ids
    ident = _identity_params(rng, n_ids)
    who = np.repeat(np.arange(n_ids), photos)
    photo = _photo_params(rng, ident, who)
    gen = torch.Generator(device=device).manual_seed(seed)
    chunks = []
    step = 256 if device == "cpu" else 2048
    for start in range(0, len(who), step):
        sl = slice(start, start + step)
        part = {k: v[sl] for k, v in photo.items()}
        chunks.append((_render(ident, part, who[sl], size, gen) * 255).round().to(torch.uint8).cpu())
    images = torch.cat(chunks)
    split_of = np.array(
        [Split.TRAIN.value] * train_ids + [Split.TEST.value] * test_ids + [Split.UNSEEN.value] * unseen_ids,
        dtype=object,
    )
    width = max(4, int(math.log10(max(n_ids, 1))) + 1)
    names = np.array([f"person-{i:0{width}d}" for i in range(n_ids)], dtype=object)
    return FaceDataset(
        name=name,
        task=Task.MULTICLASS,
        images=images,
        labels=torch.as_tensor(photo["label"]),
        identities=names[who],
        splits=split_of[who],
        sources=[f"synthetic:seed={seed}:{names[w]}:photo={k % photos}" for k, w in enumerate(who)],
        label_names=list(AGE_GROUPS),
    )


def load(cfg: DatasetConfig, preset: Preset, cache_dir=None) -> FaceDataset:
    s = preset.synthetic
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return generate(
        s.train_identities,
        s.test_identities,
        s.unseen_identities,
        s.photos_per_identity,
        cfg.image_size or s.image_size,
        seed=cfg.seed,
        device=device,
    )
