"""Every method's name, one-line summary and typed hyperparameters, without PyTorch.

The service validates a manifest's ``params`` here before anything runs, and
``config.toml``'s ``[methods.NAME]`` tables are checked the same way; the
implementations in :mod:`piu_engine.core.methods.registry` bind a run to
each name. Defaults follow REFERENCE.md unless a comment says otherwise.

Every numeric parameter has a range (:class:`Bound`): the ranges shared by
name are in :data:`COMMON_BOUNDS`, a class's own in its ``BOUNDS`` table
(inherited, and overridden by name, along the class hierarchy). A float must
also be finite. ``check()`` holds only the rules that tie parameters together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from piu_engine.common.errors import ConfigError


@dataclass(frozen=True)
class Bound:
    """The interval a numeric parameter must lie in; either end open or closed."""

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def __str__(self) -> str:
        return f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


def between(low: float, high: float) -> Bound:
    """[low, high]"""
    return Bound(low, high)


def above(low: float, high: float) -> Bound:
    """(low, high]"""
    return Bound(low, high, low_open=True)


def below(low: float, high: float) -> Bound:
    """[low, high)"""
    return Bound(low, high, high_open=True)


MAX_EPOCHS = 500  # an unlearning run or a retrain: far beyond any recipe, far below "forever"

# Ranges of the parameters several methods share, by name; a class's BOUNDS override them.
COMMON_BOUNDS: dict[str, Bound] = {
    "epochs": between(1, MAX_EPOCHS),
    "batch_size": between(1, 4096),
    "lr": above(0, 10),
    "momentum": below(0, 1),
    "weight_decay": between(0, 1),
    "temperature": between(0.05, 100),  # a softmax temperature: below 0.05 the KL overflows
}
LOSS_WEIGHT = between(0, 100)  # the weight of one term of a combined loss


def bounds_of(params: type) -> dict[str, Bound]:
    """The range of every numeric field of the params dataclass ``params``."""
    table = dict(COMMON_BOUNDS)
    for cls in reversed(params.__mro__):
        table.update(vars(cls).get("BOUNDS", {}))
    return {f.name: table[f.name] for f in fields(params) if f.name in table}


def out_of_bounds(params: Any) -> tuple[str, str] | None:
    """(parameter, problem) for the first numeric field of ``params`` outside its range."""
    for name, bound in bounds_of(type(params)).items():
        value = getattr(params, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if value not in bound:
            kind = "an integer" if isinstance(value, int) else "a finite number"
            return name, f"must be {kind} in {bound}, got {value!r}"
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
    bounded_ascent: bool = True  # push CE(forget) up to the original's CE on never-seen people, no further
    scale_lr_to_request: bool = True  # lr x min(1, forget images / batch_size): a few photos get a small step
    unseen_anchor: float = 1.0  # weight of KL(original(unseen) || model(unseen)) on the paired images
    retain_anchor: float = 1.25  # KL(original(retain) || model(retain)) on a random retain batch per step, / lr scale
    guided: bool = True  # with a guide pool: each photo's target is its own output at its person's never-seen level
    guide_feedback: float = 1.0  # guided: per check, move each person's target on by this times their distance left
    person_gate: bool = False  # the ascent per person: only for people still above never-seen people (PersonGate)
    person_gate_quantile: float = 0.1  # the band: the q and 1 - q quantiles of never-seen people's mean confidence
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

    BOUNDS: ClassVar[dict[str, Bound]] = {
        "forget_ascent": LOSS_WEIGHT,
        "unseen_anchor": LOSS_WEIGHT,
        "retain_anchor": LOSS_WEIGHT,
        "person_gate_quantile": between(0, 0.5),
        "guide_feedback": between(0, 10),
        "stage2_epochs": between(0, MAX_EPOCHS),
        "stage2_lr": COMMON_BOUNDS["lr"],
        "stage2_momentum": COMMON_BOUNDS["momentum"],
        "early_stop_tolerance": between(0, 0.5),  # |MIA - 0.5| is at most 0.5
        "early_stop_checks": between(1, 10_000),
        "early_stop_max_acc_drop": between(0, 1),  # an accuracy difference
        "early_stop_settle": between(0, MAX_EPOCHS),  # epochs
    }

    def check(self):
        if self.early_stop and (self.augment or not self.freeze_bn or not self.unseen_anchor):
            return (
                "early_stop reads the attacker's signal off the training passes: it needs augment = false, "
                "freeze_bn = true and unseen_anchor > 0 (or set early_stop = false)"
            )
        if self.train_layers not in TRAIN_LAYERS:
            return f"train_layers must be one of {', '.join(TRAIN_LAYERS)}, got {self.train_layers!r}"
        return None


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
    retain_anchor: float = 0.0
    guided: bool = False
    train_layers: str = "all"
    augment: bool = True
    freeze_bn: bool = False
    early_stop: bool = False
    scale_lr_to_request: bool = False


# --- retrain ---


@dataclass(frozen=True)
class RetrainParams:
    epochs: int = 0  # 0 = the original recipe's epochs

    BOUNDS: ClassVar[dict[str, Bound]] = {"epochs": between(0, MAX_EPOCHS)}


# --- finetune ---


@dataclass(frozen=True)
class FinetuneParams:
    epochs: int = 2
    lr: float = 0.001
    momentum: float = 0.9
    batch_size: int = 64


# --- neggrad ---
# Momentum 0.9 in this family, random-label and bad-teacher is ours: the benchmark
# (Choi & Na) gives only lr and epochs for them; Kurmanji's NegGrad+ uses 0.9.


@dataclass(frozen=True)
class NegGradParams:
    """Plain NegGrad: ascent on the forget set only; an epoch is a pass over forget."""

    epochs: int = 2
    lr: float = 0.001
    momentum: float = 0.9
    batch_size: int = 64


@dataclass(frozen=True)
class AdvancedNegGradParams(NegGradParams):
    """The benchmark's Advanced NegGrad: an epoch is a pass over retain, each
    retain batch paired with the next forget batch (forget cycled), as there."""

    retain_weight: float = 1.0  # weight of CE(retain)
    forget_weight: float = 1.0  # weight of the ascent term -CE(forget)

    BOUNDS: ClassVar[dict[str, Bound]] = {"retain_weight": LOSS_WEIGHT, "forget_weight": LOSS_WEIGHT}


@dataclass(frozen=True)
class NegGradPlusParams(NegGradParams):
    """Kurmanji's NegGrad+: an epoch is a pass over retain with forget cycled,
    lr 0.01, momentum 0.9. Deviations: 2 epochs, not the 10 of the SCRUB
    code (on the default preset 2 already take about a quarter of retraining's
    time), and batch 64, not 256."""

    lr: float = 0.01
    alpha: float = 0.95  # retain weight a; forget weight 1 - a

    BOUNDS: ClassVar[dict[str, Bound]] = {"alpha": between(0, 1)}


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

    BOUNDS: ClassVar[dict[str, Bound]] = {
        "msteps": between(0, MAX_EPOCHS),
        "gamma": LOSS_WEIGHT,
        "alpha": LOSS_WEIGHT,
    }


# --- random_label ---


@dataclass(frozen=True)
class RandomLabelParams:
    """The benchmark's lr and epochs (an epoch is a pass over forget, each batch
    with the next retain batch); momentum 0.9 is ours (see the neggrad note)."""

    epochs: int = 2
    lr: float = 0.001
    momentum: float = 0.9
    batch_size: int = 64
    retain_weight: float = 1.0

    BOUNDS: ClassVar[dict[str, Bound]] = {"retain_weight": LOSS_WEIGHT}


# --- bad_teacher ---


@dataclass(frozen=True)
class BadTeacherParams:
    """Momentum 0.9 is ours (see the neggrad note); an epoch is a pass over
    forget plus ``retain_fraction`` of retain, mixed."""

    epochs: int = 1
    lr: float = 0.001
    momentum: float = 0.9
    batch_size: int = 64
    temperature: float = 1.0
    retain_fraction: float = 0.3  # share of retain mixed with forget, as in the paper

    BOUNDS: ClassVar[dict[str, Bound]] = {"retain_fraction": above(0, 1)}


# --- masked and noised baselines (NeurIPS 2023 competition, SalUn) ---
# Epochs: the published count where a run stays within about a quarter of
# retraining's time on the default preset (16 epochs over retain), fewer
# otherwise, as the docstrings say.

FRACTION = above(0, 1)  # a share of the weights; 0 would change nothing


@dataclass(frozen=True)
class SalUnParams:
    """SalUn (Fan et al., ICLR 2024): only the ``mask_fraction`` of all weights
    with the largest |gradient of CE(forget)| (ranked together, on the
    unchanged model) train; an epoch is one pass over forget and retain
    shuffled together, forget images carrying wrong labels. Deviations: 2
    epochs, not 10; lr 0.01 (the repository's default; its CIFAR-10 command
    uses 0.1 from an original trained at 0.1, ours train at 0.01); no weight
    decay, so the unmasked weights stay exactly where they were (SalUn resets
    them after every step for the same end); labels are never the true one."""

    epochs: int = 2
    lr: float = 0.01
    momentum: float = 0.9
    batch_size: int = 64
    mask_fraction: float = 0.5

    BOUNDS: ClassVar[dict[str, Bound]] = {"mask_fraction": FRACTION}


@dataclass(frozen=True)
class ReinitSmallGradParams:
    """Masked Small Gradients (NeurIPS 2023 unlearning competition): in every
    convolution, the ``reinit_fraction`` of its weights with the smallest
    |gradient| of CE(retain sample) - CE(forget) (the retain sample as large
    as forget, as in the entry) get a fresh He (kaiming-normal, fan-out)
    value; then CE on retain, the fresh weights at ``lr``, the other
    convolution weights at ``rest_lr_factor`` x ``lr`` (their gradient is
    scaled; weight decay is not), BatchNorm and fc at ``lr``. Deviations: 4
    epochs, not 5, and a constant lr, not the entry's linear warm-up and decay."""

    epochs: int = 4
    lr: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 64
    reinit_fraction: float = 0.3
    rest_lr_factor: float = 0.1

    BOUNDS: ClassVar[dict[str, Bound]] = {"reinit_fraction": FRACTION, "rest_lr_factor": between(0, 1)}


