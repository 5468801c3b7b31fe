"""Every method's name, one-line summary and typed hyperparameters, without PyTorch.

The service validates a manifest's ``params`` here before anything runs, and
``config.toml``'s ``[methods.NAME]`` tables are checked the same way; the
implementations in :mod:`piu_engine.core.methods.registry` bind a run to
each name. Defaults follow REFERENCE.md unless a comment says otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from piu_engine.common.errors import ConfigError


def positive(**values: float) -> str | None:
    for name, value in values.items():
        if value <= 0:
            return f"{name} must be > 0, got {value}"
    return None


# --- piu_fr ---

# parameter-name prefixes each train_layers choice trains (None: all)
TRAIN_LAYERS = {"all": None, "layer3": ("layer3.", "layer4.", "fc."), "layer4": ("layer4.", "fc.")}


@dataclass(frozen=True)
class PiuFrParams:
    epochs: int = 6
    lr: float = 0.02
    momentum: float = 0.9
    cosine: bool = True  # decay lr to 0 over stage 1 (ends settled, not mid-swing)
    temperature: float = 1.0
    batch_size: int = 64
    alternate: bool = False  # s_b = +1, -1, +1, ... on the distillation term (the published recipe)
    forget_ascent: float = 0.5  # weight of -CE(forget): the NegGrad part
    unseen_anchor: float = 1.0  # weight of KL(original(unseen) || model(unseen)) on the paired images
    train_layers: str = "layer4"  # all | layer3 (layer3, layer4, fc) | layer4 (layer4, fc)
    augment: bool = False  # train augmentation on the forget images (the published recipe uses it)
    freeze_bn: bool = True  # keep the original BatchNorm statistics during stage 1
    stage2: bool = False  # CE fine-tune on retain afterwards
    stage2_epochs: int = 2
    stage2_lr: float = 0.01
    stage2_momentum: float = 0.9
    early_stop: bool = True  # end stage 1 early once MIA(forget vs paired unseen) ~ 0.5 (see EarlyStop)
    early_stop_tolerance: float = 0.03
    early_stop_checks: int = 5  # checks per epoch (each reads the last epoch's training passes)
    early_stop_max_acc_drop: float = 0.05  # ... and unseen accuracy this close to the original's (as the gate)
    early_stop_settle: float = 2.0  # epochs over which lr then decays to 0 (ends settled, like the full run)

    def check(self):
        if self.early_stop_tolerance < 0 or self.early_stop_max_acc_drop < 0:
            return "early_stop_tolerance and early_stop_max_acc_drop must be >= 0"
        if self.early_stop_checks < 1 or self.early_stop_settle < 0:
            return "early_stop_checks must be >= 1 and early_stop_settle >= 0"
        if self.forget_ascent < 0 or self.unseen_anchor < 0:
            return "forget_ascent and unseen_anchor must be >= 0"
        if self.early_stop and (self.augment or not self.freeze_bn or not self.unseen_anchor):
            return ("early_stop reads the attacker's signal off the training passes: it needs augment = false, "
                    "freeze_bn = true and unseen_anchor > 0 (or set early_stop = false)")
        if self.train_layers not in TRAIN_LAYERS:
            return f"train_layers must be one of {', '.join(TRAIN_LAYERS)}, got {self.train_layers!r}"
        return positive(epochs=self.epochs, lr=self.lr, temperature=self.temperature,
                        batch_size=self.batch_size)


@dataclass(frozen=True)
class PaperPiuFrParams(PiuFrParams):
    """The published recipe (REFERENCE §5), BatchNorm statistics included."""

    epochs: int = 10
    lr: float = 0.001
    momentum: float = 0.0
    cosine: bool = False
    temperature: float = 4.0
    alternate: bool = True
    forget_ascent: float = 0.0
    unseen_anchor: float = 0.0
    train_layers: str = "all"
    augment: bool = True
    freeze_bn: bool = False
    early_stop: bool = False


# --- retrain ---

@dataclass(frozen=True)
class RetrainParams:
    epochs: int = 0  # 0 = the original recipe's epochs

    def check(self):
        return "epochs must be >= 0" if self.epochs < 0 else None


# --- finetune ---

@dataclass(frozen=True)
class FinetuneParams:
    epochs: int = 2
    lr: float = 0.001
    momentum: float = 0.9
    batch_size: int = 64

    def check(self):
        return positive(epochs=self.epochs, lr=self.lr, batch_size=self.batch_size)


# --- neggrad ---

@dataclass(frozen=True)
class NegGradParams:
    """Plain NegGrad: ascent on the forget set only."""

    epochs: int = 2
    lr: float = 0.001
    momentum: float = 0.9
    batch_size: int = 64

    def check(self):
        return positive(epochs=self.epochs, lr=self.lr, batch_size=self.batch_size)


@dataclass(frozen=True)
class AdvancedNegGradParams(NegGradParams):
    retain_weight: float = 1.0  # weight of CE(retain)
    forget_weight: float = 1.0  # weight of the ascent term -CE(forget)


@dataclass(frozen=True)
class NegGradPlusParams(NegGradParams):
    alpha: float = 0.95  # retain weight a; forget weight 1 - a

    def check(self):
        if not 0.0 <= self.alpha <= 1.0:
            return "alpha must be in [0, 1]"
        return super().check()


# --- scrub ---

@dataclass(frozen=True)
class ScrubParams:
    epochs: int = 3
    msteps: int = 2  # epochs that include a max pass over forget
    lr: float = 5e-4
    momentum: float = 0.9
    weight_decay: float = 5e-4
    gamma: float = 0.99  # CE weight on retain
    alpha: float = 0.001  # KL weight on retain
    temperature: float = 4.0
    batch_size: int = 64

    def check(self):
        return positive(epochs=self.epochs, lr=self.lr, temperature=self.temperature,
                        batch_size=self.batch_size)


# --- random_label ---

@dataclass(frozen=True)
class RandomLabelParams:
    epochs: int = 2
    lr: float = 0.001
    momentum: float = 0.9
    batch_size: int = 64
    retain_weight: float = 1.0

    def check(self):
        return positive(epochs=self.epochs, lr=self.lr, batch_size=self.batch_size)


# --- bad_teacher ---

@dataclass(frozen=True)
class BadTeacherParams:
    epochs: int = 1
    lr: float = 0.001
    momentum: float = 0.9
    batch_size: int = 64
    temperature: float = 1.0
    retain_fraction: float = 0.3  # share of retain mixed with forget, as in the paper

    def check(self):
        if not 0.0 < self.retain_fraction <= 1.0:
            return "retain_fraction must be in (0, 1]"
        return positive(epochs=self.epochs, lr=self.lr, batch_size=self.batch_size,
                        temperature=self.temperature)


@dataclass(frozen=True)
class MethodInfo:
    name: str
    params: type  # a dataclass of hyperparameters
    summary: str

    def make_params(self, overrides: dict[str, Any] | None = None, key: str = "params") -> Any:
        """The params object for ``overrides``, type-checked; errors name ``key.param``."""
        overrides = dict(overrides or {})
        known = {f.name: f for f in fields(self.params)}
        for name, value in overrides.items():
            if name not in known:
                raise ConfigError(f"{key}.{name}: unknown parameter of {self.name} "
                                  f"(known: {', '.join(sorted(known))})")
            default = getattr(self.params(), name)
            if isinstance(default, bool):
                ok = isinstance(value, bool)
            elif isinstance(default, int):
                ok = isinstance(value, int) and not isinstance(value, bool)
            elif isinstance(default, float):
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
                value = float(value) if ok else value
            else:
                ok = isinstance(value, type(default))
            if not ok:
                raise ConfigError(f"{key}.{name}: expected {type(default).__name__}, got {value!r}")
            overrides[name] = value
        params = self.params(**overrides)
        check = getattr(params, "check", None)
        if check:
            problem = check()
            if problem:
                raise ConfigError(f"{key}: {problem}")
        return params


CATALOG: dict[str, MethodInfo] = {info.name: info for info in (
    MethodInfo("piu-fr", PiuFrParams, "label-matched unseen distillation + forget ascent, unseen anchored, last block only (+ optional retain stage)"),
    MethodInfo("piu-fr-paper", PaperPiuFrParams, "PIU-FR exactly as published: alternating descent/ascent distillation, T 4, whole network"),
    MethodInfo("retrain", RetrainParams, "train from scratch on retain (original recipe)"),
    MethodInfo("finetune", FinetuneParams, "cross-entropy fine-tune on retain"),
    MethodInfo("cf-k", FinetuneParams, "fine-tune layer3, layer4 and fc on retain"),
    MethodInfo("neggrad", NegGradParams, "gradient ascent on forget cross-entropy"),
    MethodInfo("advanced-neggrad", AdvancedNegGradParams, "-CE(forget) + CE(retain), 1:1"),
    MethodInfo("neggrad-plus", NegGradPlusParams, "alpha*CE(retain) - (1-alpha)*CE(forget), alpha 0.95"),
    MethodInfo("scrub", ScrubParams, "SCRUB: max-KL on forget, CE + KL on retain"),
    MethodInfo("random-label", RandomLabelParams, "fine-tune forget on random wrong labels + retain"),
    MethodInfo("bad-teacher", BadTeacherParams, "distil good teacher on retain, random teacher on forget"),
)}


def method_info(name: str) -> MethodInfo:
    try:
        return CATALOG[name]
    except KeyError:
        raise ConfigError(f"unknown method {name!r} (known: {', '.join(CATALOG)})") from None


def validate_overrides(name: str, overrides: dict[str, Any], key: str = "params") -> Any:
    """Check a method name and its parameter overrides; return the params object."""
    return method_info(name).make_params(overrides, key)
