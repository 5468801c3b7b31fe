"""Task losses shared by every method: cross-entropy for classes, BCE for
attributes, and the temperature-scaled distillation KL used by SCRUB,
PIU-FR and Bad Teacher."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from piu_engine.core.data.types import Task


def task_loss(logits: torch.Tensor, y: torch.Tensor, task: Task, reduction: str = "mean") -> torch.Tensor:
    logits = logits.float()
    if task is Task.MULTILABEL:
        loss = F.binary_cross_entropy_with_logits(logits, y.float(), reduction="none").mean(1)
    else:
        loss = F.cross_entropy(logits, y, reduction="none")
    return loss.mean() if reduction == "mean" else loss


def distill_kl(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float, task: Task
) -> torch.Tensor:
    """T^2 * KL(teacher || student) on temperature-softened outputs, batch mean.

    Multi-label heads are treated as independent Bernoulli outputs per attribute.
    """
    t = temperature
    s, te = student_logits.float() / t, teacher_logits.float() / t
    if task is Task.MULTILABEL:
        p = torch.sigmoid(te)
        log_q1, log_q0 = F.logsigmoid(s), F.logsigmoid(-s)
        log_p1, log_p0 = F.logsigmoid(te), F.logsigmoid(-te)
        kl = p * (log_p1 - log_q1) + (1 - p) * (log_p0 - log_q0)
        return kl.sum(1).mean() * t * t
    return F.kl_div(F.log_softmax(s, dim=1), F.log_softmax(te, dim=1), reduction="batchmean", log_target=True) * t * t


def predictions_correct(logits: torch.Tensor, y: torch.Tensor, task: Task) -> torch.Tensor:
    """Per-sample accuracy: 1/0 for classes, mean attribute accuracy for multi-label."""
    if task is Task.MULTILABEL:
        return ((logits.float() > 0).float() == y.float()).float().mean(1)
    return (logits.argmax(1) == y).float()


def logit_confidence(logits: torch.Tensor, y: torch.Tensor, task: Task) -> torch.Tensor:
    """Per sample, LiRA's membership statistic: the logit-scaled confidence on the
    true label, log p_y - log(1 - p_y), computed stably (logit_y minus logsumexp
    of the other logits); for attributes the signed logit averaged over them."""
    z = logits.float()
    if task is Task.MULTILABEL:
        return (z * (2 * y.float() - 1)).mean(1)
    true = z.gather(1, y.view(-1, 1)).squeeze(1)
    others = z.scatter(1, y.view(-1, 1), float("-inf"))
    return true - torch.logsumexp(others, 1)


def lower_confidence(logits: torch.Tensor, y: torch.Tensor, task: Task, by: torch.Tensor) -> torch.Tensor:
    """``logits`` moved so that :func:`logit_confidence` falls by exactly ``by`` per
    sample (negative: rises) and nothing else about the output changes: for classes
    the true label's logit moves, the others keep their order and gaps; for
    attributes each one's logit moves towards the wrong side."""
    z = logits.float().clone()
    by = by.float().to(z.device)
    if task is Task.MULTILABEL:
        return z - by.view(-1, 1) * (2 * y.float() - 1)
    return z.scatter_add(1, y.view(-1, 1), -by.view(-1, 1))
