"""The default executor: each run in its own ``spawn``-ed worker process on
this machine, at most ``max_parallel`` at once and at most one per configured
device (``service.devices``)."""

from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_mod
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from piu_engine.service.executors.base import FINAL, ExecMessage, RunTask


@dataclass
class _Slot:
    task: RunTask
    process: Any
    queue: Any  # one queue per run: killing one worker mid-write cannot garble another's messages
    stop: Any
    device: str
    started: float
    ended: bool = False
    cancelled: bool = False


class LocalProcessExecutor:
    def __init__(self, max_parallel: int = 1, devices: tuple[str, ...] = (), engine_device: str = "auto"):
        self.ctx = mp.get_context("spawn")
        self.engine_device = engine_device
        self.devices = list(devices)
        self.max_parallel = min(max_parallel, len(self.devices)) if self.devices else max_parallel
        self.slots: dict[str, _Slot] = {}

    def free_slots(self) -> int:
        return self.max_parallel - len(self.slots)

    def _free_device(self) -> str:
        if not self.devices:
            return ""
        busy = {s.device for s in self.slots.values()}
        return next(d for d in self.devices if d not in busy)

    def submit(self, task: RunTask) -> str:
        if self.free_slots() <= 0:
            raise RuntimeError("executor is full")
        from piu_engine.service.executors import worker

        device = task.device or self._free_device()
        task.device = device
        queue, stop = self.ctx.Queue(), self.ctx.Event()
        proc = self.ctx.Process(
            target=worker.main, args=(task, queue, stop, os.getpid()), name=f"piu-worker-{task.batch_id}", daemon=False
        )
        proc.start()
        self.slots[task.batch_id] = _Slot(task, proc, queue, stop, device, time.time())
        return device

    def _drain(self, slot: _Slot, out: list[ExecMessage], wait: float = 0.0) -> None:
        try:
            while not slot.ended:
                kind, batch_id, payload = slot.queue.get(timeout=wait) if wait else slot.queue.get_nowait()
                out.append(ExecMessage(kind, batch_id, payload))
                slot.ended = kind in FINAL
        except queue_mod.Empty:
            pass
        except Exception as exc:  # noqa: BLE001 - a worker killed mid-write leaves a broken message
            out.append(ExecMessage("event", slot.task.batch_id, {"phase": "executor", "message": f"lost: {exc}"}))

    def poll(self, timeout: float) -> list[ExecMessage]:
        out: list[ExecMessage] = []
        deadline = time.monotonic() + timeout
        while True:
            for slot in self.slots.values():
                self._drain(slot, out)
            if out or time.monotonic() >= deadline or not self.slots:
                break
            time.sleep(0.05)
        # Reap finished processes; one that died without a final message crashed (or was cancelled).
        for batch_id, slot in list(self.slots.items()):
            if slot.process.is_alive():
                continue
            self._drain(slot, out, wait=0.5)  # its final message may still be in the pipe
            if not slot.ended:
                if slot.cancelled:
                    out.append(ExecMessage("cancelled", batch_id, "cancelled"))
                else:
                    out.append(
                        ExecMessage("crashed", batch_id, f"worker process exited with code {slot.process.exitcode}")
                    )
            slot.process.join(timeout=1)
            slot.queue.close()
            del self.slots[batch_id]
        return out

    def cancel(self, batch_id: str) -> None:
        slot = self.slots.get(batch_id)
        if slot and slot.process.is_alive():
            slot.cancelled = True
            slot.process.kill()

    def stop_all(self) -> None:
        for slot in self.slots.values():
            slot.stop.set()

    def kill_all(self) -> None:
        for slot in self.slots.values():
            if slot.process.is_alive():
                slot.process.kill()

    def running(self) -> list[str]:
        return list(self.slots)

    def describe(self) -> str:
        """Where runs go, without importing PyTorch (each worker resolves ``auto`` itself)."""
        if self.devices:
            return ", ".join(self.devices)
        if self.engine_device != "auto":
            return self.engine_device
        gpus = Path("/proc/driver/nvidia/gpus")
        if gpus.is_dir() and any(gpus.iterdir()):
            return "auto (an NVIDIA GPU is present: cuda)"
        return f"auto (no GPU: cpu, {os.cpu_count()} cores)"

    def close(self) -> None:
        """Nothing to release: worker processes end with their runs."""
