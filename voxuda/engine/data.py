"""Run data: source/target tensors in memory and the paired, seeded sampler that feeds the trainer.

Subtomograms are small (32^3 floats = 128 KiB), so every split is loaded once into tensors; sampling is index
arithmetic driven by one ``torch.Generator`` whose state is checkpointed, which is what makes ``--resume``
reproduce an uninterrupted run exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import attrs
import torch
from torch import Tensor

from voxuda.engine.config import DataConfig
from voxuda.errors import ConfigError


@attrs.define
class DomainSplit:
    """One domain/split in memory: volumes ``(N, C, D, H, W)``, labels ``(N, D, H, W)`` or None, metadata."""

    volumes: Tensor
    labels: Tensor | None
    meta: list[dict[str, Any]] = attrs.field(factory=list)

    def __len__(self) -> int:
        return int(self.volumes.shape[0])

    @property
    def class_names(self) -> list[str]:
        return [str(m.get("class", "")) for m in self.meta] or [""] * len(self)

    def take(self, index: Tensor) -> DomainSplit:
        labels = self.labels[index] if self.labels is not None else None
        meta = [self.meta[i] for i in index.tolist()] if self.meta else []
        return DomainSplit(self.volumes[index], labels, meta)


@attrs.define
class RunData:
    """Everything a run reads: source train (+ val), target train (+ labelled val, for leak-flagged uses)."""

    source_train: DomainSplit
    target_train: DomainSplit
    source_val: DomainSplit | None = None
    target_val: DomainSplit | None = None


def ensure_dataset(cfg: DataConfig) -> Path:
    """The dataset folder; simulated first with ``cfg.preset`` when it holds no manifest yet.

    The simulator seed is ``cfg.preset_seed``, never the run's seed, so that a shared dataset does not depend
    on which run happened to create it.
    """
    root = Path(cfg.root).expanduser()
    if (root / cfg.manifest).is_file():
        return root
    if not cfg.preset:
        raise ConfigError(
            f"data.root: {root} has no {cfg.manifest}; point data.root at a dataset or set data.preset "
            "(a built-in such as quick, or a .toml preset file) to simulate one there"
        )
    from voxuda.data.simulate import simulate_benchmark

    simulate_benchmark(cfg.preset, root, cfg.preset_seed)
    if not (root / cfg.manifest).is_file():
        raise ConfigError(f"data.preset: simulating {cfg.preset!r} into {root} wrote no {cfg.manifest}")
    return root


def target_location(cfg: DataConfig, root: Path) -> tuple[Path, str]:
    """Folder and manifest name of the target domain: ``root`` unless ``data.target_root`` names another.

    Real target data usually live apart from the simulated source (``voxuda extract`` writes its own
    folder and manifest), so the two need not be merged into one manifest first.
    """
    manifest = cfg.target_manifest or cfg.manifest
    if not cfg.target_root:
        return root, manifest
    target = Path(cfg.target_root).expanduser()
    if not (target / manifest).is_file():
        raise ConfigError(
            f"data.target_root: {target} has no {manifest}; point it at a dataset folder (e.g. written by "
            "voxuda extract) or set data.target_manifest"
        )
    return target, manifest


def load_target(cfg: DataConfig, root: Path, split: str, *, with_labels: bool = True) -> DomainSplit:
    """The target domain's ``split`` from wherever :func:`target_location` says it lives."""
    target_root, manifest = target_location(cfg, root)
    return load_domain(cfg, target_root, cfg.target_domain, split, with_labels=with_labels, manifest=manifest)


def load_domain(cfg: DataConfig, root: Path, domain: str, split: str, *, with_labels: bool,
                manifest: str | None = None) -> DomainSplit:
    from voxuda.data.datasets import load_split

    volumes, labels, meta = load_split(
        root,
        domain,
        split,
        box=cfg.box,
        normalization=cfg.normalization,
        canonical_polarity=None if cfg.canonical_polarity == "keep" else cfg.canonical_polarity,
        num_classes=cfg.num_classes,
        with_labels=with_labels,
        manifest=manifest or cfg.manifest,
    )
    return DomainSplit(volumes, labels, meta)


def _optional(load: Callable[[], DomainSplit]) -> DomainSplit | None:
    """``load()``, or None when the manifest has no rows for that domain and split."""
    from voxuda.data.errors import DataError

    try:
        return load()
    except DataError as exc:
        if "no rows" in str(exc):
            return None
        raise


def load_run_data(cfg: DataConfig, seed: int) -> RunData:
    """Load the source and target splits of a run (simulating the dataset first if asked to)."""
    root = ensure_dataset(cfg)
    source = load_domain(cfg, root, cfg.source_domain, cfg.train_split, with_labels=True)
    if source.labels is None:
        raise ConfigError(
            f"data.source_domain: {cfg.source_domain!r} {cfg.train_split} volumes have no labels"
        )
    # target labels are loaded for the oracle only; the trainer hides them from every other method
    target = load_target(cfg, root, cfg.train_split)
    return RunData(
        source_train=source,
        target_train=target,
        source_val=_optional(
            lambda: load_domain(cfg, root, cfg.source_domain, cfg.val_split, with_labels=True)
        ),
        target_val=_optional(lambda: load_target(cfg, root, cfg.val_split)),
    )


class IndexSampler:
    """Indices into one split, drawn with a shared generator: with replacement or in shuffled epochs.

    Epoch mode keeps its current permutation and position as tensors so that they can be checkpointed.
    """

    def __init__(self, size: int, mode: Literal["random", "epoch"]) -> None:
        if size < 1:
            raise ConfigError("a training split is empty; check the manifest's domains and splits")
        self.size = size
        self.mode = mode
        self.order = torch.empty(0, dtype=torch.long)
        self.position = 0

    def draw(self, n: int, generator: torch.Generator) -> Tensor:
        if self.mode == "random":
            return torch.randint(0, self.size, (n,), generator=generator)
        out = []
        while len(out) < n:
            if self.position >= len(self.order):
                self.order = torch.randperm(self.size, generator=generator)
                self.position = 0
            take = min(n - len(out), len(self.order) - self.position)
            out.extend(self.order[self.position:self.position + take].tolist())
            self.position += take
        return torch.tensor(out, dtype=torch.long)

    def state_dict(self) -> dict[str, Tensor]:
        return {"order": self.order.clone(), "position": torch.tensor(self.position)}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.order = state["order"].clone()
        self.position = int(state["position"])


class PairedSampler:
    """Source and target batches of the same size, drawn from one generator (source first, then target)."""

    def __init__(self, data: RunData, batch_size: int, mode: Literal["random", "epoch"]) -> None:
        self.data = data
        self.batch_size = batch_size
        self.source = IndexSampler(len(data.source_train), mode)
        self.target = IndexSampler(len(data.target_train), mode)

    def next(self, generator: torch.Generator) -> tuple[DomainSplit, DomainSplit]:
        s_index = self.source.draw(self.batch_size, generator)
        t_index = self.target.draw(self.batch_size, generator)
        return self.data.source_train.take(s_index), self.data.target_train.take(t_index)

    def state_dict(self) -> dict[str, dict[str, Tensor]]:
        return {"source": self.source.state_dict(), "target": self.target.state_dict()}

    def load_state_dict(self, state: dict[str, dict[str, Tensor]]) -> None:
        self.source.load_state_dict(state["source"])
        self.target.load_state_dict(state["target"])
