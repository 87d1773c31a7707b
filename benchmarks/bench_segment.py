"""Benchmark of whole-tomogram segmentation on the CPU: throughput and peak memory.

Generates a 512 x 512 x 200 float32 tomogram (bright blobs in noise, 10 Å voxels) as an MRC written plane band
by plane band in a temporary folder, segments it with an untrained default-size 3D U-Net (16-32-64-128, the
throughput of a trained one is the same) at the ``voxuda segment`` defaults (patch 32, overlap 0.5, batch 4),
and reports voxels per second and the process's peak resident memory as the OS counts it (``VmHWM`` from
/proc/self/status, and ``ru_maxrss``). The claim under test: peak memory stays under 2 GiB whatever the
tomogram's depth, because only a band of ``patch`` planes is ever held.

    python benchmarks/bench_segment.py                 # the full benchmark (minutes on 2 cores)
    python benchmarks/bench_segment.py --shape 64 128 128 --json   # a quick check
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

LIMIT_BYTES = 2 * 1024**3


def peak_rss_bytes() -> dict[str, int]:
    """Peak resident set size from the OS: VmHWM (Linux) and ru_maxrss (KiB on Linux)."""
    out = {"ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                out["VmHWM"] = int(line.split()[1]) * 1024
    except OSError:
        pass
    return out


def write_tomogram(path: Path, shape: tuple[int, int, int], seed: int = 0, band: int = 16) -> None:
    """A float32 MRC of ``shape`` written band by band (never whole in memory)."""
    from voxuda.data.mrc import VolumeInfo
    from voxuda.segment.writer import MRCPlaneWriter

    rng = np.random.default_rng(seed)
    writer = MRCPlaneWriter(path, shape, np.float32, VolumeInfo.isotropic(10.0))
    try:
        for z0 in range(0, shape[0], band):
            n = min(band, shape[0] - z0)
            planes = rng.standard_normal((n, *shape[1:]), dtype=np.float32)
            planes[:, ::24, ::24] += 5.0  # a lattice of bright points, so the data is not pure noise
            writer.write(z0, planes)
        writer.commit()
    except BaseException:
        writer.abort()
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[200, 512, 512], metavar=("Z", "Y", "X"))
    parser.add_argument("--patch", type=int, default=32)
    parser.add_argument("--overlap", type=float, default=0.5)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--probabilities", action="store_true", help="also write the probability map")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    import torch

    from voxuda.api import build_component
    from voxuda.backbones.blocks import LogitsOnly
    from voxuda.segment import segment_tomogram

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = LogitsOnly(build_component("backbone", "unet3d")).eval()
    shape = tuple(args.shape)
    with tempfile.TemporaryDirectory(prefix="bench_segment_") as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        write_tomogram(folder / "tomo.mrc", shape)  # type: ignore[arg-type]
        generate_s = time.perf_counter() - t0
        after_generate = peak_rss_bytes()
        result = segment_tomogram(
            model, folder / "tomo.mrc", folder / "labels.mrc",
            probabilities=folder / "prob.mrc" if args.probabilities else None,
            patch=args.patch, overlap=args.overlap, batch_size=args.batch, progress=not args.json,
        )
    peak = peak_rss_bytes()
    record = {
        "shape_zyx": list(shape),
        "patch": args.patch,
        "overlap": args.overlap,
        "batch": args.batch,
        "threads": args.threads,
        "windows": result.windows,
        "seconds": round(result.seconds, 2),
        "voxels_per_second": round(result.voxels_per_second),
        "windows_per_second": round(result.windows / result.seconds, 2),
        "generate_seconds": round(generate_s, 2),
        "peak_rss_after_generate_MiB": round(max(after_generate.values()) / 2**20, 1),
        "peak_rss_MiB": {k: round(v / 2**20, 1) for k, v in peak.items()},
        "under_2GiB": max(peak.values()) < LIMIT_BYTES,
        "torch": torch.__version__,
    }
    if args.json:
        print(json.dumps(record))
    else:
        for key, value in record.items():
            print(f"{key:>28}: {value}")
    return 0 if record["under_2GiB"] else 1


if __name__ == "__main__":
    sys.exit(main())