NOISE_LAYERS = ("stem", "all")


@dataclass(frozen=True)
class NoiseFinetuneParams:
    """Gaussian noise (NeurIPS 2023 competition): add N(0, ``sigma``^2),
    absolute, to convolution weights, then CE on retain (lr 0.0007, momentum
    0.9, weight decay 5e-4, 4 epochs, as published). ``noise_layers =
    "stem"`` noises ``conv1`` only: the published code walks the model's
    top-level children, and in a ResNet-18 the only convolution there is the
    stem (``"all"``: every convolution; at sigma 0.6 that erases the model).
    Deviations: a constant lr, not cosine; plain CE, not class-balanced; no
    second, small noise (0.005) before the last epoch."""

    epochs: int = 4
    lr: float = 0.0007
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 64
    sigma: float = 0.6
    noise_layers: str = "stem"  # stem (conv1, as published) | all

    BOUNDS: ClassVar[dict[str, Bound]] = {"sigma": between(0, 10)}

    def check(self):
        if self.noise_layers not in NOISE_LAYERS:
            return f"noise_layers must be one of {', '.join(NOISE_LAYERS)}, got {self.noise_layers!r}"
        return None


@dataclass(frozen=True)
class L1SparseParams:
    """l1-sparse (Jia et al., NeurIPS 2023): CE on retain + gamma_t * ||w||_1
    over every weight, gamma_t decaying linearly from ``gamma`` to 0 over the
    run (per step; the paper's code per epoch). lr 0.01, momentum 0.9 as
    published. Deviation: 4 epochs, not 10."""

    epochs: int = 4
    lr: float = 0.01
    momentum: float = 0.9
    batch_size: int = 64
    gamma: float = 5e-4

    BOUNDS: ClassVar[dict[str, Bound]] = {"gamma": between(0, 0.1)}


