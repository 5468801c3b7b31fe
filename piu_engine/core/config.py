"""Typed settings read once from ``config.toml``.

Every setting lives in the TOML file; this module turns it into frozen
dataclasses and rejects unknown keys or wrong values with an error that names
the key, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from piu_engine.common.errors import ConfigError
from piu_engine.common.settings import SECTIONS, build, read_toml
from piu_engine.core.methods.catalog import CATALOG, validate_overrides

DATASET_KINDS = ("synthetic", "mufac", "mucac", "jaffe", "folder")
PRESETS = ("tiny", "default", "paper")


@dataclass(frozen=True)
class EngineConfig:
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    seed: int = 0
    amp: bool = True  # bf16 autocast, CUDA only
    num_threads: int = 0  # 0 = leave PyTorch's default
    cache_dir: str = ".piu/cache"
    init_weights: str = ""  # optional local checkpoint to start training from

    def validate(self, key: str) -> None:
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ConfigError(f"{key}.device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        if self.num_threads < 0:
            raise ConfigError(f"{key}.num_threads: must be >= 0")


@dataclass(frozen=True)
class MetricsConfig:
    nomus_lambda: float = 0.5
    mia_splits: int = 10

    def validate(self, key: str) -> None:
        if not 0.0 <= self.nomus_lambda <= 1.0:
            raise ConfigError(f"{key}.nomus_lambda: must be in [0, 1], got {self.nomus_lambda}")
        if self.mia_splits < 2:
            raise ConfigError(f"{key}.mia_splits: must be >= 2")


@dataclass(frozen=True)
class DatasetConfig:
    """One named dataset. ``root`` is a local path; nothing is downloaded."""

    kind: str = "synthetic"
    root: str = ""
    image_size: int = 0  # 0 = the preset's size
    attribute: str = "all"  # mucac: male | smiling | young | all (multi-label)
    labels_csv: str = "labels.csv"  # folder: file under root mapping image -> label
    protocol: str = "identity"  # identity | paper (published forget split)
    forget_identities: int = 0  # bench: identities to forget (0 = the preset's)
    unseen_unlearn_fraction: float = 0.5  # share of unseen identities PIU-FR may use
    seed: int = 0  # synthetic: generator seed (the data itself, not the training seed)
    test_fraction: float = 0.2  # jaffe/folder: identities held out as test
    unseen_fraction: float = 0.2  # jaffe/folder: identities held out as unseen

    def validate(self, key: str) -> None:
        if self.kind not in DATASET_KINDS:
            raise ConfigError(f"{key}.kind: expected one of {', '.join(DATASET_KINDS)}, got {self.kind!r}")
        if self.kind != "synthetic" and not self.root:
            raise ConfigError(f"{key}.root: dataset kind {self.kind!r} needs a local root path")
        if self.attribute not in ("male", "smiling", "young", "all"):
            raise ConfigError(f"{key}.attribute: expected male, smiling, young or all, got {self.attribute!r}")
        if self.protocol not in ("identity", "paper"):
            raise ConfigError(f"{key}.protocol: expected 'identity' or 'paper', got {self.protocol!r}")
        if self.image_size < 0:
            raise ConfigError(f"{key}.image_size: must be >= 0")
        for name in ("unseen_unlearn_fraction", "test_fraction", "unseen_fraction"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise ConfigError(f"{key}.{name}: must be strictly between 0 and 1, got {value}")


@dataclass(frozen=True)
class AuditConfig:
    """The per-person audit: a pool of reference models, each trained on a seeded
    half of the training identities, and the false-positive rate of its test."""

    models: int = 16  # reference models in the pool (each person is out of half of them)
    seed: int = 0  # which halves; part of the pool's cache key
    fpr: float = 0.05  # share of never-seen people the two-sided test may flag
    guide_seed: int = 1  # the guide pool (same size): PIU-FR's per-person targets; never the audit's pool

    def validate(self, key: str) -> None:
        if not 2 <= self.models <= 256:
            raise ConfigError(f"{key}.models: must be in [2, 256], got {self.models}")
        if self.guide_seed == self.seed:
            raise ConfigError(
                f"{key}.guide_seed: must differ from {key}.seed ({self.seed}): the audit must not be judged "
                "by the models that set the method's targets"
            )
        if not 0.0 < self.fpr < 0.5:
            raise ConfigError(f"{key}.fpr: must be in (0, 0.5), got {self.fpr}")


@dataclass(frozen=True)
class BenchConfig:
    dataset: str = "synthetic"
    preset: str = "default"
    methods: tuple[str, ...] = tuple(CATALOG)  # every method in the registry
    seeds: int = 1

    def validate(self, key: str) -> None:
        if self.preset not in PRESETS:
            raise ConfigError(f"{key}.preset: expected one of {', '.join(PRESETS)}, got {self.preset!r}")
        if self.seeds < 1:
            raise ConfigError(f"{key}.seeds: must be >= 1")


@dataclass(frozen=True)
class Config:
    engine: EngineConfig = field(default_factory=EngineConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    datasets: dict[str, DatasetConfig] = field(default_factory=lambda: {"synthetic": DatasetConfig()})
    # Per-method hyperparameter overrides, checked against each method's parameters.
    methods: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Sections owned by other parts of the product (service, tui, executor) are
    # registered in common.settings.SECTIONS and parsed the same way.
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def dataset(self, name: str) -> DatasetConfig:
        """The named dataset, its root made absolute against the config's folder."""
        if name in self.datasets:
            ds = self.datasets[name]
            return replace(ds, root=str(self.resolve(ds.root))) if ds.root else ds
        raise ConfigError(
            f"unknown dataset {name!r}; configured datasets: {', '.join(sorted(self.datasets)) or 'none'}"
        )

    def section(self, name: str) -> Any:
        return self.extra[name]

    @property
    def base_dir(self) -> Path:
        """Relative paths in the file are relative to the file's folder."""
        return self.path.parent if self.path else Path.cwd()

    def resolve(self, value: str) -> Path:
        p = Path(os.path.expanduser(value))
        return p if p.is_absolute() else self.base_dir / p


