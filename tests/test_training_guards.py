"""The one training loop (``train_steps``) and its guards: a non-finite loss or
weight ends a run with DivergedError, naming where; out-of-range
hyperparameters are rejected before anything runs, naming the parameter."""

import math
import pickle
from dataclasses import fields

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from piu_engine.common.errors import CommandError, ConfigError, DivergedError
from piu_engine.common.events import never_stop
from piu_engine.core.methods.catalog import CATALOG, bounds_of, validate_overrides
from piu_engine.core.train import FiniteGuard, Phase, RunControl, sgd, train_steps

NAN, INF = float("nan"), float("inf")


# --- parameter ranges -----------------------------------------------------------


@pytest.mark.parametrize(
    "method, overrides, param",
    [
        ("piu-fr", {"lr": NAN}, "lr"),
        ("scrub", {"lr": INF}, "lr"),
        ("piu-fr", {"forget_ascent": NAN}, "forget_ascent"),
        ("piu-fr", {"stage2_lr": -INF}, "stage2_lr"),
        ("neggrad", {"momentum": -0.5}, "momentum"),
        ("finetune", {"momentum": 1.0}, "momentum"),
        ("piu-fr", {"lr": 1e9}, "lr"),
        ("cf-k", {"lr": 0.0}, "lr"),
        ("scrub", {"temperature": 1e-300}, "temperature"),
        ("piu-fr-paper", {"temperature": 1e9}, "temperature"),
        ("piu-fr", {"epochs": 10**9}, "epochs"),
        ("neggrad", {"epochs": 0}, "epochs"),
        ("retrain", {"epochs": 10**9}, "epochs"),
        ("retrain", {"epochs": -1}, "epochs"),
        ("scrub", {"weight_decay": -1e-4}, "weight_decay"),
        ("scrub", {"msteps": -1}, "msteps"),
        ("neggrad-plus", {"alpha": 1.5}, "alpha"),
        ("advanced-neggrad", {"retain_weight": 1e6}, "retain_weight"),
        ("random-label", {"retain_weight": -1.0}, "retain_weight"),
        ("bad-teacher", {"retain_fraction": 0.0}, "retain_fraction"),
        ("random-label", {"batch_size": 0}, "batch_size"),
        ("finetune", {"batch_size": 10**6}, "batch_size"),
        ("piu-fr", {"early_stop_checks": 0}, "early_stop_checks"),
        ("piu-fr", {"early_stop_tolerance": -0.1}, "early_stop_tolerance"),
    ],
)
def test_out_of_range_parameters_are_rejected_by_name(method, overrides, param):
    with pytest.raises(ConfigError, match=rf"^params\.{param}: must be (a finite number|an integer) in "):
        validate_overrides(method, overrides)


def test_the_range_error_names_the_parameter_its_range_and_the_value():
    with pytest.raises(ConfigError) as info:
        validate_overrides("piu-fr", {"lr": 1e9})
    assert str(info.value) == "params.lr: must be a finite number in (0, 10], got 1000000000.0"
    with pytest.raises(ConfigError) as info:
        validate_overrides("scrub", {"epochs": 10**9}, key="methods.scrub")
    assert str(info.value) == "methods.scrub.epochs: must be an integer in [1, 500], got 1000000000"
    with pytest.raises(ConfigError, match=r"^params\.momentum: must be a finite number in \[0, 1\), got nan$"):
        validate_overrides("neggrad", {"momentum": NAN})


def test_config_file_method_tables_are_range_checked():
    from piu_engine.core.config import parse

    with pytest.raises(ConfigError, match=r"^methods\.scrub\.temperature: must be a finite number in \[0\.05, 100\]"):
        parse({"methods": {"scrub": {"temperature": 1e-300}}})
    with pytest.raises(ConfigError, match=r"^methods\.piu-fr\.lr: must be a finite number"):
        parse({"methods": {"piu-fr": {"lr": INF}}})


