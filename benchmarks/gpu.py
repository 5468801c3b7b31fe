"""The engine at the published scale on one CUDA GPU.

128 px images, a synthetic set shaped like MUFAC (about 10,000 training
images; the `paper` preset: 1,000 train / 150 test / 300 unseen identities x
10 photos), the published 30-epoch recipe, every method, and PIU-FR again
without early stopping (what the rule saves); channels-last, bf16
autocast, pinned host memory and on-GPU augmentation. Prints the results
table plus GPU utilisation sampled with nvidia-smi. Target: under 8 minutes
on one H100-class GPU.

    python benchmarks/gpu.py [--methods ...] [--json out.json]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import threading
import time

import torch
from piu_engine.commands.bench import COLUMNS, fmt
from piu_engine.core.bench import run_bench
from piu_engine.core.config import BenchConfig, parse

import _common


class UtilisationSampler(threading.Thread):
    """Samples GPU utilisation (%) every half second while the benchmark runs."""

    def __init__(self):
        super().__init__(daemon=True)
        self.samples: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        if not shutil.which("nvidia-smi"):
            return
        while not self.stop.is_set():
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
            )
            if out.returncode == 0 and out.stdout.strip():
                self.samples.append(float(out.stdout.split()[0]))
            self.stop.wait(0.5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default=",".join(BenchConfig.methods), help="default: every method")
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--cache-dir", default="/tmp/piu-gpu-cache")
    ap.add_argument("--device", default="cuda", help="cuda (default); cpu only to check the script itself")
    ap.add_argument("--no-full-budget", action="store_true", help="skip the PIU-FR row without early stopping")
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("benchmarks/gpu.py needs a CUDA GPU; none is visible to PyTorch.")
    cfg = parse(
        {"engine": {"device": args.device, "amp": True, "cache_dir": args.cache_dir}, "bench": {"preset": args.preset}}
    )
    sampler = UtilisationSampler()
    sampler.start()
    start = time.perf_counter()
    result = run_bench(
        cfg,
        "synthetic",
        args.preset,
        args.methods.split(","),
        1,
        on_row=lambda r: print(f"  {r['method']:<18} {r['seconds']:7.1f} s  NoMUS {r['nomus']:.3f}", flush=True),
    )
    rows = list(result.methods)
    if not args.no_full_budget and "piu-fr" in args.methods.split(","):
        rows += _common.full_budget_rows(cfg, "synthetic", args.preset, 1, rows)
    total = time.perf_counter() - start
    sampler.stop.set()
    sampler.join()
    table = [[fmt(r.get(k), k) for k, _ in COLUMNS] for r in rows]
    _common.print_table(
        [label for _, label in COLUMNS], table, f"GPU benchmark: synthetic / preset {result.preset} / {result.device}"
    )
    util = sum(sampler.samples) / len(sampler.samples) if sampler.samples else float("nan")
    print(
        f"total wall-clock {total:.0f} s (target < 480 s); mean GPU utilisation {util:.0f}% "
        f"over {len(sampler.samples)} samples; peak GPU memory "
        f"{torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0:.1f} GiB"
    )
    _common.write_json(
        args.json,
        {
            "machine": _common.machine(),
            "device": result.device,
            "total_seconds": total,
            "gpu_utilisation_mean": util,
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
