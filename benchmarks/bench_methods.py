"""Training-step time of every registered method relative to ``source_only``, measured in the same run.

Usage: ``python benchmarks/bench_methods.py [--size 32] [--batch 4] [--steps 10] [--widths 8,16,32]``.
Ratios, not absolute times, are the result: the machine is shared, so absolute times drift between runs.
Each method is warmed up for two steps, then the median of ``--steps`` timed steps is reported.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import voxuda  # noqa: E402
from voxuda.api import build_component  # noqa: E402
from voxuda.methods.base import SourceBatch, TargetBatch, TrainContext  # noqa: E402


def blobs(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    axis = torch.arange(size, dtype=torch.float32)
    z, y, x = torch.meshgrid(axis, axis, axis, indexing="ij")
    vols, labels = [], []
    for _ in range(n):
        c = size * (0.35 + 0.3 * torch.rand(3, generator=g))
        mask = ((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2) <= (size / 5) ** 2
        vols.append(mask.float() + 0.5 * torch.randn(size, size, size, generator=g))
        labels.append(mask.long())
    return torch.stack(vols).unsqueeze(1), torch.stack(labels)


def time_method(name: str, widths: list[int], size: int, batch: int, steps: int) -> float:
    torch.manual_seed(0)
    method = build_component("method", {"name": name, "backbone": {"name": "unet3d", "widths": widths}})
    s_vol, s_lab = blobs(batch, size, 1)
    t_vol, t_lab = blobs(batch, size, 2)
    generator = torch.Generator().manual_seed(0)
    method.on_train_start(TrainContext(
        total_steps=steps + 2, device=torch.device("cpu"), generator=generator,
        sample_target=lambda n: t_vol[torch.randint(0, batch, (n,), generator=generator)],
    ))
    optimizer = torch.optim.Adam(list(method.trainable_parameters()), lr=1e-3)
    source = SourceBatch(s_vol, s_lab)
    target = TargetBatch(t_vol, t_lab if method.uses_target_labels else None)
    times = []
    for step in range(steps + 2):
        start = time.perf_counter()
        out = method.training_step(source, target, step)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        method.on_after_optimizer_step(step)
        if step >= 2:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--widths", default="8,16,32", help="U-Net widths, comma separated")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--methods", default="", help="comma-separated subset (default: all registered)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    widths = [int(w) for w in args.widths.split(",")]
    names = [spec.name for spec in voxuda.list_components("method")]
    if args.methods:
        names = [n for n in names if n in args.methods.split(",") or n == "source_only"]
    names.sort(key=lambda n: n != "source_only")
    results: dict[str, float | str] = {}
    for name in names:
        try:
            results[name] = time_method(name, widths, args.size, args.batch, args.steps)
        except Exception as exc:  # a method whose parts are not installed yet: report, keep going
            results[name] = f"skipped ({type(exc).__name__}: {' '.join(str(exc).split())[:80]})"
        print(f"  measured {name}", file=sys.stderr, flush=True)
    base = results.get("source_only")
    print(f"step time per method, U-Net {widths}, batch {args.batch} x {args.size}^3, "
          f"{args.threads} threads, median of {args.steps}")
    print(f"{'method':<16} {'ms/step':>9} {'x source_only':>14}")
    for name, value in results.items():
        if isinstance(value, str):
            print(f"{name:<16} {value}")
        else:
            ratio = value / base if isinstance(base, float) else float("nan")
            print(f"{name:<16} {1000 * value:9.1f} {ratio:14.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