def test_every_numeric_parameter_has_a_range_holding_its_default():
    for name, info in CATALOG.items():
        bounds, defaults = bounds_of(info.params), info.params()
        for f in fields(info.params):
            value = getattr(defaults, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            assert f.name in bounds, f"{name}.{f.name} has no range"
            assert value in bounds[f.name], f"{name}.{f.name} default {value} outside {bounds[f.name]}"
        info.make_params({})


def test_values_at_the_edges_of_their_ranges_are_accepted():
    assert validate_overrides("retrain", {"epochs": 0}).epochs == 0  # 0 = the recipe's epochs
    p = validate_overrides(
        "piu-fr",
        {
            "lr": 10,
            "momentum": 0,
            "temperature": 0.05,
            "epochs": 500,
            "early_stop_tolerance": 0.5,
            "early_stop_max_acc_drop": 1,
        },
    )
    assert p.lr == 10.0 and isinstance(p.lr, float) and p.momentum == 0.0
    assert validate_overrides("piu-fr", {"epochs": 400, "early_stop": False}).epochs == 400  # the service tests' "long"
    assert validate_overrides("scrub", {"msteps": 0, "temperature": 100, "weight_decay": 1}).msteps == 0
    assert validate_overrides("neggrad-plus", {"alpha": 0}).alpha == 0.0
    assert validate_overrides("neggrad-plus", {"alpha": 1}).alpha == 1.0
    assert validate_overrides("bad-teacher", {"retain_fraction": 1.0}).retain_fraction == 1.0


def test_rules_between_parameters_still_apply():
    with pytest.raises(ConfigError, match="needs augment = false"):
        validate_overrides("piu-fr", {"augment": True})
    with pytest.raises(ConfigError, match="train_layers must be one of"):
        validate_overrides("piu-fr", {"train_layers": "layer9"})
    with pytest.raises(ConfigError, match="expected int"):
        validate_overrides("piu-fr", {"epochs": 2.0})


# --- the training loop ------------------------------------------------------------

X = torch.linspace(-1, 1, 48).reshape(12, 4)
Y = torch.arange(12) % 3


def toy() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))


def phase(name="toy", epochs=3, steps=3, events=None, report_every=5) -> Phase:
    control = RunControl(
        on_event=events.append if events is not None else (lambda e: None),
        should_stop=never_stop,
        report_every=report_every,
    )
    return Phase(control, name, epochs, steps)