@dataclass(frozen=True)
class ReGUnParams:
    """ReGUn (Mirlach et al., arXiv 2603.11210, 2026): T^2 * KL(q_y || model(forget)),
    q_y the frozen original's softmax (at T) averaged over the held-out
    images with the forget image's label, plus CE on retain. Held-out = the
    unseen *unlearning* part only, never the evaluation part. The paper
    averages over a class-histogram-matched sample per batch; this is the
    exact per-label average. Its hyperparameters are not in our sources: ours
    follow this benchmark's baselines (lr 0.01 as NegGrad+, momentum 0.9); an
    epoch is a pass over forget, each batch with the next retain batch."""

    epochs: int = 5
    lr: float = 0.01
    momentum: float = 0.9
    batch_size: int = 64
    temperature: float = 1.0
    forget_weight: float = 1.0
    retain_weight: float = 1.0

    BOUNDS: ClassVar[dict[str, Bound]] = {"forget_weight": LOSS_WEIGHT, "retain_weight": LOSS_WEIGHT}


@dataclass(frozen=True)
class MethodInfo:
    name: str
    params: type  # a dataclass of hyperparameters
    summary: str

    def make_params(self, overrides: dict[str, Any] | None = None, key: str = "params") -> Any:
        """The params object for ``overrides``, type- and range-checked; errors name ``key.param``."""
        overrides = dict(overrides or {})
        known = {f.name: f for f in fields(self.params)}
        for name, value in overrides.items():
            if name not in known:
                raise ConfigError(f"{key}.{name}: unknown parameter of {self.name} (known: {', '.join(sorted(known))})")
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
        bad = out_of_bounds(params)
        if bad:
            raise ConfigError(f"{key}.{bad[0]}: {bad[1]}")
        check = getattr(params, "check", None)
        if check:
            problem = check()
            if problem:
                raise ConfigError(f"{key}: {problem}")
        return params


