"""Training-step throughput: PIU's loop against a bare PyTorch loop.

Both train the same ResNet-18 with the same batch size on the same images
already in memory. PIU's loop adds what the product really does per step:
index-gather from the uint8 store, conversion, on-device augmentation. Target:
at least 90% of bare. Prints a table, the data path's share of a step, and
with --profile torch.profiler's top operators of PIU's loop; --json writes
the numbers.

    python benchmarks/throughput.py [--size 32] [--batch 64] [--steps 30] [--profile] [--json out.json]
"""

from __future__ import annotations

import argparse
import time

import torch
from piu_engine.core.config import EngineConfig
from piu_engine.core.data.synthetic import generate
from piu_engine.core.data.types import Task
from piu_engine.core.device import pick_device
from piu_engine.core.losses import task_loss
from piu_engine.core.model import build_model
from piu_engine.core.tensors import TensorData, index_batches, make_generator, to_index

import _common  # noqa: F401  (puts the repo on sys.path)


def timed(fn, steps: int, device) -> float:
    fn(3)  # warm-up: kernel selection, allocator
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn(steps)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--images", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--profile", action="store_true", help="print torch.profiler's top operators of PIU's loop")
    ap.add_argument("--json")
    args = ap.parse_args()
    device = pick_device(EngineConfig())  # as the product picks it (flush-denormal settings included)
    amp = device.type == "cuda"
    ds = generate(args.images // 8, 0, 1, 8, args.size, seed=0)
    data = TensorData.from_dataset(ds, device)
    x_bare = data.images.float().div(255)
    if data.channels_last:
        x_bare = x_bare.contiguous(memory_format=torch.channels_last)
    y_bare = data.labels
    idx_all = to_index(range(len(ds)), device)

    def make_step():
        torch.manual_seed(0)
        model = build_model(ds.num_outputs, device)
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def step(x, y):
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
                loss = task_loss(model(x), y, Task.MULTICLASS)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        return step

    def bare(steps: int) -> None:
        step = make_step()
        g = torch.Generator(device=device).manual_seed(0)
        for _ in range(steps):
            b = torch.randint(0, len(ds), (args.batch,), generator=g, device=device)
            step(x_bare[b], y_bare[b])

    def piu(steps: int) -> None:
        step = make_step()
        gen = make_generator(device, 0)
        batches = iter(())
        for _ in range(steps):
            b = next(batches, None)
            if b is None or len(b) < args.batch:
                batches = index_batches(idx_all, args.batch, True, gen)
                b = next(batches)
            x, y = data.batch(b, augment=True, gen=gen)
            step(x, y)

    def data_path(steps: int) -> None:
        """PIU's per-step data work alone: gather, convert, augment."""
        gen = make_generator(device, 0)
        for _ in range(steps):
            b = torch.randint(0, len(ds), (args.batch,), generator=gen, device=device)
            data.batch(b, augment=True, gen=gen)

    rows, results = [], {}
    bare_t = min(timed(bare, args.steps, device) for _ in range(args.repeats))
    piu_t = min(timed(piu, args.steps, device) for _ in range(args.repeats))
    data_t = min(timed(data_path, args.steps, device) for _ in range(args.repeats))
    for name, t in (("bare PyTorch (no augmentation)", bare_t), ("PIU loop (store + augmentation)", piu_t)):
        ips = args.steps * args.batch / t
        results[name] = ips
        rows.append([name, f"{ips:.0f}", f"{ips / (args.steps * args.batch / bare_t):.2f}"])
    _common.print_table(
        ["loop", "images/s", "vs bare"],
        rows,
        f"Training throughput, ResNet-18, {args.size}px, batch {args.batch}, {device} ({_common.machine()})",
    )
    print(
        f"data path alone (gather, convert, augment): {1000 * data_t / args.steps:.1f} ms per step, "
        f"{100 * data_t / piu_t:.0f}% of PIU's step; model step {1000 * bare_t / args.steps:.1f} ms"
    )
    ratio = bare_t / piu_t
    print(f"target PIU loop >= 90% of bare: {ratio:.2f} -> {'met' if ratio >= 0.9 else 'NOT met'}")
    if args.profile:
        activities = [torch.profiler.ProfilerActivity.CPU]
        if device.type == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        with torch.profiler.profile(activities=activities) as prof:
            piu(max(5, args.steps // 3))
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    _common.write_json(
        args.json,
        {
            "device": str(device),
            "machine": _common.machine(),
            "size": args.size,
            "batch": args.batch,
            "steps": args.steps,
            "images_per_second": results,
            "data_path_seconds_per_step": data_t / args.steps,
            "ratio": ratio,
        },
    )


if __name__ == "__main__":
    main()
