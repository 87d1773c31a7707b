"""Training throughput: samples/s per method, backbone, size and thread count, the Vox-UDA/source-only
step-time ratio with a breakdown, and before/after pairs for each speed-up, all measured in one process.

Every step is the trainer's own step (``voxuda.engine.trainer._Trainer._one_step``: sampling, the method's
``training_step``, backward, clipping, optimiser, scheduler, EMA) on a method built by ``voxuda.build_method``
from a run config, on synthetic in-memory data of the quick preset's split sizes (320 source, 200 target
volumes of 32^3; the compute does not depend on the content). The machine may be shared, so variants are
measured **interleaved**: each round runs a few steps of every variant in turn, the per-variant result is the
median over rounds, and every ratio is the median of per-round ratios (both sides measured seconds apart).

    python benchmarks/bench_train.py --out docs/perf/train.json   # every section (long)
    python benchmarks/bench_train.py --only ratio --rounds 4 --out docs/perf/ratio.json
    python benchmarks/bench_train.py --only table --backbones unet3d --sizes quick --threads 2 --out t.json
    python scripts/perf_report.py docs/perf/*.json --out docs/performance.md

``docs/performance.md`` names the exact command behind each of its tables.

``--only`` picks sections: ``table`` (samples/s per method x backbone x size x threads, MONAI's BasicUNet
as a same-run reference when ``monai`` is installed), ``ratio`` (Vox-UDA / source-only with its breakdown
from explicit timers around the method's parts), ``changes`` (each speed-up against the path without it).
``numba_layer`` compares numba's threading layers in subprocesses. The JSON holds every per-round step
time; ``scripts/perf_report.py`` turns one or several JSON files into docs/performance.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch  # before anything that may initialise numba's threading layer (docs: perf pitfalls)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from voxuda.engine.data import RunData  # noqa: E402
from voxuda.engine.run_config import run_config_from_dict  # noqa: E402
from voxuda.engine.trainer import _Trainer  # noqa: E402
from voxuda.testing import sphere_split  # noqa: E402

METHODS = ("source_only", "mean_teacher", "dann", "vox_uda")
#: Backbone tables per size. unet3d: the quick and paper suites' widths. voxresnet appears in no suite; its
#: "paper" size is its default (the Vox-UDA figure's network), "quick" the same layout at a quarter width.
BACKBONES: dict[str, dict[str, dict[str, Any]]] = {
    "unet3d": {"quick": {"name": "unet3d", "widths": [8, 16, 32]},
               "paper": {"name": "unet3d", "widths": [16, 32, 64, 128]}},
    "voxresnet": {"quick": {"name": "voxresnet", "stem_width": 8, "width": 16},
                  "paper": {"name": "voxresnet"}},
}
BOX = 32
BATCH = 8
SOURCE_TRAIN, TARGET_TRAIN = 320, 200  # the quick preset's train splits


# -- building trainers ---------------------------------------------------------------------------------------
def synthetic_data(box: int = BOX, n_source: int = SOURCE_TRAIN, n_target: int = TARGET_TRAIN) -> RunData:
    """Sphere-on-noise volumes (a noisier target), z-scored: realistic shapes and split sizes, no disk."""
    return RunData(
        source_train=sphere_split(n_source, 0, noise=0.3, size=box),
        target_train=sphere_split(n_target, 1, noise=2.0, size=box),
    )


def run_config(method: str | Mapping[str, Any], backbone: Mapping[str, Any], *, threads: int,
               batch: int = BATCH, box: int = BOX, steps: int = 1000, amp: bool = False,
               method_options: Mapping[str, Any] | None = None) -> Any:
    """A run config as the suites write them (defaults everywhere else), for ``_Trainer``."""
    table = {"name": method} if isinstance(method, str) else dict(method)
    table.update({"backbone": dict(backbone), **(method_options or {})})
    return run_config_from_dict({
        "seed": 0,
        "method": table,
        "data": {"root": "unused-in-memory-data", "box": box},
        "trainer": {"steps": steps, "batch_size": batch, "num_threads": threads, "progress": False,
                    "amp": amp},
    })


def build_trainer(config: Any, data: RunData) -> _Trainer:
    """The engine's trainer on in-memory data (no run folder is written: only the step is used), in its
    steady state (:func:`fill_teacher_input_cache`)."""
    trainer = _Trainer(config, Path("unused-run-folder"), False, data)
    fill_teacher_input_cache(trainer)
    return trainer


def fill_teacher_input_cache(trainer: _Trainer) -> int:
    """Denoise every target volume into the method's teacher-input cache, as the first pass over the target
    split does in a run; returns the number of volumes cached.

    A benchmark times a few steps of a fresh trainer, when every batch would still be a cache miss, while a
    run draws each target volume many times (the quick suite: 200 volumes, 800 draws in 100 steps) and
    denoises it once. Timing the steady state gives the step a run actually pays; the denoiser's own
    cost is measured by ``benchmarks/bench_bilateral.py`` (``--ibf``). A no-op for methods without the cache
    or with it switched off (``teacher_input_cache_mb = 0``: today's path, which denoises every batch)."""
    self_training = getattr(trainer.method, "self_training", None)
    cache = getattr(self_training, "teacher_input_cache", None)
    if self_training is None or cache is None or cache.budget_bytes <= 0:
        return 0
    volumes = trainer.data.target_train.volumes
    batch = trainer.config.trainer.batch_size
    for start in range(0, len(volumes), batch):
        index = torch.arange(start, min(start + batch, len(volumes)))
        self_training.teacher_input(volumes[index].to(trainer.device), index.to(trainer.device))
    return len(cache)


def trainer_step(trainer: _Trainer) -> tuple[float, float]:
    """One step of the trainer's own loop body; returns its wall and CPU (process) time in seconds."""
    uses_labels = bool(getattr(trainer.method, "uses_target_labels", False))
    wall, cpu = time.perf_counter(), time.process_time()
    trainer._one_step(uses_labels)
    trainer.step += 1
    return time.perf_counter() - wall, time.process_time() - cpu


# -- interleaved measurement ---------------------------------------------------------------------------------
class Variant:
    """A thing to time: ``step()`` runs one unit of work (one training step) and returns its (wall, CPU)
    seconds; it runs under its own thread count and ``setup`` (e.g. a process-wide torch flag)."""

    def __init__(self, label: str, step: Callable[[], tuple[float, float]], threads: int, samples: int,
                 setup: Callable[[], Any] | None = None) -> None:
        self.label = label
        self._step = step
        self.threads = threads
        self.samples = samples  # samples per step (the batch), for samples/s
        self.setup = setup
        self.times: list[float] = []  # per round: median wall seconds per step
        self.cpu_times: list[float] = []  # per round: median CPU seconds per step (all threads)

    def run(self, steps: int) -> tuple[float, float]:
        torch.set_num_threads(self.threads)
        with self.setup() if self.setup is not None else contextlib.nullcontext():
            measured = [self._step() for _ in range(steps)]
        return statistics.median(m[0] for m in measured), statistics.median(m[1] for m in measured)


def trainer_variant(label: str, trainer: _Trainer, threads: int) -> Variant:
    return Variant(label, lambda: trainer_step(trainer), threads, trainer.config.trainer.batch_size)


def interleaved(variants: list[Variant], rounds: int, steps: int, warmup: int = 1) -> None:
    """Round-robin: every round runs ``steps`` steps of each variant (its median goes to ``times``)."""
    for variant in variants:
        variant.run(warmup)
    for _ in range(rounds):
        for variant in variants:
            wall, cpu = variant.run(steps)
            variant.times.append(wall)
            variant.cpu_times.append(cpu)


def median_ratio(numerator: Variant, denominator: Variant, cpu: bool = False) -> float:
    """Median over rounds of the per-round time ratio (both measured within one round); ``cpu``: of CPU
    times, which other processes on a shared machine disturb far less than wall times (1 thread: exactly
    the work done; 2 threads: also OpenMP's spin-waiting)."""
    a, b = (numerator.cpu_times, denominator.cpu_times) if cpu else (numerator.times, denominator.times)
    return statistics.median(x / y for x, y in zip(a, b))


def summary(variant: Variant) -> dict[str, Any]:
    step = statistics.median(variant.times)
    cpu = statistics.median(variant.cpu_times)
    return {"label": variant.label, "threads": variant.threads, "batch": variant.samples,
            "step_s": step, "samples_per_s": variant.samples / step, "cpu_step_s": cpu,
            "round_step_s": variant.times, "round_cpu_s": variant.cpu_times}


# -- the breakdown -------------------------------------------------------------------------------------------
class PartTimers:
    """Explicit CPU-time timers around a method's parts: wraps instance attributes (nothing in voxuda
    changes). CPU time, because the parts are short and the machine may be shared."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.samples: dict[str, int] = {}
        self._restore: list[Callable[[], None]] = []

    def wrap(self, owner: Any, attribute: str, part: str) -> None:
        if owner is None or not hasattr(owner, attribute):
            return
        original = getattr(owner, attribute)
        had_own = attribute in vars(owner)

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.process_time()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[part] = self.seconds.get(part, 0.0) + time.process_time() - start
                self.calls[part] = self.calls.get(part, 0) + 1
                first = args[0] if args else None
                if isinstance(first, torch.Tensor) and first.ndim == 5:
                    self.samples[part] = self.samples.get(part, 0) + int(first.shape[0])

        object.__setattr__(owner, attribute, timed)
        if had_own:
            self._restore.append(lambda: object.__setattr__(owner, attribute, original))
        else:
            self._restore.append(lambda: object.__delattr__(owner, attribute))

    def restore(self) -> None:
        for undo in reversed(self._restore):
            undo()
        self._restore.clear()

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()
        self.samples.clear()


#: (part name, path of the owner from the trainer, attribute). Parts nest: "teacher forward" lies inside
#: "pseudo-labels (teacher forward + selection)", which with every other method part lies inside "training
#: step (forwards + losses)"; :func:`breakdown` reports exclusive times.
PARTS: tuple[tuple[str, str, str], ...] = (
    ("sampling", "sampler", "next"),
    ("training_step", "method", "training_step"),
    ("student_forward", "method.student", "forward"),
    ("ngm", "method", "noise_call"),
    ("teacher_input_denoising", "method.self_training", "teacher_input"),
    ("pseudo_labels", "method.self_training", "make_pseudo_labels"),
    ("teacher_forward", "method.teacher", "forward"),
    ("discriminator", "method.discriminator", "forward"),
    ("optimizer", "optimizer", "step"),
    ("ema", "method", "on_after_optimizer_step"),
)


class _CallProxy:
    """Makes a plain callable object's ``__call__`` wrappable (special methods are looked up on the type)."""

    def __init__(self, inner: Any) -> None:
        object.__setattr__(self, "inner", inner)
        object.__setattr__(self, "noise_call", inner.__call__)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.noise_call(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(object.__getattribute__(self, "inner"), name)


def _resolve(trainer: _Trainer, path: str) -> Any:
    owner: Any = trainer
    for name in path.split("."):
        owner = getattr(owner, name, None)
    return owner


@contextlib.contextmanager
def part_timers(trainer: _Trainer) -> Iterator[PartTimers]:
    timers = PartTimers()
    method = trainer.method
    noise = getattr(method, "noise", None)
    if noise is not None:
        object.__setattr__(method, "noise", _CallProxy(noise))
        proxy = method.noise
    try:
        for part, path, attribute in PARTS:
            owner = proxy if (part == "ngm" and noise is not None) else _resolve(trainer, path)
            timers.wrap(owner, attribute, part)
        yield timers
    finally:
        timers.restore()
        if noise is not None:
            object.__setattr__(method, "noise", noise)


def breakdown(trainer: _Trainer, steps: int) -> dict[str, Any]:
    """Exclusive CPU seconds per step of each part (a sum over ``steps`` divided by it), the number of
    network forwards per step and the samples they processed."""
    with part_timers(trainer) as timers:
        trainer_step(trainer)  # warm the wrapped path
        timers.reset()
        total = sum(trainer_step(trainer)[1] for _ in range(steps))
    sec = {k: v / steps for k, v in timers.seconds.items()}
    get = sec.get
    parts = {
        "student forwards": get("student_forward", 0.0),
        "teacher forward": get("teacher_forward", 0.0),
        "pseudo-label selection": get("pseudo_labels", 0.0) - get("teacher_forward", 0.0),
        "NGM (source noise)": get("ngm", 0.0),
        "teacher-input denoising": get("teacher_input_denoising", 0.0),
        "discriminator (forward)": get("discriminator", 0.0),
    }
    inside_step = sum(parts.values())
    parts["losses and the rest of training_step"] = get("training_step", 0.0) - inside_step
    parts["backward (+ clipping, scheduler, logging)"] = (
        total / steps - get("training_step", 0.0) - get("optimizer", 0.0) - get("ema", 0.0)
        - get("sampling", 0.0))
    parts["optimiser step"] = get("optimizer", 0.0)
    parts["EMA update"] = get("ema", 0.0)
    parts["sampling"] = get("sampling", 0.0)
    forwards = {name: timers.calls.get(key, 0) / steps
                for name, key in (("student", "student_forward"), ("teacher", "teacher_forward"))}
    samples = {name: timers.samples.get(key, 0) / steps
               for name, key in (("student", "student_forward"), ("teacher", "teacher_forward"))}
    return {"cpu_step_s": total / steps, "parts_s": parts, "forwards_per_step": forwards,
            "forward_samples_per_step": samples}


# -- sections ------------------------------------------------------------------------------------------------
def monai_reference(backbone_size: str, threads: int, data: RunData) -> Variant | None:
    """MONAI's BasicUNet (benchmark-only dependency; voxuda never imports it) trained the same way: batch 8,
    CE on 2 classes, Adam; a same-run reference for the U-Net's raw speed."""
    try:
        from monai.networks.nets import BasicUNet
    except ImportError:
        return None
    features = (8, 8, 16, 32, 32, 8) if backbone_size == "quick" else (16, 16, 32, 64, 128, 16)
    torch.manual_seed(0)
    net = BasicUNet(spatial_dims=3, in_channels=1, out_channels=2, features=features)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    volumes = data.source_train.volumes[:BATCH].contiguous()
    labels = data.source_train.labels[:BATCH].contiguous()  # type: ignore[index]

    def step() -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        loss = torch.nn.functional.cross_entropy(net(volumes), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - wall, time.process_time() - cpu

    return Variant(f"monai BasicUNet{features}", step, threads, BATCH)


def rounds_and_steps(args: argparse.Namespace, size: str) -> tuple[int, int]:
    """The quick size gets ``--rounds`` x ``--steps``; the paper size (several times slower per step) half
    the rounds (at least 2) of one step each."""
    return (args.rounds, args.steps) if size == "quick" else (max(2, args.rounds // 2), 1)


def table_section(args: argparse.Namespace, data: RunData) -> list[dict[str, Any]]:
    """samples/s for every method x backbone x size x threads; each (backbone, size, threads) group is
    measured interleaved, with MONAI's BasicUNet beside the U-Net groups."""
    rows: list[dict[str, Any]] = []
    for backbone in args.backbones:
        for size in args.sizes:
            for threads in args.threads:
                variants = []
                for method in args.methods:
                    config = run_config(method, BACKBONES[backbone][size], threads=threads)
                    variants.append(trainer_variant(method, build_trainer(config, data), threads))
                if backbone == "unet3d":
                    reference = monai_reference(size, threads, data)
                    if reference is not None:
                        variants.append(reference)
                rounds, steps = rounds_and_steps(args, size)
                interleaved(variants, rounds, steps)
                base = variants[0]
                for variant in variants:
                    row = {"backbone": backbone, "size": size, "method": variant.label, **summary(variant),
                           "x_source_only_time": median_ratio(variant, base),
                           "x_source_only_cpu": median_ratio(variant, base, cpu=True)}
                    rows.append(row)
                _progress(f"table {backbone} {size} {threads}t: " + ", ".join(
                    f"{v.label} {v.samples / statistics.median(v.times):.1f}/s" for v in variants))
    return rows


#: Today's path (before issue 18): every speed-up switched off. Options are run-config pieces plus "fill"
#: (deterministic mode's NaN fill of fresh allocations, which the trainer now skips).
TODAY: dict[str, Any] = {"backbone": {"channels_last_3d": False}, "method": {"teacher_input_cache_mb": 0},
                         "fill": True, "autograd_consistency": True, "argmax": True}
NEW: dict[str, Any] = {}  # the defaults

#: Each speed-up alone: (name, methods it concerns, options without it, options with it).
CHANGES: tuple[dict[str, Any], ...] = (
    {"name": "channels_last_3d (U-Net weights and activations)", "methods": ("source_only", "vox_uda"),
     "old": {"backbone": {"channels_last_3d": False}}, "new": {}},
    {"name": "no NaN fill of fresh allocations in deterministic mode", "methods": ("source_only",),
     "sizes": ("quick",),
     "old": {"fill": True}, "new": {}},
    {"name": "teacher input denoised once per target volume (cache)", "methods": ("vox_uda",),
     "sizes": ("quick",),
     "old": {"method": {"teacher_input_cache_mb": 0}}, "new": {}},
    {"name": "consistency loss backward written out (Vox-UDA)", "methods": ("vox_uda",), "sizes": ("quick",),
     "old": {"autograd_consistency": True}, "new": {}},
    {"name": "class index by max(dim=1) instead of argmax (pseudo-label metrics)",
     "methods": ("mean_teacher", "vox_uda"), "sizes": ("quick",), "old": {"argmax": True}, "new": {}},
    {"name": "bfloat16 autocast (trainer.amp = true)", "methods": ("source_only",), "sizes": ("quick",),
     "old": {}, "new": {"amp": True}},
    {"name": "all of the above that are on by default (today's path -> now)", "methods": METHODS,
     "old": TODAY, "new": NEW},
)


@contextlib.contextmanager
def nan_fill(on: bool) -> Iterator[None]:
    """Deterministic mode's fill of fresh allocations, set for one variant's steps (it is process-wide)."""
    import torch.utils.deterministic as deterministic

    before = deterministic.fill_uninitialized_memory  # type: ignore[attr-defined]
    deterministic.fill_uninitialized_memory = on  # type: ignore[attr-defined]
    try:
        yield
    finally:
        deterministic.fill_uninitialized_memory = before  # type: ignore[attr-defined]


def autograd_consistency(clean: torch.Tensor, noisy: torch.Tensor, form: str) -> torch.Tensor:
    """Vox-UDA's feature consistency as it was before issue 18 (autograd through ``F.normalize``): the
    "before" of the written-out backward. Same values; tests/engine/test_throughput_equivalence.py."""
    a, b = clean.float(), noisy.float()
    if form == "mse":
        return torch.nn.functional.mse_loss(b, a)
    if form == "cosine_flat":
        a, b = a.flatten(1), b.flatten(1)
    a_hat = torch.nn.functional.normalize(a, dim=1, eps=1e-8)
    b_hat = torch.nn.functional.normalize(b, dim=1, eps=1e-8)
    return 0.5 * (a_hat - b_hat).pow(2).sum(dim=1).mean()


def argmax_class_index(scores: torch.Tensor) -> torch.Tensor:
    """The class index as it was computed before issue 18 (same values as ``class_index``)."""
    return scores.argmax(dim=1)


@contextlib.contextmanager
def path_switches(fill: bool, old_consistency: bool, argmax: bool) -> Iterator[None]:
    """The process-wide switches of one variant: the NaN fill, which consistency function and which class
    index function the methods call."""
    import voxuda.methods.mean_teacher as mean_teacher
    import voxuda.methods.pseudo_labels as pseudo_labels
    import voxuda.methods.vox_uda as vox_uda

    saved = (vox_uda.feature_consistency, mean_teacher.class_index, pseudo_labels.class_index)
    if old_consistency:
        vox_uda.feature_consistency = autograd_consistency  # type: ignore[assignment]
    if argmax:
        mean_teacher.class_index = argmax_class_index  # type: ignore[assignment]
        pseudo_labels.class_index = argmax_class_index  # type: ignore[assignment]
    try:
        with nan_fill(fill):
            yield
    finally:
        vox_uda.feature_consistency, mean_teacher.class_index, pseudo_labels.class_index = saved


def options_variant(label: str, method: str, backbone: Mapping[str, Any], threads: int,
                    options: Mapping[str, Any], data: RunData) -> Variant:
    """A trainer of ``method`` with ``options`` (see :data:`TODAY`) applied to its run config."""
    method_options = dict(options.get("method", {}))
    if method in ("source_only", "dann"):
        method_options.pop("teacher_input_cache_mb", None)  # not an option of methods without a teacher
    config = run_config(method, {**backbone, **options.get("backbone", {})}, threads=threads,
                        amp=bool(options.get("amp", False)), method_options=method_options)
    trainer = build_trainer(config, data)
    fill, old_consistency = bool(options.get("fill", False)), bool(options.get("autograd_consistency", False))
    argmax = bool(options.get("argmax", False))
    return Variant(label, lambda: trainer_step(trainer), threads, config.trainer.batch_size,
                   setup=lambda: path_switches(fill, old_consistency, argmax))


def ratio_section(args: argparse.Namespace, data: RunData) -> dict[str, Any]:
    """Vox-UDA against source-only at the quick size (U-Net), same threads, today's path and now, all four
    interleaved: both ratios, source-only's speed-up, and each method's breakdown (now)."""
    out: dict[str, Any] = {}
    backbone = BACKBONES["unet3d"]["quick"]
    for threads in args.threads:
        variants = {f"{m} {when}": options_variant(f"{m} {when}", m, backbone, threads, options, data)
                    for when, options in (("today", TODAY), ("now", NEW)) for m in ("source_only", "vox_uda")}
        interleaved(list(variants.values()), args.rounds, args.steps)
        torch.set_num_threads(threads)
        parts = {}
        for m in ("source_only", "vox_uda"):
            trainer = build_trainer(run_config(m, backbone, threads=threads), data)
            trainer_step(trainer)
            parts[m] = breakdown(trainer, args.steps * 2)
        v = variants
        entry: dict[str, Any] = {"variants": {k: summary(x) for k, x in v.items()}, "breakdown": parts}
        for clock in ("wall", "cpu"):
            cpu = clock == "cpu"
            entry[clock] = {
                "ratio_today": median_ratio(v["vox_uda today"], v["source_only today"], cpu),
                "ratio_now": median_ratio(v["vox_uda now"], v["source_only now"], cpu),
                "source_only_speedup": 1.0 / median_ratio(v["source_only now"], v["source_only today"], cpu),
                "vox_uda_speedup": 1.0 / median_ratio(v["vox_uda now"], v["vox_uda today"], cpu),
            }
        out[str(threads)] = entry
        _progress(f"ratio {threads}t: " + json.dumps({c: {k: round(x, 2) for k, x in entry[c].items()}
                                                      for c in ("wall", "cpu")}))
    return out


def changes_section(args: argparse.Namespace, data: RunData) -> list[dict[str, Any]]:
    """Before/after of each change, interleaved, per method, at each size and thread count asked for."""
    rows = []
    for change in CHANGES:
        for size in [s for s in args.sizes if s in change.get("sizes", args.sizes)]:
            for threads in args.threads:
                for method in change["methods"]:
                    if method not in args.methods:
                        continue
                    backbone = BACKBONES["unet3d"][size]
                    before = options_variant("before", method, backbone, threads, change["old"], data)
                    after = options_variant("after", method, backbone, threads, change["new"], data)
                    rounds, steps = rounds_and_steps(args, size)
                    interleaved([before, after], rounds, steps)
                    row = {"change": change["name"], "method": method, "size": size, "threads": threads,
                           "before": summary(before), "after": summary(after),
                           "speedup": 1.0 / median_ratio(after, before),
                           "cpu_speedup": 1.0 / median_ratio(after, before, cpu=True)}
                    rows.append(row)
                    _progress(f"{change['name']} {method} {size} {threads}t: x{row['speedup']:.2f} wall, "
                              f"x{row['cpu_speedup']:.2f} CPU")
    return rows


def layer_probe(threads: int) -> dict[str, Any]:
    """In this process (whose numba threading layer was fixed by ``NUMBA_THREADING_LAYER``): source-only
    steps before and after one numba bilateral call, then Vox-UDA steps (its teacher input runs numba)."""
    import voxuda.ops as ops

    data = synthetic_data()
    backbone = BACKBONES["unet3d"]["quick"]
    source_only = build_trainer(run_config("source_only", backbone, threads=threads), data)
    torch.set_num_threads(threads)
    trainer_step(source_only)
    before = [trainer_step(source_only)[0] for _ in range(4)]
    ops.bilateral3d(data.target_train.volumes[:8], radius=1, sigma_spatial=120.0, sigma_range=1.2,
                    backend="numba")
    after = [trainer_step(source_only)[0] for _ in range(4)]
    vox_uda = build_trainer(run_config("vox_uda", backbone, threads=threads,
                                       method_options={"teacher_input_cache_mb": 0}), data)
    trainer_step(vox_uda)
    vox = [trainer_step(vox_uda)[0] for _ in range(3)]
    import numba

    return {"layer": numba.threading_layer(), "threads": threads,
            "source_only_before_s": statistics.median(before),
            "source_only_after_s": statistics.median(after),
            "slowdown_after_numba": statistics.median(after) / statistics.median(before),
            "vox_uda_uncached_step_s": statistics.median(vox)}


def numba_layer_section(args: argparse.Namespace) -> list[dict[str, Any]]:
    """numba's ``omp`` layer (its default here) against ``workqueue`` (what the trainer now picks), each in
    its own process (numba fixes the layer at its first parallel call), alternated twice per thread count."""
    import os

    rows = []
    for threads in args.threads:
        for _ in range(2):
            for layer in ("omp", "workqueue"):
                env = {**os.environ, "NUMBA_THREADING_LAYER": layer}
                done = subprocess.run([sys.executable, __file__, "--layer-probe", str(threads)], env=env,
                                      capture_output=True, text=True, check=True)
                row = json.loads(done.stdout.strip().splitlines()[-1])
                rows.append(row)
                _progress(f"numba layer {layer} {threads}t: source-only x{row['slowdown_after_numba']:.2f} "
                          f"slower after one numba call; vox_uda {row['vox_uda_uncached_step_s']:.2f} s/step")
    return rows


# -- machine and main ----------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    def lscpu(field: str) -> str:
        try:
            text = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        except OSError:
            return ""
        for line in text.splitlines():
            if line.startswith(field + ":"):
                return line.split(":", 1)[1].strip()
        return ""

    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for name in ("numba", "monai", "numpy"):
        with contextlib.suppress(ImportError):
            versions[name] = __import__(name).__version__
    import os

    return {"cpu": lscpu("Model name"), "cores": lscpu("CPU(s)"),
            "flags_bf16": "avx512_bf16" in lscpu("Flags"),
            "load_average_start": os.getloadavg(), "platform": platform.platform(), "versions": versions,
            "mkldnn": torch.backends.mkldnn.is_available()}


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/perf/train.json", help="JSON results (raw step times too)")
    parser.add_argument("--only", default="table,ratio,changes,numba_layer",
                        help="sections: table, ratio, changes, numba_layer")
    parser.add_argument("--layer-probe", type=int, default=0, help=argparse.SUPPRESS)  # internal (threads)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--backbones", default=",".join(BACKBONES))
    parser.add_argument("--sizes", default="quick,paper")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (halved at the paper size)")
    parser.add_argument("--steps", type=int, default=2,
                        help="steps per variant per round, median kept (1 at the paper size)")
    args = parser.parse_args(argv)
    args.sections = [s for s in args.only.split(",") if s]
    args.methods = [m for m in args.methods.split(",") if m]
    args.backbones = [b for b in args.backbones.split(",") if b]
    args.sizes = [s for s in args.sizes.split(",") if s]
    args.threads = [int(t) for t in args.threads.split(",") if t]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.layer_probe:
        print(json.dumps(layer_probe(args.layer_probe)))
        return 0
    data = synthetic_data()
    result: dict[str, Any] = {"command": "python benchmarks/bench_train.py " + " ".join(
        sys.argv[1:] if argv is None else argv), "machine": machine(),
        "settings": {"box": BOX, "batch": BATCH, "rounds": args.rounds, "steps": args.steps,
                     "backbones": {b: BACKBONES[b] for b in args.backbones}}}
    if "table" in args.sections:
        result["table"] = table_section(args, data)
    if "ratio" in args.sections:
        result["ratio"] = ratio_section(args, data)
    if "changes" in args.sections:
        result["changes"] = changes_section(args, data)
    if "numba_layer" in args.sections:
        result["numba_layer"] = numba_layer_section(args)
    result["machine"]["load_average_end"] = __import__("os").getloadavg()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    _progress(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