CATALOG: dict[str, MethodInfo] = {
    info.name: info
    for info in (
        MethodInfo(
            "piu-fr",
            PiuFrParams,
            "label-matched unseen distillation + bounded forget ascent, unseen anchored, last block only "
            "(+ optional retain stage)",
        ),
        MethodInfo(
            "piu-fr-paper",
            PaperPiuFrParams,
            "PIU-FR exactly as published: alternating descent/ascent distillation, T 4, whole network",
        ),
        MethodInfo("retrain", RetrainParams, "train from scratch on retain (original recipe)"),
        MethodInfo("finetune", FinetuneParams, "cross-entropy fine-tune on retain"),
        MethodInfo("cf-k", FinetuneParams, "fine-tune layer3, layer4 and fc on retain"),
        MethodInfo("neggrad", NegGradParams, "gradient ascent on forget cross-entropy"),
        MethodInfo("advanced-neggrad", AdvancedNegGradParams, "-CE(forget) + CE(retain), 1:1, epochs over retain"),
        MethodInfo(
            "neggrad-plus", NegGradPlusParams, "alpha*CE(retain) - (1-alpha)*CE(forget), alpha 0.95, epochs over retain"
        ),
        MethodInfo("scrub", ScrubParams, "SCRUB: max-KL on forget, CE + KL on retain"),
        MethodInfo("random-label", RandomLabelParams, "fine-tune forget on random wrong labels + retain"),
        MethodInfo("bad-teacher", BadTeacherParams, "distil good teacher on retain, random teacher on forget"),
        MethodInfo("salun", SalUnParams, "SalUn: random labels on forget + CE on retain, only forget-salient weights"),
        MethodInfo(
            "reinit-small-grad",
            ReinitSmallGradParams,
            "re-initialise the 30% of conv weights with the smallest gradient, then fine-tune on retain",
        ),
        MethodInfo("noise-finetune", NoiseFinetuneParams, "Gaussian noise on conv weights, then fine-tune on retain"),
        MethodInfo("l1-sparse", L1SparseParams, "fine-tune on retain with a decaying l1 penalty on the weights"),
        MethodInfo(
            "regun",
            ReGUnParams,
            "ReGUn: distil forget outputs to the original's mean output on same-label unseen + CE on retain",
        ),
    )
}


def method_info(name: str) -> MethodInfo:
    try:
        return CATALOG[name]
    except KeyError:
        raise ConfigError(f"unknown method {name!r} (known: {', '.join(CATALOG)})") from None


def validate_overrides(name: str, overrides: dict[str, Any], key: str = "params") -> Any:
    """Check a method name and its parameter overrides; return the params object."""
    return method_info(name).make_params(overrides, key)