def parse(data: dict[str, Any], path: Path | None = None) -> Config:
    """Turn a parsed TOML document into a :class:`Config`."""
    core = {"engine", "metrics", "bench", "audit", "datasets", "methods"}
    unknown = sorted(set(data) - core - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown section (known: {', '.join(sorted(core | set(SECTIONS)))})")
    datasets_raw = data.get("datasets", {"synthetic": {"kind": "synthetic"}})
    if not isinstance(datasets_raw, dict) or not datasets_raw:
        raise ConfigError("datasets: expected at least one [datasets.NAME] table")
    datasets = {name: build(DatasetConfig, table, f"datasets.{name}") for name, table in datasets_raw.items()}
    methods_raw = data.get("methods", {})
    if not isinstance(methods_raw, dict) or any(not isinstance(v, dict) for v in methods_raw.values()):
        raise ConfigError("methods: expected [methods.NAME] tables of parameter overrides")
    cfg = Config(
        engine=build(EngineConfig, data.get("engine", {}), "engine"),
        metrics=build(MetricsConfig, data.get("metrics", {}), "metrics"),
        bench=build(BenchConfig, data.get("bench", {}), "bench"),
        audit=build(AuditConfig, data.get("audit", {}), "audit"),
        datasets=datasets,
        methods={k: dict(v) for k, v in methods_raw.items()},
        extra={name: build(cls, data.get(name, {}), name) for name, cls in SECTIONS.items()},
        path=path,
    )
    if cfg.bench.dataset not in cfg.datasets:
        raise ConfigError(f"bench.dataset: {cfg.bench.dataset!r} is not a configured dataset")
    for name, overrides in cfg.methods.items():
        validate_overrides(name, overrides, key=f"methods.{name}")
    return cfg


def default_config_path() -> Path:
    return Path(os.environ.get("PIU_CONFIG") or "config.toml")


def load_config(path: str | Path | None = None) -> Config:
    """Read and validate the config file; a missing file is an error unless
    no path was given and the default does not exist (then built-in defaults)."""
    explicit = path is not None or bool(os.environ.get("PIU_CONFIG"))
    p = Path(path) if path is not None else default_config_path()
    if not p.exists():
        if explicit:
            raise ConfigError(f"config file not found: {p}")
        return parse({}, None)
    return parse(read_toml(p), p.resolve())


def with_engine(cfg: Config, **changes: Any) -> Config:
    return replace(cfg, engine=replace(cfg.engine, **changes))
