"""PIU-FR: NegGrad + SCRUB hybrid driven by a label-matched unseen set.

Stage 1 pulls the model's outputs on each forget image towards the frozen
original's outputs on an unseen image with the same label, so that forgotten
people end up looking like people the model never saw. The per-sample loss
an attacker reads is then drawn from the never-seen distribution by
construction (the labels match).

That is a population-level match, and people differ: some are hard to
recognise even for models that never saw them. A partner's output pulls a
hard person up to the average and an easy one down to it, and the per-person
audit flags both. With a guide pool (``guided``, on by default, once
``piu audit pool --guide`` has built it) each forget photo's target is
instead its own original output with the true label's confidence moved so
that its person's mean confidence lands where models that never saw that
person put them (:mod:`piu_engine.core.audit.guide`); the rest of the output
stays the original's. The anchors hold the model back, so a fixed target is
reached only part of the way; ``guide_feedback`` measures each person on the
model a few times an epoch and moves their target on by what is left
(:class:`GuidedTargets`). Without a guide pool the partners' outputs are used.

Seven measured refinements of the published recipe are on by default
(``piu-fr-paper`` keeps the published one, for comparison):

- ``forget_ascent``: a NegGrad term, −CE on the forget images, that pushes
  memorised people out faster than distillation alone; the distillation term
  bounds it (it pulls back towards never-seen outputs, not beyond).
- ``unseen_anchor``: the paired unseen images are also distilled from the
  original, so the model keeps treating never-seen people exactly as before.
  They are the attacker's other side: holding them still is what makes the
  forget side's move count.
- ``retain_anchor``: KL to the original on a random retain batch each step,
  its weight divided by the request's learning-rate scale, so everyone else
  is held as firmly on a one-person request as on a large one. The batches
  are drawn for the whole budget up front, and only the images drawn run
  through the frozen blocks.
- ``train_layers = "layer4"``: only the last block and the head change, which
  protects the features every person shares and halves the backward pass.
- ``augment = false``: the forget images are matched as the attacker sees
  them (test-time transform), not through random crops and colour jitter.
  With frozen BatchNorm this also makes the frozen blocks' output per image
  constant, so it is computed once and each step runs only the trained blocks.
- ``cosine = true``: the learning rate decays to 0, so the run ends settled
  instead of in the middle of a swing.
- ``early_stop = true``: stage 1 ends early once an MIA measured on the
  *unlearning* part of unseen (never the evaluation part), read off the
  training passes, is within a tolerance of 0.5 while the accuracy on those
  images has not dropped (:class:`EarlyStop`); the learning rate then decays
  to 0 over ``early_stop_settle`` epochs instead of the rest of the budget.

Optional stage 2 fine-tunes on retain.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import torch

from piu_engine.core.audit.guide import PersonLevels, never_seen_levels
from piu_engine.core.audit.scores import PHI_CLIP
from piu_engine.core.data.splits import label_matched_partners
from piu_engine.core.data.types import Task
from piu_engine.core.losses import distill_kl, logit_confidence, lower_confidence, predictions_correct, task_loss
from piu_engine.core.methods.base import UnlearnContext, trainable_only
from piu_engine.core.methods.catalog import TRAIN_LAYERS, PiuFrParams
from piu_engine.core.metrics import threshold_mia
from piu_engine.core.model import split_resnet
from piu_engine.core.presets import TrainRecipe
from piu_engine.core.tensors import batch_slices, index_batches
from piu_engine.core.train import fit, sgd, train_steps


class EarlyStop:
    """Stage 1's stopping rule, judged only on the unlearning part of unseen.

    Free to check: with ``augment = false`` and frozen BatchNorm the training
    passes already compute the loss an attacker would read on every forget
    image and on its paired unseen image, so the rule reads them off the last
    ``window`` steps instead of running the model again. Stop once the two
    sides are as hard to tell apart as the tolerance allows (|MIA - 0.5|) *and*
    the paired never-seen people are still recognised about as well as the
    original did (the MIA alone also touches 0.5 in the middle of a dip).
    """

    def __init__(self, p: PiuFrParams, teacher_correct: torch.Tensor, window: int, seed: int):
        self.p, self.seed = p, seed
        self.floor = float(teacher_correct.float().mean()) - p.early_stop_max_acc_drop
        self.steps: deque[tuple[torch.Tensor, ...]] = deque(maxlen=window)  # stays on the device: no sync per step

    def observe(self, forget_loss: torch.Tensor, unseen_loss: torch.Tensor, unseen_correct: torch.Tensor) -> None:
        self.steps.append((forget_loss.detach().float(), unseen_loss.detach().float(), unseen_correct.detach().float()))

    def reached(self) -> dict | None:
        """The measurements when stage 1 may stop now, else None (also while
        the window is not yet full: a few batches give too noisy an MIA)."""
        if len(self.steps) < self.steps.maxlen:
            return None
        f_loss, u_loss, correct = (torch.cat(t) for t in zip(*self.steps))
        value, acc = (
            float(v) for v in torch.stack([threshold_mia(f_loss, u_loss, seed=self.seed), correct.mean()]).cpu()
        )
        gap = abs(value - 0.5)
        if gap <= self.p.early_stop_tolerance and acc >= self.floor:
            return {"membership_gap": gap, "unseen_acc": acc}
        return None


def train_mode(model, freeze_bn: bool) -> None:
    """Training mode; with ``freeze_bn`` BatchNorm keeps the original's statistics,
    so a few hundred forget images cannot shift them for everyone."""
    model.train()
    if freeze_bn:
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()


def _step_inputs(ctx: UnlearnContext, p: PiuFrParams, sets: dict[str, torch.Tensor], gen):
    """(network, inputs, original's logits) for the named index ``sets``:
    ``inputs[name](at)`` gives the network's input for the images ``sets[name][at]``
    (``at`` a slice or an index tensor) and ``logits[name]`` the frozen
    original's logits on all of them (they never change). Only the forget
    images go through the training augmentation, when ``p.augment``.

    Without augmentation and with frozen BatchNorm, the frozen blocks map each
    image to the same features at every step: they run once here, and each
    step runs only the trained blocks, a several-fold cheaper step. While those
    blocks still equal the original's, its logits come from its head on the
    same features.
    """
    data, teacher = ctx.data, ctx.original
    empty = torch.zeros(0, ctx.dataset.num_outputs, device=ctx.device)

    def teacher_logits(idx: torch.Tensor) -> torch.Tensor:
        if not len(idx):
            return empty
        return torch.cat([teacher(data.batch(b)[0]).float() for b in index_batches(idx, 256, shuffle=False)])

    if p.train_layers == "all" or p.augment or not p.freeze_bn:
        with torch.no_grad():
            logits = {name: teacher_logits(idx) for name, idx in sets.items()}

        def raw(name: str, idx: torch.Tensor):
            if name == "forget":
                return lambda at: data.batch(idx[at], augment=p.augment, gen=gen)[0]
            return lambda at: data.batch(idx[at])[0]

        return ctx.model, {name: raw(name, idx) for name, idx in sets.items()}, logits
    trunk, head = split_resnet(ctx.model, p.train_layers)
    trained = TRAIN_LAYERS[p.train_layers]
    ctx.model.eval()
    with torch.no_grad():
        features = {
            name: torch.cat([trunk(data.batch(b)[0]) for b in index_batches(idx, 256, shuffle=False)])
            for name, idx in sets.items()
            if len(idx)
        }
        same_frozen = all(
            torch.equal(a, b) for a, b in zip(_frozen_tensors(ctx.model, trained), _frozen_tensors(teacher, trained))
        )
        if same_frozen:
            teacher_head = split_resnet(teacher, p.train_layers)[1]
            logits = {
                name: torch.cat([teacher_head(f).float() for f in features[name].split(256)])
                if name in features
                else empty
                for name in sets
            }
        else:
            logits = {name: teacher_logits(idx) for name, idx in sets.items()}

    def cached(name: str):
        return lambda at: features[name][at]

    return head, {name: cached(name) for name in sets}, logits


def _frozen_tensors(model: torch.nn.Module, trained: tuple[str, ...]) -> list[torch.Tensor]:
    return [t for name, t in [*model.named_parameters(), *model.named_buffers()] if not name.startswith(trained)]


class LrSchedule:
    """Stage 1's learning-rate factor: constant or cosine to 0 over the budget;
    once the early-stopping rule fires, the rest of the decay is squeezed into
    ``settle`` steps, so the run still ends settled rather than mid-swing."""

    def __init__(self, total: int, cosine: bool):
        self.total, self.cosine = total, cosine
        self.fired_at, self.length, self.start = None, 0, 1.0

    @staticmethod
    def _cosine(done: int, length: int) -> float:
        return 0.5 * (1 + math.cos(math.pi * done / length))

    def factor(self, taken: int) -> float:
        if self.fired_at is not None:
            return self.start * self._cosine(taken - self.fired_at, self.length)
        return self._cosine(taken, self.total) if self.cosine else 1.0

    def settle(self, taken: int, steps: int) -> None:
        self.start = self.factor(taken)
        self.fired_at, self.length = taken, min(steps, self.total - taken)

    def finished(self, taken: int) -> bool:
        return self.fired_at is not None and taken - self.fired_at >= self.length


class PersonGate:
    """The ascent person by person, judged on the unlearning part of unseen.

    The audit asks of each forgotten person whether their mean logit-confidence
    looks like a never-seen person's. The gate asks the same of the model being
    unlearned, against the people of the unlearning part of unseen (never the
    evaluation part): a forgotten person's mean over their photos above the
    ``1 - q`` quantile of those people's means keeps the ascent; inside the
    band they get no more of it (the distillation alone holds them); below the
    ``q`` quantile (pushed conspicuously far) the sign turns and CE pulls them
    back. Measured ``checks`` times per epoch on the cached inputs, no grad.
    """

    MIN_REFERENCE_PEOPLE = 5  # fewer never-seen people give no band: everyone gets the ascent

    def __init__(self, forget_people: torch.Tensor, reference_people: torch.Tensor, q: float):
        self.forget_people, self.reference_people, self.q = forget_people, reference_people, q
        self.n_forget = int(forget_people.max()) + 1 if len(forget_people) else 0
        self.n_reference = int(reference_people.max()) + 1 if len(reference_people) else 0
        self.person_weight = torch.ones(self.n_forget, device=forget_people.device)
        self.counts: dict[str, int] = {}

    @staticmethod
    def _means(values: torch.Tensor, people: torch.Tensor, n: int) -> torch.Tensor:
        total = torch.zeros(n, device=values.device).index_add_(0, people, values)
        count = torch.zeros(n, device=values.device).index_add_(0, people, torch.ones_like(values))
        return total / count.clamp_min(1)

    @property
    def active(self) -> bool:
        return self.n_reference >= self.MIN_REFERENCE_PEOPLE and self.n_forget > 0

    def update(self, forget_phi: torch.Tensor, reference_phi: torch.Tensor) -> None:
        mine = self._means(forget_phi.float(), self.forget_people, self.n_forget)
        theirs = self._means(reference_phi.float(), self.reference_people, self.n_reference)
        lo, hi = torch.quantile(theirs, torch.tensor([self.q, 1 - self.q], device=theirs.device))
        self.person_weight = (mine > hi).float() - (mine < lo).float()

    def weights(self, at) -> torch.Tensor:
        """Per forget image in ``at``: +1 push out, 0 hold, -1 pull back."""
        return self.person_weight[self.forget_people[at]]

    def summary(self) -> dict:
        w = self.person_weight
        return {
            "people_above_band": int((w > 0).sum()),
            "people_in_band": int((w == 0).sum()),
            "people_below_band": int((w < 0).sum()),
        }


def _person_codes(identities, indices) -> torch.Tensor:
    """Small integer per distinct person of ``indices`` (dataset indices), per image."""
    _, codes = np.unique(identities[indices], return_inverse=True)
    return torch.as_tensor(codes.reshape(-1), dtype=torch.long)


class GuidedTargets:
    """The forget photos' targets, each person aimed at their never-seen level.

    A photo's target is its own original output with the true label's
    confidence lowered (or raised) by the amount that puts its person's mean
    confidence at the level the guide pool gives that person
    (:func:`~piu_engine.core.audit.guide.never_seen_levels`); every other part
    of the output stays the original's.

    The anchors on everyone else hold the model back, so a fixed target is
    reached only part of the way, and the further a person has to go the less
    of it they cover. With ``feedback`` > 0 each :meth:`steer` (on the model's
    current confidence) moves a person's target on by ``feedback`` times how
    far they still are from their level, in either direction, so each person
    settles at their level rather than short of it (an integral controller).
    """

    def __init__(
        self,
        levels: PersonLevels,
        own: torch.Tensor,
        y: torch.Tensor,
        codes: torch.Tensor,
        task: Task,
        feedback: float = 0.0,
    ):
        self.levels, self.own, self.y, self.codes, self.task, self.feedback = levels, own, y, codes, task, feedback
        people = list(levels.levels)
        self.n = len(people)
        self.level = torch.tensor([levels.levels[p] for p in people], device=own.device)
        phi = self._phi(own)
        means = PersonGate._means(phi, codes, self.n)
        self.drop = means - self.level  # per person
        self.extra = torch.zeros_like(self.drop)  # the feedback's move on top, per person
        self.target = lower_confidence(own, y, task, self.drop[codes])
        self.distance = self.drop.abs()  # per person: how far from their level, as last measured

    def _phi(self, logits: torch.Tensor) -> torch.Tensor:
        return logit_confidence(logits.float(), self.y, self.task).clamp(-PHI_CLIP, PHI_CLIP)

    def steer(self, logits: torch.Tensor) -> None:
        """Measure each person on the model's current ``logits`` (all forget photos) and move their target."""
        error = PersonGate._means(self._phi(logits), self.codes, self.n) - self.level
        self.distance = error.abs()
        if self.feedback > 0:
            self.extra = (self.extra + self.feedback * error).clamp(-PHI_CLIP, PHI_CLIP)
            self.target = lower_confidence(self.own, self.y, self.task, (self.drop + self.extra)[self.codes])

    def summary(self) -> dict:
        return {**self.levels.summary(), "guide_mean_distance": float(self.distance.mean())}


def guided_targets(
    ctx: UnlearnContext,
    own: torch.Tensor,
    forget_y: torch.Tensor,
    reference: torch.Tensor,
    reference_y: torch.Tensor,
    feedback: float = 0.0,
) -> GuidedTargets | None:
    """The forget photos' :class:`GuidedTargets`, or None when there are too few
    never-seen people to set levels. ``own`` holds the original's logits on the
    forget photos, ``reference`` its logits on the unlearning part of unseen."""
    ids, task = ctx.dataset.identities, ctx.data.task
    ref_names = np.unique(ids[ctx.splits.unseen_unlearn]).astype(str).tolist()
    ref_phi = logit_confidence(reference, reference_y, task).clamp(-PHI_CLIP, PHI_CLIP)
    ref_codes = _person_codes(ids, ctx.splits.unseen_unlearn).to(ref_phi.device)
    ref_means = PersonGate._means(ref_phi, ref_codes, len(ref_names)).tolist()
    people = np.unique(ids[ctx.splits.forget]).astype(str).tolist()
    found = never_seen_levels(ctx.guide, people, dict(zip(ref_names, ref_means)))
    if found is None:
        return None
    codes = _person_codes(ids, ctx.splits.forget).to(own.device)
    return GuidedTargets(found, own, forget_y, codes, task, feedback)


def _anchor_draws(ctx: UnlearnContext, p: PiuFrParams, total_steps: int) -> tuple[np.ndarray, torch.Tensor | None]:
    """(the retain images the anchor will use, per step the positions of its batch among them).

    The anchor takes a random retain batch each step; drawing the whole budget's
    batches up front means only the images drawn go through the frozen blocks
    (a one-person request draws a few hundred of thousands). None without an anchor."""
    retain = ctx.splits.retain
    if not p.retain_anchor or not len(retain):
        return retain[:0], None
    draws = np.random.default_rng([ctx.seed, 52]).integers(len(retain), size=(total_steps, p.batch_size))
    used, positions = np.unique(draws, return_inverse=True)
    return retain[used], torch.as_tensor(positions.reshape(draws.shape), dtype=torch.long, device=ctx.device)


def stage1(ctx: UnlearnContext, p: PiuFrParams) -> int:
    """Run stage 1; return the number of optimiser steps taken."""
    model, data = ctx.model, ctx.data
    partners = label_matched_partners(ctx.dataset, ctx.splits.forget, ctx.splits.unseen_unlearn, ctx.seed)
    gated = p.person_gate and p.forget_ascent > 0
    guided = p.guided and ctx.guide is not None
    slices = batch_slices(len(ctx.splits.forget), p.batch_size)
    steps = len(slices)
    anchored, anchor_draws = _anchor_draws(ctx, p, p.epochs * steps)
    sets = {
        "forget": ctx.indices(ctx.splits.forget),
        "unseen": ctx.indices(partners),
        "retain": ctx.indices(anchored),
        "reference": ctx.indices(ctx.splits.unseen_unlearn if gated or guided else ctx.splits.unseen_unlearn[:0]),
    }
    gen = ctx.generator(51)
    net, inputs, logits = _step_inputs(ctx, p, sets, gen)
    forget_x, unseen_x, retain_x = inputs["forget"], inputs["unseen"], inputs["retain"]
    teacher_logits, retain_logits = logits["unseen"], logits["retain"]
    n_forget = len(sets["forget"])
    forget_y, unseen_y = (data.labels.index_select(0, sets[k]) for k in ("forget", "unseen"))
    reference_y = data.labels.index_select(0, sets["reference"])
    # The ascent pushes a forget image's loss up to what the original gives never-seen
    # people of the same labels, and no further: unbounded, one small batch diverges.
    ceiling = task_loss(teacher_logits, unseen_y, data.task, reduction="none").float().mean()
    targets = None  # the label-matched partners' outputs are the targets, unless guided
    if guided:
        targets = guided_targets(ctx, logits["forget"], forget_y, logits["reference"], reference_y, p.guide_feedback)
        if targets is not None:
            ctx.notes["guide"] = targets.levels.summary()
    stopper = None
    if p.early_stop:
        stopper = EarlyStop(p, predictions_correct(teacher_logits, unseen_y, data.task), steps, ctx.seed)
    gate = None
    if gated:
        gate = PersonGate(
            _person_codes(ctx.dataset.identities, ctx.splits.forget).to(ctx.device),
            _person_codes(ctx.dataset.identities, ctx.splits.unseen_unlearn).to(ctx.device),
            p.person_gate_quantile,
        )
    ph = ctx.phase("piu-fr:stage1", p.epochs, steps)
    schedule = LrSchedule(p.epochs * steps, p.cosine)
    settle = round(p.early_stop_settle * steps)
    check_every = max(1, steps // p.early_stop_checks)
    reached = None

    # A request smaller than one batch gets the push per image a full batch gets, not a
    # full-batch step on a few photos (which wrecks everyone else's accuracy).
    scale = min(1.0, n_forget / p.batch_size) if p.scale_lr_to_request else 1.0
    lr = p.lr * scale
    # ... while the anchor on everyone else holds as firmly per step whatever the request's size.
    retain_weight = p.retain_anchor / scale

    taken_now = 0
    # With BatchNorm frozen every image's output is its own: the step's three kinds of
    # images share one forward pass (a few large calls are cheaper than many small ones).
    joint = p.freeze_bn

    def set_lr(taken: int) -> None:
        nonlocal taken_now
        taken_now = taken
        for group in opt.param_groups:
            group["lr"] = lr * schedule.factor(taken)

    def step(n: int) -> torch.Tensor:  # n: the step's number in its epoch, from 1
        sl = slices[n - 1]
        y = forget_y[sl]
        sign = -1.0 if (p.alternate and n % 2 == 0) else 1.0
        parts = [forget_x(sl)]
        if p.unseen_anchor:
            parts.append(unseen_x(sl))
        if anchor_draws is not None:
            at = anchor_draws[taken_now]
            parts.append(retain_x(at))
        with ph.autocast(ctx.device):
            outs = net(torch.cat(parts)).split([len(x) for x in parts]) if joint else [net(x) for x in parts]
            out = outs[0]
            forget_ce = task_loss(out, y, data.task, reduction="none")  # the ascent's and the rule's
            target = teacher_logits if targets is None else targets.target
            loss = sign * distill_kl(out, target[sl], p.temperature, data.task)
            if p.forget_ascent:
                pushed = torch.minimum(forget_ce, ceiling) if p.bounded_ascent else forget_ce
                if gate is not None:  # held people get none, people pushed too far are pulled back
                    w = gate.weights(sl)
                    pushed = torch.where(w > 0, pushed, forget_ce) * w
                loss = loss - p.forget_ascent * pushed.mean()
            if p.unseen_anchor:
                yu = unseen_y[sl]
                out_u = outs[1]
                loss = loss + p.unseen_anchor * distill_kl(out_u, teacher_logits[sl], p.temperature, data.task)
                if stopper is not None:
                    stopper.observe(
                        forget_ce,
                        task_loss(out_u, yu, data.task, reduction="none"),
                        predictions_correct(out_u, yu, data.task),
                    )
            if anchor_draws is not None:
                held = distill_kl(outs[-1], retain_logits[at], p.temperature, data.task)
                loss = loss + retain_weight * held
        return loss

    @torch.no_grad()
    def measure_gate() -> None:
        everyone = slice(None)
        gate.update(  # type: ignore[union-attr]
            logit_confidence(net(forget_x(everyone)).float(), forget_y, data.task),
            logit_confidence(net(inputs["reference"](everyone)).float(), reference_y, data.task),
        )

    @torch.no_grad()
    def steer() -> None:
        targets.steer(net(forget_x(slice(None))))  # type: ignore[union-attr]

    def check_rule(taken: int) -> dict | None:
        """The phase's 'done' metrics once the settle after the rule fired is over, else None."""
        nonlocal reached
        if gate is not None and gate.active and taken % check_every == 0:
            measure_gate()
        if targets is not None and taken % check_every == 0:
            steer()
        if stopper is not None and reached is None and taken % check_every == 0:
            reached = stopper.reached()
            if reached is not None:
                reached["rule_fired_at_step"] = taken
                schedule.settle(taken, settle)
        if not (schedule.finished(taken) or taken >= schedule.total):
            return None
        metrics = dict(reached or {})
        if reached is not None and taken < schedule.total:
            metrics["early_stopped_at_step"] = taken
        if gate is not None:
            metrics.update(gate.summary())
        if targets is not None:
            metrics.update(targets.summary())
            ctx.notes["guide"] = targets.summary()
        return metrics

    with trainable_only(model, TRAIN_LAYERS[p.train_layers]) as params:
        opt = sgd(params, lr, p.momentum)
        train_mode(model, p.freeze_bn)
        return train_steps(ph, model, opt, step, steps, before_step=set_lr, after_step=check_rule)


def run(ctx: UnlearnContext, p: PiuFrParams):
    stage1(ctx, p)
    if p.stage2:
        recipe = TrainRecipe(
            epochs=p.stage2_epochs, batch_size=p.batch_size, lr=p.stage2_lr, momentum=p.stage2_momentum
        )
        fit(ctx.model, ctx.data, ctx.splits.retain, recipe, ctx.seed + 5, ctx.control, phase="piu-fr:stage2")
    return ctx.model


RUNS = {
    "piu-fr": run,
    "piu-fr-paper": run,
}
