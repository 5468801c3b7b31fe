"""The face model: torchvision ResNet-18 from scratch, head sized to the task.

Weights come only from local files; PIU never asks torchvision to download.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from piu_engine.core.checkpoint import load_checkpoint


class WeightsNotFound(FileNotFoundError):
    pass


class BatchNorm(nn.BatchNorm2d):
    """BatchNorm2d that also trains on a single value per channel (one image
    whose feature map is 1x1, as small images reach in the last block): there
    is no batch statistic then, so it normalises with the running ones. A
    request to forget a person with one photo gives exactly such batches.
    Same parameters and buffers as BatchNorm2d, so checkpoints are unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] * x.shape[2] * x.shape[3] == 1:
            return F.batch_norm(
                x, self.running_mean, self.running_var, self.weight, self.bias, training=False, eps=self.eps
            )
        return super().forward(x)


def build_model(num_outputs: int, device: torch.device | str = "cpu") -> nn.Module:
    model = torchvision.models.resnet18(weights=None, num_classes=num_outputs, norm_layer=BatchNorm)
    model = model.to(device)
    if torch.device(device).type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model


def load_weights(
    model: nn.Module, path: str | Path, strict_head: bool = True, expected_sha256: str | None = None
) -> nn.Module:
    """Load a local state dict into ``model``.

    With ``strict_head=False`` a checkpoint whose classifier head has another
    shape (an ImageNet ResNet-18, say) initialises everything but ``fc``.
    """
    path = Path(path)
    if not path.exists():
        raise WeightsNotFound(
            f"model weights not found at {path}. PIU never downloads weights: copy a ResNet-18 "
            "state dict (torch.save(model.state_dict(), ...)) to that path, or fix the setting "
            "that names it (engine.init_weights in config.toml, or the command's FILE argument)."
        )
    state = load_checkpoint(path, expected_sha256)
    own = model.state_dict()
    if not strict_head:
        state = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        missing = [k for k in own if k not in state and not k.startswith("fc.")]
        if missing:
            raise ValueError(f"{path}: not a ResNet-18 state dict (missing {missing[:3]})")
        model.load_state_dict(state, strict=False)
        return model
    model.load_state_dict(state, strict=True)
    return model


def frozen_copy(model: nn.Module) -> nn.Module:
    """A copy in eval mode with no gradients: the teacher / reference model."""
    teacher = copy.deepcopy(model)
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def state_fingerprint(model: nn.Module) -> float:
    """A cheap scalar summary of the weights, for 'did it change' checks."""
    with torch.no_grad():
        return float(sum(p.double().abs().sum() for p in model.parameters()))


RESNET_STAGES = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")


def split_resnet(model: nn.Module, first_trained: str):
    """(trunk, head) of a torchvision ResNet at stage ``first_trained``.

    ``head(trunk(x)) == model(x)``. When everything before ``first_trained`` is
    frozen, its output for a fixed image never changes, so a method can run
    the trunk once per image and only the head per step.
    """
    k = RESNET_STAGES.index(first_trained)

    def trunk(x: torch.Tensor) -> torch.Tensor:
        for name in RESNET_STAGES[:k]:
            x = getattr(model, name)(x)
        return x

    def head(h: torch.Tensor) -> torch.Tensor:
        for name in RESNET_STAGES[k:]:
            h = getattr(model, name)(h)
        return model.fc(torch.flatten(model.avgpool(h), 1))

    return trunk, head
