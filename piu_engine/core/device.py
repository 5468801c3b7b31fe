"""Pick the compute device: CUDA when present, else CPU, unless config says otherwise."""

from __future__ import annotations

import torch

from piu_engine.common.errors import ConfigError
from piu_engine.core.config import EngineConfig


def pick_device(engine: EngineConfig) -> torch.device:
    # Denormal floats (common once an ascent step shrinks activations) make CPU
    # kernels crawl; flushing them to zero changes no result that matters.
    torch.set_flush_denormal(True)
    if engine.num_threads:
        torch.set_num_threads(engine.num_threads)
    if engine.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if engine.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"engine.device: {engine.device!r} asked for, but no CUDA GPU is available")
    return torch.device(engine.device)


def describe(device: torch.device) -> str:
    """Human name of the device, shown in tables, reports and the TUI."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def use_amp(engine: EngineConfig, device: torch.device) -> bool:
    return engine.amp and device.type == "cuda"