def test_the_loop_is_a_hand_written_loop_bit_for_bit():
    """Same steps, same random draws in the same order, same lr schedule."""

    def reference():
        model, gen = toy(), torch.Generator().manual_seed(1)
        opt = sgd(model.parameters(), 0.1, 0.9, 1e-3)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, [2], 0.1)
        for _ in range(3):
            for b in torch.randperm(12, generator=gen).split(4):
                x = X[b] + 0.1 * torch.randn(len(b), 4, generator=gen)
                loss = F.cross_entropy(model(x), Y[b])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            sched.step()
        return model

    model, gen = toy(), torch.Generator().manual_seed(1)
    opt = sgd(model.parameters(), 0.1, 0.9, 1e-3)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [2], 0.1)

    def step(b):
        x = X[b] + 0.1 * torch.randn(len(b), 4, generator=gen)
        return F.cross_entropy(model(x), Y[b])

    events = []
    taken = train_steps(
        phase(events=events),
        model,
        opt,
        step,
        lambda epoch: iter(torch.randperm(12, generator=gen).split(4)),
        after_epoch=lambda epoch: sched.step(),
    )
    assert taken == 9
    for (k, a), b in zip(reference().state_dict().items(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    assert [(e.epoch, e.step) for e in events] == [(1, 3), (2, 3), (3, 3), (3, 3)]
    assert events[-1].message == "done"


def test_hooks_see_every_step_and_after_step_can_end_the_phase():
    model = toy()
    opt = sgd(model.parameters(), 0.01)
    seen, before, epochs, events = [], [], [], []

    def step(n):  # an int ``batches``: the step's number in its epoch
        seen.append(n)
        return F.cross_entropy(model(X[:4]), Y[:4])

    taken = train_steps(
        phase(events=events, report_every=1),
        model,
        opt,
        step,
        3,
        before_step=before.append,
        after_epoch=epochs.append,
        after_step=lambda taken: {"why": "enough"} if taken == 4 else None,
    )
    assert taken == 4 and seen == [1, 2, 3, 1] and before == [0, 1, 2, 3] and epochs == [1]
    assert events[-1].message == "done" and events[-1].metrics == {"why": "enough"}


def _diverging_step(model, at: tuple[int, int], value: float = NAN):
    """A step function whose loss turns ``value`` at (epoch, step) of 3 steps per epoch."""
    count = [0]

    def step(b):
        count[0] += 1
        loss = F.cross_entropy(model(X[b]), Y[b])
        return loss * value if divmod(count[0] - 1, 3) == (at[0] - 1, at[1] - 1) else loss

    return step


@pytest.mark.parametrize("value", [NAN, INF, -INF])
def test_a_non_finite_loss_ends_the_run_at_that_step_before_its_update(value):
    model = toy()
    opt = sgd(model.parameters(), 0.1, 0.9)
    events = []
    with pytest.raises(DivergedError) as info:
        train_steps(
            phase("neggrad", events=events, report_every=1),
            model,
            opt,
            _diverging_step(model, (2, 2), value),
            lambda epoch: iter(torch.arange(12).split(4)),
        )
    err = info.value
    assert (err.phase, err.epoch, err.step) == ("neggrad", 2, 2)
    assert err.loss is not None and not math.isfinite(err.loss) and str(err.loss) in str(err)
    assert "phase neggrad, epoch 2, step 2: non-finite loss" in str(err)
    assert all(t.isfinite().all() for t in model.state_dict().values() if t.is_floating_point())  # never applied
    assert len(events) == 4 and not any(e.message == "done" for e in events)  # the phase never finished


def test_on_an_accelerator_the_losses_are_checked_in_batches_but_before_the_phase_ends(monkeypatch):
    """No device sync per step: a NaN is found at the next check (every
    report_every steps, at the latest at the epoch's end), still named by its step."""
    import piu_engine.core.train as train

    class Deferred(FiniteGuard):
        def __init__(self, ph, model, device):
            super().__init__(ph, model, torch.device("cuda"))  # as on a GPU, without one

    monkeypatch.setattr(train, "FiniteGuard", Deferred)
    model = toy()
    events = []
    with pytest.raises(DivergedError) as info:
        train_steps(
            phase(events=events, report_every=5),
            model,
            sgd(model.parameters(), 0.1),
            _diverging_step(model, (1, 2)),
            lambda epoch: iter(torch.arange(12).split(4)),
        )
    assert (info.value.epoch, info.value.step) == (1, 2) and math.isnan(info.value.loss)
    assert not any(e.message == "done" for e in events)
    guard = Deferred(phase(), model, None)
    guard.loss(1, 1, torch.tensor(1.0))
    guard.loss(1, 2, torch.tensor(INF))  # queued, not read
    with pytest.raises(DivergedError, match="epoch 1, step 2: non-finite loss"):
        guard.flush()


def test_a_non_finite_weight_ends_the_run_even_when_the_loss_is_finite():
    """BatchNorm statistics can overflow while the loss, from batch statistics, stays finite."""
    model = toy()

    def overflow(taken):
        if taken == 3:  # after the epoch's last step
            with torch.no_grad():
                model[1].running_var.fill_(INF)

    events = []
    with pytest.raises(DivergedError) as info:
        train_steps(
            phase("scrub", events=events),
            model,
            sgd(model.parameters(), 0.1),
            lambda b: F.cross_entropy(model(X[b]), Y[b]),
            lambda epoch: iter(torch.arange(12).split(4)),
            after_step=overflow,
        )
    err = info.value
    assert (err.phase, err.epoch, err.step) == ("scrub", 1, 3) and math.isfinite(err.loss)
    assert "non-finite weights after the step: 1.running_var" in str(err)
    assert not any(e.message == "done" for e in events)


def test_diverged_error_is_a_one_line_command_error_that_survives_pickling():
    err = DivergedError("non-finite loss", phase="piu-fr:stage1", epoch=3, step=5, loss=NAN)
    assert isinstance(err, RuntimeError) and isinstance(err, CommandError)  # the CLI prints it as one line
    assert str(err).startswith("training diverged in phase piu-fr:stage1, epoch 3, step 5: non-finite loss (loss nan)")
    assert str(err.for_method("piu-fr")).startswith("piu-fr diverged in phase piu-fr:stage1")
    assert str(err.for_method("scrub")).startswith("piu-fr diverged")  # the first name sticks
    back = pickle.loads(pickle.dumps(err))
    assert str(back) == str(err) and (back.method, back.epoch, back.step) == ("piu-fr", 3, 5)


# --- methods on the tiny set ------------------------------------------------------------


def test_an_extreme_in_range_setting_diverges_with_a_clear_error(tiny_bench):
    """NegGrad at lr 10 on batches of 4: the ascent blows the BatchNorm statistics up."""
    wb, splits, original = tiny_bench
    with pytest.raises(DivergedError) as info:
        wb.run_method("neggrad", original, splits, 0, {"lr": 10.0, "epochs": 1, "batch_size": 4})
    err = info.value
    assert err.method == "neggrad" and err.phase == "neggrad" and err.epoch == 1 and err.step is not None
    assert str(err).startswith("neggrad diverged in phase neggrad, epoch 1, step ")


def _nan_after(calls: int, real):
    count = [0]

    def fake(*args, **kwargs):
        count[0] += 1
        out = real(*args, **kwargs)
        return out * NAN if count[0] > calls else out

    return fake


def test_a_method_whose_loss_turns_nan_stops_at_that_step_naming_method_phase_and_step(tiny_bench, monkeypatch):
    import piu_engine.core.methods.piu_fr as piu_fr

    wb, splits, original = tiny_bench
    monkeypatch.setattr(piu_fr, "distill_kl", _nan_after(2, piu_fr.distill_kl))
    with pytest.raises(DivergedError) as info:
        wb.run_method(
            "piu-fr",
            original,
            splits,
            0,
            {"epochs": 3, "early_stop": False, "unseen_anchor": 0.0, "retain_anchor": 0.0},
        )
    err = info.value
    assert (err.method, err.phase, err.epoch, err.step) == ("piu-fr", "piu-fr:stage1", 3, 1) and math.isnan(err.loss)
    assert "piu-fr diverged in phase piu-fr:stage1, epoch 3, step 1: non-finite loss (loss nan)" in str(err)


def _forget_request(wb, splits, **kw):
    from piu_engine.core.request import ForgetRequest

    ids = sorted(set(wb.ds.identities[splits.forget].tolist()))[:1]
    return ForgetRequest(dataset="synthetic", groups={"r-1": ids}, **kw)


def test_run_forget_never_writes_a_diverged_model(tiny_bench, tiny_config, tmp_path, monkeypatch):
    import piu_engine.core.methods.piu_fr as piu_fr
    from piu_engine.core.checkpoint import save_checkpoint
    from piu_engine.core.forget import run_forget

    wb, splits, original = tiny_bench
    parent, out = tmp_path / "parent.pt", tmp_path / "new.pt"
    save_checkpoint(original.state_dict(), parent)
    monkeypatch.setattr(piu_fr, "distill_kl", _nan_after(0, piu_fr.distill_kl))
    request = _forget_request(wb, splits, method="piu-fr", params={"epochs": 1, "early_stop": False})
    with pytest.raises(DivergedError, match="piu-fr diverged in phase piu-fr:stage1, epoch 1, step 1"):
        run_forget(tiny_config, request, parent, out)
    assert not out.exists() and not list(tmp_path.glob("new*"))


def test_run_forget_checks_the_final_weights_itself(tiny_bench, tiny_config, tmp_path, monkeypatch):
    """Even a method that got past every guard cannot install a non-finite model."""
    import copy

    from piu_engine.core.checkpoint import save_checkpoint
    from piu_engine.core.forget import run_forget
    from piu_engine.core.workbench import MethodRun, Workbench

    wb, splits, original = tiny_bench
    parent, out = tmp_path / "parent.pt", tmp_path / "new.pt"
    save_checkpoint(original.state_dict(), parent)

    def broken(self, name, model, splits, seed, overrides=None, guide=None):
        bad = copy.deepcopy(model)
        with torch.no_grad():
            bad.fc.weight[0, 0] = NAN
        return MethodRun(name, bad, 0.1, {})

    monkeypatch.setattr(Workbench, "run_method", broken)
    expected = r"finetune diverged in phase final weights: non-finite values in fc\.weight"
    with pytest.raises(DivergedError, match=expected):
        run_forget(tiny_config, _forget_request(wb, splits, method="finetune"), parent, out)
    assert not out.exists() and not list(tmp_path.glob("new*"))
