"""Scale presets: how big the built-in data is and how long training runs.

``tiny`` is for tests (seconds), ``default`` is the main job on a laptop-class
CPU (minutes), ``paper`` follows REFERENCE's published recipes for GPU runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from piu_engine.common.errors import ConfigError


@dataclass(frozen=True)
class TrainRecipe:
    """SGD with step decay, the benchmark's original-model recipe."""

    epochs: int
    batch_size: int = 64
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    milestones: tuple[int, ...] = ()  # epochs at which lr is divided by 10
    augment: bool = True


@dataclass(frozen=True)
class SyntheticSpec:
    """Identity counts per split of the built-in face set."""

    train_identities: int
    test_identities: int
    unseen_identities: int
    photos_per_identity: int
    image_size: int


@dataclass(frozen=True)
class Preset:
    name: str
    image_size: int  # for real datasets whose config leaves image_size at 0
    synthetic: SyntheticSpec
    forget_identities: int  # bench default: identities to forget
    recipes: dict  # dataset kind -> TrainRecipe


_PAPER = {
    "mufac": TrainRecipe(epochs=30, milestones=(10, 20)),
    "mucac": TrainRecipe(epochs=8, milestones=()),
    "jaffe": TrainRecipe(epochs=100, batch_size=8, milestones=(33, 66)),
    "folder": TrainRecipe(epochs=30, milestones=(10, 20)),
    "synthetic": TrainRecipe(epochs=30, milestones=(10, 20)),
}

PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        name="tiny",
        image_size=32,
        synthetic=SyntheticSpec(
            train_identities=24, test_identities=8, unseen_identities=12, photos_per_identity=6, image_size=32
        ),
        forget_identities=6,
        # Long enough, without augmentation, to memorise its few training
        # people: tests then see a real membership signal to remove.
        recipes={k: TrainRecipe(epochs=10, batch_size=32, augment=False) for k in _PAPER},
    ),
    "default": Preset(
        name="default",
        image_size=64,
        synthetic=SyntheticSpec(
            train_identities=150, test_identities=40, unseen_identities=80, photos_per_identity=8, image_size=32
        ),
        forget_identities=40,
        recipes={k: TrainRecipe(epochs=16, milestones=(11,)) for k in _PAPER},
    ),
    "paper": Preset(
        name="paper",
        image_size=128,
        synthetic=SyntheticSpec(
            train_identities=1000, test_identities=150, unseen_identities=300, photos_per_identity=10, image_size=128
        ),
        forget_identities=150,
        recipes=_PAPER,
    ),
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None
