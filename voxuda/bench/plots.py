"""PNG figures of a benchmark: Dice bars per target, training curves, example slices.

matplotlib runs on the Agg backend (no display, safe in CI and on servers); figures are saved atomically.
Each function takes plain data (rows, metric lists, numpy arrays), so it is testable without training.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from voxuda.bench.io import save_figure
from voxuda.bench.results import Row
from voxuda.bench.stats import paired_t_interval


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def bar_chart(rows: Sequence[Row], target: str, path: Path) -> Path:
    """Dice (mean ± std over seeds) of every row on one target, grouped by run, one bar per test input."""
    plt = _plt()
    labels = list(dict.fromkeys(r.label for r in rows))
    dens = list(dict.fromkeys(r.input_denoiser for r in rows))
    width = 0.8 / max(len(dens), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(labels) + 2), 4.0))
    x = np.arange(len(labels))
    for j, den in enumerate(dens):
        means, stds = [], []
        for lab in labels:
            match = [r for r in rows if r.label == lab and r.input_denoiser == den]
            means.append(match[0].dice_mean if match else math.nan)
            stds.append(match[0].dice_std if match else 0.0)
        ax.bar(x + (j - (len(dens) - 1) / 2) * width, means, width, yerr=stds, capsize=3,
               label=f"test input: {den}")
    flagged = {r.label for r in rows if r.flag}
    names = [lab + ("\n(upper bound)" if lab in flagged else "") for lab in labels]
    ax.set_xticks(x, names, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("target Dice (test split)")
    ax.set_ylim(0, 1)
    ax.set_title(f"target domain {target}")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    out = save_figure(fig, path, dpi=110)
    plt.close(fig)
    return out


def _series(records: Sequence[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for rec in records:
        value = rec.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and "step" in rec:
            xs.append(float(rec["step"]))
            ys.append(float(value))
    return xs, ys


def _smooth(ys: Sequence[float], n: int = 10) -> np.ndarray:
    arr = np.asarray(ys, dtype=float)
    if len(arr) < n:
        return arr
    kernel = np.ones(n) / n
    return np.convolve(np.pad(arr, (n - 1, 0), mode="edge"), kernel, mode="valid")


def training_curves(runs: Mapping[str, Sequence[Mapping[str, Any]]], path: Path, *, title: str = "",
                    loss_key: str = "loss",
                    oracle_scores: Mapping[str, Mapping[int, float]] | None = None) -> Path:
    """Training loss (smoothed) and, at evaluation points, the selection criterion's score (solid) and the
    target_oracle score used for the selection regret (dashed), one colour per run."""
    plt = _plt()
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(11, 4))
    for i, (name, recs) in enumerate(runs.items()):
        colour = f"C{i % 10}"
        xs, ys = _series([r for r in recs if "event" not in r], loss_key)
        if xs:
            ax_loss.plot(xs, _smooth(ys), label=name, lw=1.2, color=colour)
        val = [r for r in recs if r.get("event") == "validation"]
        vx, vy = _series(val, "score")
        if vx:
            criterion = val[0].get("criterion", "")
            ax_val.plot(vx, vy, marker="o", ms=3, color=colour, label=f"{name}: {criterion}")
        oracle = (oracle_scores or {}).get(name, {})
        if oracle:
            steps = sorted(oracle)
            ax_val.plot(steps, [oracle[s] for s in steps], ls="--", marker="x", ms=3, color=colour,
                        label=f"{name}: target_oracle (regret only)")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel(f"{loss_key} (moving average)")
    ax_loss.set_yscale("log")
    ax_val.set_xlabel("step")
    ax_val.set_ylabel("validator score")
    for ax in (ax_loss, ax_val):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    out = save_figure(fig, path, dpi=100)
    plt.close(fig)
    return out


def seed_gap_chart(panels: Mapping[str, Mapping[str, Sequence[float]]], path: Path, *,
                   bar: float | None = None, title: str = "") -> Path:
    """The gap closed per seed, one panel per target (``panels``: target -> row name -> per-seed fractions):
    every seed as a dot, the mean with its 95 % t interval as a bar, and ``bar`` (e.g. 0.9) as a dashed line.

    Why: a "closes 90 %" is a ratio of means; the dots and the interval show how many seeds sit on each side
    of the line and whether the seeds can place the row on either side of it at all.
    """
    plt = _plt()
    width = max((len(rows) for rows in panels.values()), default=1)
    n_panels = max(len(panels), 1)
    fig, axes = plt.subplots(1, n_panels, figsize=(max(4.0, 1.2 * width + 1.5) * n_panels, 4.2),
                             squeeze=False)
    for ax, (target, rows) in zip(axes[0], panels.items()):
        for i, fractions in enumerate(rows.values()):
            values = 100 * np.asarray(fractions, dtype=float)
            jitter = np.linspace(-0.15, 0.15, len(values)) if len(values) > 1 else np.zeros(len(values))
            ax.plot(i + jitter, values, "o", ms=4, alpha=0.6, color=f"C{i % 10}")
            interval = paired_t_interval(list(fractions))
            if interval is not None and interval.tested:
                ax.errorbar(i + 0.3, 100 * interval.mean, yerr=[[100 * (interval.mean - interval.low)],
                                                                [100 * (interval.high - interval.mean)]],
                            fmt="s", ms=5, capsize=4, color=f"C{i % 10}")
        if bar is not None:
            ax.axhline(100 * bar, ls="--", color="k", lw=1, label=f"bar {100 * bar:.0f} %")
            ax.legend(fontsize=8)
        ax.set_xticks(range(len(rows)), list(rows), rotation=20, ha="right", fontsize=8)
        ax.set_ylabel("gap closed per seed (%)")
        ax.set_title(f"target domain {target}", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"{title}\ndots: seeds; squares: mean with its 95 % t interval".strip(), fontsize=9)
    fig.tight_layout()
    out = save_figure(fig, path, dpi=110)
    plt.close(fig)
    return out


def example_slices(panels: Sequence[tuple[str, np.ndarray]], path: Path, *, title: str = "") -> Path:
    """Central z-slices of a few volumes, one row per example, one column per named panel.

    ``panels`` holds ``(name, array (n, D, H, W))``; greyscale for images, a fixed colour map for labels.
    """
    plt = _plt()
    n = min(a.shape[0] for _, a in panels)
    fig, axes = plt.subplots(n, len(panels), figsize=(2.2 * len(panels), 2.2 * n), squeeze=False)
    for j, (name, arr) in enumerate(panels):
        is_label = np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool
        for i in range(n):
            sl = np.asarray(arr[i][arr.shape[1] // 2])
            ax = axes[i][j]
            ax.imshow(sl, cmap="viridis" if is_label else "gray", vmin=0 if is_label else None,
                      vmax=max(1, int(arr.max())) if is_label else None, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(name, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    out = save_figure(fig, path, dpi=100)
    plt.close(fig)
    return out


def anatomy_waterfall(steps: Sequence[Any], path: Path, *, title: str = "") -> Path:
    """Gap anatomy as a waterfall: step 0's source-only Dice as a full bar, then one floating bar per knob
    from the previous step's Dice to this step's (red: a drop, green: a gain), the oracle of each step as a
    marker. ``steps`` are :class:`voxuda.bench.report.AnatomyStep` objects."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(steps) + 2), 4.2))
    x = np.arange(len(steps))
    for i, step in enumerate(steps):
        if math.isnan(step.source_only):
            continue
        if i == 0 or math.isnan(step.drop):
            ax.bar(i, step.source_only, 0.6, color="C0")
            continue
        prev = step.source_only + step.drop
        low, height = min(prev, step.source_only), abs(step.drop)
        ax.bar(i, height, 0.6, bottom=low, color="C3" if step.drop > 0 else "C2")
        ax.plot([i - 1 + 0.3, i - 0.3], [prev, prev], color="0.4", lw=0.8)
        share = "" if math.isnan(step.share) else f"\n{step.share:.0%}"
        ax.annotate(f"{-step.drop:+.3f}{share}", (i, low), xytext=(0, -2), textcoords="offset points",
                    ha="center", va="top", fontsize=7)
    oracle = [s.oracle for s in steps]
    if any(not math.isnan(v) for v in oracle):
        ax.plot(x, oracle, ls="none", marker="*", ms=8, color="k", label="oracle (target labels)")
        ax.legend(fontsize=8)
    names = [f"{s.index}: {s.knob or s.domain.split(' (')[0]}" for s in steps]
    ax.set_xticks(x, names, rotation=25, ha="right", fontsize=7)
    ax.set_ylabel("source-only Dice")
    ax.set_ylim(0, 1)
    ax.set_title(title or "gap anatomy")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    out = save_figure(fig, path, dpi=110)
    plt.close(fig)
    return out
