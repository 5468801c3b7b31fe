"""Everything one run needs, set up once: config, device, dataset tensors,
the training recipe, fresh models and the (cached) original model.

The bench command and the service's worker both start here, so a method is
set up, timed and evaluated the same way wherever it runs.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from piu_engine.common.events import EventSink, never_stop, no_events
from piu_engine.common.fsio import atomic_write_bytes, sha256_file
from piu_engine.core.audit.reference import ReferencePool
from piu_engine.core.checkpoint import save_checkpoint
from piu_engine.core.config import Config
from piu_engine.core.data import load_dataset
from piu_engine.core.data.splits import UnlearningSplits
from piu_engine.core.data.types import FaceDataset, Split
from piu_engine.core.device import describe, pick_device, use_amp
from piu_engine.core.evaluate import evaluate
from piu_engine.core.methods.base import UnlearnContext
from piu_engine.core.methods.registry import get_method
from piu_engine.core.model import build_model, frozen_copy, load_weights
from piu_engine.core.presets import Preset, TrainRecipe, get_preset
from piu_engine.core.tensors import TensorData
from piu_engine.core.train import RunControl, fit


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))


@dataclass
class MethodRun:
    method: str
    model: nn.Module
    seconds: float
    params: dict
    notes: dict = field(default_factory=dict)  # what the method found worth reporting (e.g. the guide it used)


class Workbench:
    def __init__(
        self,
        cfg: Config,
        dataset: str,
        preset: str | Preset = "",
        on_event: EventSink = no_events,
        should_stop=never_stop,
    ):
        self.cfg = cfg
        self.dataset_name = dataset
        self.dataset_cfg = cfg.dataset(dataset)
        self.preset = preset if isinstance(preset, Preset) else get_preset(preset or cfg.bench.preset)
        self.device = pick_device(cfg.engine)
        self.cache_dir = cfg.resolve(cfg.engine.cache_dir)
        self.ds: FaceDataset = load_dataset(self.dataset_cfg, self.preset, self.cache_dir, name=dataset)
        self.data = TensorData.from_dataset(self.ds, self.device)
        self.control = RunControl(on_event, should_stop, use_amp(cfg.engine, self.device))

    @property
    def device_name(self) -> str:
        return describe(self.device)

    @property
    def recipe(self) -> TrainRecipe:
        return self.preset.recipes[self.dataset_cfg.kind]

    def new_model(self, seed: int) -> nn.Module:
        seed_everything(seed)
        model = build_model(self.ds.num_outputs, self.device)
        if self.cfg.engine.init_weights:
            load_weights(model, self.cfg.resolve(self.cfg.engine.init_weights), strict_head=False)
        return model

    def load_model(self, path: Path, sha256: str | None = None) -> nn.Module:
        model = build_model(self.ds.num_outputs, self.device)
        return load_weights(model, path, strict_head=True, expected_sha256=sha256)

    # -- the original model -------------------------------------------------
    def _original_key(self, seed: int) -> str:
        h = hashlib.sha256()
        h.update(
            json.dumps(
                {
                    "dataset": asdict(self.dataset_cfg),
                    "preset": self.preset.name,
                    "recipe": asdict(self.recipe),
                    "seed": seed,
                    "device": self.device.type,
                    "amp": self.control.amp,
                    "torch": torch.__version__,
                    "init": sha256_file(self.cfg.resolve(self.cfg.engine.init_weights))
                    if self.cfg.engine.init_weights
                    else "",
                },
                sort_keys=True,
                default=str,
            ).encode()
        )
        h.update(self.ds.images.numpy().tobytes())
        h.update(self.ds.labels.numpy().tobytes())
        h.update("\n".join(self.ds.identities.tolist()).encode())
        h.update("\n".join(self.ds.splits.tolist()).encode())
        return h.hexdigest()[:32]

    def original(self, seed: int) -> tuple[nn.Module, float, bool]:
        """The model trained on the full train split: (model, training seconds, from cache)."""
        key = self._original_key(seed)
        path = self.cache_dir / "models" / f"original-{key}.pt"
        meta = path.with_suffix(".json")
        if path.exists() and meta.exists():
            info = json.loads(meta.read_text())
            return self.load_model(path, info["sha256"]), float(info["seconds"]), True
        model = self.new_model(seed)
        seconds = fit(
            model, self.data, self.ds.indices(Split.TRAIN), self.recipe, seed, self.control, phase="train-original"
        )
        sha = save_checkpoint(model.state_dict(), path)
        atomic_write_bytes(meta, json.dumps({"seconds": seconds, "sha256": sha}).encode())
        return model, seconds, False

    # -- methods ----------------------------------------------------------------
    def run_method(
        self,
        name: str,
        original: nn.Module,
        splits: UnlearningSplits,
        seed: int,
        overrides: dict | None = None,
        guide: ReferencePool | None = None,
    ) -> MethodRun:
        spec = get_method(name)
        merged = {**self.cfg.methods.get(name, {}), **(overrides or {})}
        params = spec.make_params(merged)
        seed_everything(seed)
        model = copy.deepcopy(original)
        model.train()
        ctx = UnlearnContext(
            model=model,
            original=frozen_copy(original),
            data=self.data,
            dataset=self.ds,
            splits=splits,
            recipe=self.recipe,
            new_model=lambda: self.new_model(seed + 17),
            control=self.control,
            seed=seed,
            guide=guide,
        )
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        result = spec.run(ctx, params)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - start
        result.eval()
        return MethodRun(name, result, seconds, asdict(params), dict(ctx.notes))

    def evaluate(self, model: nn.Module, splits: UnlearningSplits, seed: int = 0) -> dict:
        return evaluate(model, self.data, splits, self.cfg.metrics, self.ds.identities, seed)
