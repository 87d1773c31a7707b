"""Sliding-window inference over a :class:`PlaneSource`, accumulating only the z-band windows touch.

Windows are visited z-row by z-row. All windows of one row start at the same ``z``; once a row is done, the
planes above the next row's start can receive no more contributions, so they are normalised (weighted sum of
probabilities / sum of weights) and handed to the sink. The accumulators therefore hold ``patch`` planes of
``K + 1`` float32 values: memory is ``(K + 1) * patch * H * W * 4`` bytes whatever the tomogram's depth
(about 100 MB for a 512 x 512 section, two classes, 32-voxel windows).

Class probabilities (softmax) are blended rather than logits, so a window with an unusually scaled input
cannot dominate its neighbours; for a model that gives the same logits in every window, both are the same.
Axes shorter than a window are padded by mirroring (``symmetric``) up to the window size and the padding is
dropped from the output, so tomograms smaller than one patch work.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch

from voxuda.segment.source import PlaneSource
from voxuda.segment.windows import importance_map, window_starts
from voxuda.segment.writer import PlaneSink

__all__ = ["sliding_window", "count_windows"]


def count_windows(shape: tuple[int, int, int], patch: int, overlap: float) -> int:
    return int(np.prod([len(window_starts(n, patch, overlap)) for n in shape]))


def _batches(items: list[tuple[int, int]], size: int) -> Iterator[list[tuple[int, int]]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _pad_to(block: np.ndarray, patch: int) -> np.ndarray:
    pads = [(0, max(0, patch - n)) for n in block.shape]
    if not any(p for _, p in pads):
        return block
    return np.pad(block, pads, mode="symmetric")


def sliding_window(
    source: PlaneSource,
    predictor: Callable[[torch.Tensor], torch.Tensor],
    sink: PlaneSink,
    *,
    patch: int = 32,
    overlap: float = 0.5,
    batch_size: int = 4,
    device: torch.device | str = "cpu",
    preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
    importance: str = "gaussian",
    progress: Callable[[int], object] | None = None,
) -> None:
    """Predict class probabilities for every voxel of ``source`` and stream them to ``sink`` in z order.

    ``predictor`` maps ``(N, 1, p, p, p)`` to logits ``(N, K, p, p, p)``; ``progress(n)`` is called after
    each batch with the number of windows done in it.
    """
    depth, height, width = source.shape
    device = torch.device(device)
    zs = window_starts(depth, patch, overlap)
    ys = window_starts(height, patch, overlap)
    xs = window_starts(width, patch, overlap)
    weights = importance_map(patch, importance)
    band = min(patch, depth)
    acc: np.ndarray | None = None  # (K, band, H, W), allocated once K is known
    wsum = np.zeros((band, height, width), dtype=np.float32)
    base = 0  # z index of acc[:, 0]
    positions = [(y, x) for y in ys for x in xs]
    for z in zs:
        if acc is not None and z > base:
            _flush(acc, wsum, base, z, sink)
            shift = z - base
            acc[:, : band - shift] = acc[:, shift:]
            acc[:, band - shift:] = 0.0
            wsum[: band - shift] = wsum[shift:]
            wsum[band - shift:] = 0.0
            base = z
        z1 = min(z + patch, depth)
        block = source.read_planes(z, z1)
        for group in _batches(positions, batch_size):
            raw = np.stack([_pad_to(block[:, y:y + patch, x:x + patch], patch) for y, x in group])
            inputs = torch.from_numpy(raw).unsqueeze(1)
            if preprocess is not None:
                inputs = preprocess(inputs)
            with torch.inference_mode():
                logits = predictor(inputs.to(device))
                probs = torch.softmax(logits.float(), dim=1).cpu().numpy()
            if acc is None:
                acc = np.zeros((probs.shape[1], band, height, width), dtype=np.float32)
            for (y, x), p in zip(group, probs):
                dz, dy, dx = z1 - z, min(patch, height - y), min(patch, width - x)
                w = weights[:dz, :dy, :dx]
                acc[:, :dz, y:y + dy, x:x + dx] += p[:, :dz, :dy, :dx] * w
                wsum[:dz, y:y + dy, x:x + dx] += w
            if progress is not None:
                progress(len(group))
        source.release()
    assert acc is not None
    _flush(acc, wsum, base, depth, sink)
    sink.finish()


def _flush(acc: np.ndarray, wsum: np.ndarray, base: int, end: int, sink: PlaneSink) -> None:
    """Hand planes ``base <= z < end`` (all contributions received) to the sink."""
    n = end - base
    if n <= 0:
        return
    weight = wsum[:n]
    if np.any(weight <= 0):
        raise RuntimeError("a voxel received no window; window placement is broken")
    sink.put(base, acc[:, :n] / weight)
