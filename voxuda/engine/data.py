"""Run data: source/target tensors in memory and the paired, seeded sampler that feeds the trainer.

Subtomograms are small (32^3 floats = 128 KiB), so every split is loaded once into tensors; sampling is index
arithmetic driven by one ``torch.Generator`` whose state is checkpointed, which is what makes ``--resume``
reproduce an uninterrupted run exactly.

Input alignment (``[data] alignment``, docs/data.md "Input alignment") happens here, where the data are
loaded: the aligner is fitted once on the unlabelled train splits of source and target (labels are never
read for it), then applied to every split a run, an evaluation or a benchmark test reads: source splits as
domain ``source``, target splits as domain ``target``. Fitted aligners are cached per process, keyed by the
data they were fitted on, so the benchmark's test split is aligned with the statistics its runs trained with.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import attrs
import torch
from torch import Tensor

from voxuda.align import (
    Aligner,
    align_volumes,
    aligner_from_record,
    alignment_record,
    build_aligner,
    is_identity,
)
from voxuda.align.base import Domain
from voxuda.config import ComponentRef
from voxuda.engine.run_config import DataConfig
from voxuda.errors import ConfigError, VoxudaError


@attrs.define
class DomainSplit:
    """One domain/split in memory: volumes ``(N, C, D, H, W)``, labels ``(N, D, H, W)`` or None, metadata.

    ``index`` is set on subsets made by :meth:`take`: each row's position in the split it was taken from
    (composed through repeated takes), so that per-volume caches (the teacher's denoised input) can key on it.
    """

    volumes: Tensor
    labels: Tensor | None
    meta: list[dict[str, Any]] = attrs.field(factory=list)
    index: Tensor | None = None

    def __len__(self) -> int:
        return int(self.volumes.shape[0])

    @property
    def class_names(self) -> list[str]:
        return [str(m.get("class", "")) for m in self.meta] or [""] * len(self)

    def take(self, index: Tensor) -> DomainSplit:
        labels = self.labels[index] if self.labels is not None else None
        meta = [self.meta[i] for i in index.tolist()] if self.meta else []
        positions = self.index[index] if self.index is not None else index
        return DomainSplit(self.volumes[index], labels, meta, positions)

    def aligned(self, aligner: Aligner, domain: Domain) -> DomainSplit:
        """The same split with ``aligner`` applied to its volumes as ``domain`` (labels and meta shared)."""
        return DomainSplit(align_volumes(aligner, self.volumes, domain), self.labels, self.meta, self.index)


@attrs.define
class RunData:
    """Everything a run reads: source train (+ val), target train (+ labelled val, for leak-flagged uses).

    ``alignment`` is the record (:func:`voxuda.align.alignment_record`: resolved aligner config and fitted
    state) of the input alignment applied to every split, or None for data that were never aligned (in-memory
    data handed to the trainer, which :func:`ensure_aligned` aligns when ``[data] alignment`` asks for it).
    """

    source_train: DomainSplit
    target_train: DomainSplit
    source_val: DomainSplit | None = None
    target_val: DomainSplit | None = None
    alignment: dict[str, Any] | None = None


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
    from voxuda.simulate import simulate_benchmark

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


def load_target(cfg: DataConfig, root: Path, split: str, *, with_labels: bool = True,
                alignment: Mapping[str, Any] | None = None, polarity: str | None = None) -> DomainSplit:
    """The target domain's ``split`` from wherever :func:`target_location` says it lives, aligned as
    ``[data] alignment`` says: with the fitted ``alignment`` record when given (a run's ``run.json``), else
    with the aligner fitted on this dataset's train splits (once per process, see :func:`fitted_aligner`).
    ``polarity`` replaces the manifest's polarity of every row (``voxuda evaluate --polarity``)."""
    split_data = _load_target_raw(cfg, root, split, with_labels=with_labels, polarity=polarity)
    return _aligned_as_configured(split_data, "target", cfg, root, alignment)


def load_source(cfg: DataConfig, root: Path, split: str, *, with_labels: bool = True,
                alignment: Mapping[str, Any] | None = None) -> DomainSplit:
    """The source domain's ``split``, aligned as :func:`load_target` aligns the target's (the held-out
    source a test-time decision measures the network's own prior on)."""
    split_data = load_domain(cfg, root, cfg.source_domain, split, with_labels=with_labels)
    return _aligned_as_configured(split_data, "source", cfg, root, alignment)


def _aligned_as_configured(split_data: DomainSplit, domain: Domain, cfg: DataConfig, root: Path,
                           alignment: Mapping[str, Any] | None) -> DomainSplit:
    if is_identity(cfg.alignment if alignment is None else alignment.get("aligner")):
        return split_data
    aligner = _record_aligner(alignment, cfg) if alignment is not None else fitted_aligner(cfg, root)
    return split_data.aligned(aligner, domain)


def _load_target_raw(cfg: DataConfig, root: Path, split: str, *, with_labels: bool = True,
                     polarity: str | None = None) -> DomainSplit:
    target_root, manifest = target_location(cfg, root)
    return load_domain(cfg, target_root, cfg.target_domain, split, with_labels=with_labels, manifest=manifest,
                       polarity=polarity)


def load_domain(cfg: DataConfig, root: Path, domain: str, split: str, *, with_labels: bool,
                manifest: str | None = None, polarity: str | None = None) -> DomainSplit:
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
        polarity=polarity,
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
    """Load the source and target splits of a run (simulating the dataset first if asked to), aligned."""
    root = ensure_dataset(cfg)
    source = load_domain(cfg, root, cfg.source_domain, cfg.train_split, with_labels=True)
    if source.labels is None:
        raise ConfigError(
            f"data.source_domain: {cfg.source_domain!r} {cfg.train_split} volumes have no labels"
        )
    # target labels are loaded for the oracle only; the trainer hides them from every other method
    target = _load_target_raw(cfg, root, cfg.train_split)
    data = RunData(
        source_train=source,
        target_train=target,
        source_val=_optional(
            lambda: load_domain(cfg, root, cfg.source_domain, cfg.val_split, with_labels=True)
        ),
        target_val=_optional(lambda: _load_target_raw(cfg, root, cfg.val_split)),
    )
    aligner = fitted_aligner(cfg, root, train=(source.volumes, target.volumes))
    return _apply_alignment(data, cfg, aligner)


# -- input alignment ---------------------------------------------------------------------------------------
_FITTED: dict[str, Aligner] = {}


def _alignment_key(cfg: DataConfig, root: Path) -> str:
    """Identity of the data an aligner is fitted on: both train splits as loaded, and the aligner's config.

    The manifests' size and modification time are part of it, so a dataset simulated again into the same
    folder is never aligned with statistics of its previous contents.
    """
    target_root, target_manifest = target_location(cfg, root)
    stamps = []
    for path in {root / cfg.manifest, target_root / target_manifest}:
        stat = path.stat()
        stamps.append([str(path.resolve()), stat.st_size, stat.st_mtime_ns])
    return json.dumps({
        "manifests": sorted(stamps),
        "domains": [cfg.source_domain, cfg.target_domain, cfg.train_split],
        "loading": [cfg.box, cfg.normalization, cfg.canonical_polarity, cfg.num_classes],
        "aligner": cfg.alignment.to_dict(),
    }, sort_keys=True, default=str)


def _build(cfg: DataConfig, ref: ComponentRef) -> Aligner:
    try:
        return build_aligner(ref, cfg.normalization)
    except VoxudaError as exc:
        raise ConfigError(f"data.alignment: {exc}") from exc


def _record_aligner(record: Mapping[str, Any], cfg: DataConfig) -> Aligner:
    try:
        return aligner_from_record(record, cfg.normalization)
    except (VoxudaError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"data.alignment: the recorded alignment cannot be restored ({exc})") from exc


def fitted_aligner(cfg: DataConfig, root: Path, *, train: tuple[Tensor, Tensor] | None = None) -> Aligner:
    """The aligner of ``[data] alignment``, fitted on the unlabelled train splits of source and target.

    Fitted once per process and dataset (:func:`_alignment_key`); ``train`` passes the train volumes when the
    caller has already loaded them (:func:`load_run_data`), else they are read here without labels.
    """
    aligner = _build(cfg, cfg.alignment)
    if not aligner.needs_fit:
        return aligner
    key = _alignment_key(cfg, root)
    if key not in _FITTED:
        if train is None:
            source = load_domain(cfg, root, cfg.source_domain, cfg.train_split, with_labels=False).volumes
            target = _load_target_raw(cfg, root, cfg.train_split, with_labels=False).volumes
        else:
            source, target = train
        with torch.no_grad():
            aligner.fit(source, target)
        _FITTED[key] = aligner
    return _FITTED[key]


def _apply_alignment(data: RunData, cfg: DataConfig, aligner: Aligner) -> RunData:
    record = alignment_record(cfg.alignment, aligner)
    if is_identity(cfg.alignment):
        return attrs.evolve(data, alignment=record)  # nothing to do: volumes stay bit-identical

    def align(split: DomainSplit | None, domain: Domain) -> DomainSplit | None:
        return None if split is None else split.aligned(aligner, domain)

    return RunData(
        source_train=align(data.source_train, "source"),  # type: ignore[arg-type]
        target_train=align(data.target_train, "target"),  # type: ignore[arg-type]
        source_val=align(data.source_val, "source"),
        target_val=align(data.target_val, "target"),
        alignment=record,
    )


def ensure_aligned(data: RunData, cfg: DataConfig, record: Mapping[str, Any] | None = None) -> RunData:
    """``data`` aligned as ``[data] alignment`` says, for in-memory data that did not come from
    :func:`load_run_data` (tests, notebooks, ``train(..., data=...)``).

    Data that are already aligned are returned as they are, after checking that they were aligned with the
    configured aligner. Otherwise the aligner is rebuilt from ``record`` (a run's recorded alignment) or
    fitted on ``data``'s own train splits, and applied to every split.
    """
    wanted = alignment_record(cfg.alignment, _build(cfg, cfg.alignment))["aligner"]
    if data.alignment is not None:
        if data.alignment.get("aligner") != wanted:
            used = data.alignment.get("aligner")
            raise ConfigError(
                f"data.alignment: the data were aligned with {used} but the run asks for {wanted}; "
                "load the data again with this config"
            )
        return data
    if record is not None:
        aligner = _record_aligner(record, cfg)
    else:
        aligner = _build(cfg, cfg.alignment)
        if aligner.needs_fit:
            with torch.no_grad():
                aligner.fit(data.source_train.volumes, data.target_train.volumes)
    return _apply_alignment(data, cfg, aligner)


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
        out: list[int] = []
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
