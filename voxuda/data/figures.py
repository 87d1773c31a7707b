"""Overview figure of a benchmark: central slices of each domain with the ground-truth mask outlined."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from voxuda.data.manifest import read_manifest
from voxuda.data.mrc import read_labels, read_volume

__all__ = ["plot_domains"]


def plot_domains(root: str | os.PathLike[str], out_png: str | os.PathLike[str], per_domain: int = 4) -> Path:
    """Plot ``per_domain`` examples of every domain (central z and y slices, raw polarity, mask contour)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_manifest(Path(root) / "manifest.csv")
    domains = list(dict.fromkeys(r.domain for r in rows))
    size = (2 * per_domain * 1.3, len(domains) * 1.55)
    fig, axes = plt.subplots(len(domains), 2 * per_domain, figsize=size)
    for i, dom in enumerate(domains):
        picks = [r for r in rows if r.domain == dom][:per_domain]
        for j, r in enumerate(picks):
            vol, _ = read_volume(r.volume)
            lab = read_labels(r.label)[0] if r.label else np.zeros(vol.shape, np.int64)
            c = vol.shape[0] // 2
            for k, (img, msk, view) in enumerate(((vol[c], lab[c], "xy"), (vol[:, c], lab[:, c], "xz"))):
                ax = axes[i, 2 * j + k]
                ax.imshow(img, cmap="gray", interpolation="nearest")
                if msk.any():
                    ax.contour(msk, levels=[0.5], colors="tab:orange", linewidths=0.6)
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_title(f"{r.class_name[:16]} {view}\nSNR {r.snr:.3g}", fontsize=5)
        axes[i, 0].set_ylabel(f"{dom}\n({picks[0].polarity})", fontsize=6)
    fig.suptitle("voxuda benchmark: central slices (xy, xz; beam along z), mask in orange", fontsize=7)
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130)
    plt.close(fig)
    return out
