"""The benchmark's only door to the engine: data, training sessions, checkpoints and evaluation.

Two benchmark features need more than one ``train()`` call, and both are built here from the engine's
public pieces (``train(..., stop_after=...)``, ``resume``, the checkpoint format) without changing it:

* **Selection regret.** The trainer keeps ``best.pt`` for one criterion. To know which checkpoint the
  label-leaking ``target_oracle`` criterion *would* have chosen, training runs in sessions that end at each
  evaluation point (``stop_after``); after each session the method weights are copied to
  ``evalpoints/step<k>.pt`` and scored with the ``target_oracle`` validator (labelled target *train/val*
  volumes, never the test split). Resuming a session restores every RNG state, so the result equals one
  uninterrupted run.
* **Warm start** (``init_from``). A zero-step session writes the run's initial ``last.pt``; the student
  weights of the parent run's selected checkpoint are copied into it (teacher weights, when the method has
  a teacher, are initialised from the same student weights), and training resumes from there. What was
  copied is recorded in ``init.json``.
* **Reused checkpoints** (``train = false`` and ``shared`` runs). Such a run trains nothing: it evaluates
  another run's selected checkpoint under its own config. Its regret candidates are that run's kept
  eval-point files, re-scored with ``target_oracle`` on this run's target and config
  (:meth:`BenchEngine.rescore_evalpoints`): the index refers to the files, it does not copy them.
* **Every network.** :meth:`BenchEngine.evaluate` scores ``method.predictor()`` (the reported network, so a
  plugin that overrides ``predictor()``, e.g. AdaBN's target statistics, is scored as it predicts) or one
  named network of ``method.networks()`` (e.g. a mean teacher's student).

Tests swap :class:`BenchEngine` for a fake to count trainer calls.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from voxuda.bench.io import write_json
from voxuda.config import ComponentRef
from voxuda.jsonio import read_json

EVALPOINTS = "evalpoints"
#: Labelled target train/val volumes the regret's target_oracle scores per eval point (bounded cost).
ORACLE_VOLUMES = 64


@attrs.frozen
class EvalResult:
    """Test-split scores of one checkpoint under one test-time input denoiser."""

    dice: float
    iou: float
    per_class: Mapping[str, Mapping[str, float]]
    step: int | None
    n_volumes: int
    decision: Mapping[str, Any] | None = None  # the prior-calibrated readout's record; None = argmax


class BenchEngine:
    """Engine operations the runner needs (the default implementation drives ``voxuda.engine``)."""

    def __init__(self) -> None:
        self._data_key: tuple[Any, ...] | None = None
        self._data: Any = None
        self._test_key: tuple[Any, ...] | None = None
        self._test: Any = None

    # -- data -------------------------------------------------------------------------------------------
    def prepare_data(self, preset: str, data_dir: Path, seed: int, *, progress: bool = True) -> Path:
        """Simulate the preset into ``data_dir`` unless an identical copy is cached there."""
        from voxuda.simulate import simulate_benchmark

        return simulate_benchmark(preset, data_dir, seed, progress=progress)

    def target_domains(self, data_dir: Path, source_domain: str | None) -> list[str]:
        """Domains of the manifest other than the source, in manifest order."""
        from voxuda.data.manifest import read_manifest

        rows = read_manifest(data_dir / "manifest.csv", check_files=False)
        source = source_domain or "source"
        return list(dict.fromkeys(r.domain for r in rows if r.domain != source))

    def _run_config(self, config: Mapping[str, Any]) -> Any:
        from voxuda.engine.run_config import run_config_from_dict

        return run_config_from_dict(dict(config))

    def _run_data(self, rc: Any) -> Any:
        """The run's in-memory data, cached across runs that read the same domains the same way."""
        from voxuda.engine.data import load_run_data

        key = (attrs.astuple(rc.data), rc.data.root)
        if key != self._data_key:
            self._data, self._data_key = None, None
            self._data = load_run_data(rc.data, rc.seed)
            self._data_key = key
        return self._data

    def _test_split(self, rc: Any) -> Any:
        from voxuda.engine.data import ensure_dataset, load_target

        split = rc.evaluation.split or "test"
        key = (attrs.astuple(rc.data), split)
        if key != self._test_key:
            root = ensure_dataset(rc.data)
            self._test = load_target(rc.data, root, split)
            self._test_key = key
        return self._test

    # -- training ---------------------------------------------------------------------------------------
    def can_resume(self, run_dir: Path) -> bool:
        return (run_dir / "last.pt").is_file()

    def train(self, config: Mapping[str, Any], run_dir: Path, *, resume: bool,
              init_checkpoint: Path | None = None, regret: bool = True) -> None:
        """Train one run to completion, in sessions when eval points must be kept (see module doc)."""
        from voxuda.engine.checkpoint import load_checkpoint
        from voxuda.engine.trainer import train

        rc = self._run_config(config)
        data = self._run_data(rc)
        if init_checkpoint is not None and not (run_dir / "init.json").is_file():
            if not resume:
                train(rc, run_dir, resume=False, data=data, stop_after=0)
            warm_start(run_dir / "last.pt", init_checkpoint, run_dir / "init.json")
            resume = True
        eval_every = rc.trainer.eval_every
        keep = regret and eval_every > 0 and rc.selection_ref is not None
        if not keep:
            train(rc, run_dir, resume=resume, data=data)
            return
        while True:
            step = int(load_checkpoint(run_dir / "last.pt")["step"]) if resume else 0
            if step and step % eval_every == 0 and str(step) not in _read_index(run_dir / EVALPOINTS):
                self._keep_evalpoint(rc, run_dir, step, data)  # interrupted right after a session
            if (not step and resume and rc.evaluation.select_start
                    and "0" not in _read_index(run_dir / EVALPOINTS)):
                self._keep_evalpoint(rc, run_dir, 0, data)  # the warm start, a candidate of the selection too
            if step >= rc.trainer.steps:
                break
            stop = eval_every - step % eval_every
            result = train(rc, run_dir, resume=resume, data=data, stop_after=stop)
            resume = True
            self._keep_evalpoint(rc, run_dir, result.step, data)
            if result.completed:
                break

    def _keep_evalpoint(self, rc: Any, run_dir: Path, step: int, data: Any) -> None:
        """Copy the method weights at ``step`` and score them with ``target_oracle`` (for regret only)."""
        from voxuda.engine.checkpoint import FORMAT, VERSION, load_checkpoint, save_atomic

        folder = run_dir / EVALPOINTS
        payload = load_checkpoint(run_dir / "last.pt")
        path = save_atomic({"format": FORMAT, "version": VERSION, "step": step, "method": payload["method"]},
                           folder / f"step{step:07d}.pt")
        score = self._oracle_score(rc, path, data)
        index = _read_index(folder)
        index[str(step)] = {"file": path.name, "target_oracle": score}
        write_json(folder / "index.json", index)

    def score_checkpoint_oracle(self, config: Mapping[str, Any], checkpoint: Path) -> float:
        """``target_oracle`` score of ``checkpoint`` (labelled target train/val volumes of ``config``)."""
        rc = self._run_config(config)
        return self._oracle_score(rc, checkpoint, self._run_data(rc))

    def rescore_evalpoints(self, config: Mapping[str, Any], source_dir: Path, run_dir: Path) -> int:
        """Index ``source_dir``'s kept eval points in ``run_dir/evalpoints`` with ``target_oracle`` scores
        under ``config`` (another target or config); returns how many. Files are referred to, not copied."""
        import os

        index = _read_index(source_dir / EVALPOINTS)
        folder = run_dir / EVALPOINTS
        done = _read_index(folder)
        for step in sorted(index, key=int):
            if step in done:
                continue  # resumed after an interruption
            path = source_dir / EVALPOINTS / index[step]["file"]
            done[step] = {"file": os.path.relpath(path, folder),
                          "target_oracle": self.score_checkpoint_oracle(config, path)}
            write_json(folder / "index.json", done)
        return len(done)

    def reselect_evalpoints(self, config: Mapping[str, Any], run_dir: Path, name: str) -> Path:
        """Score ``run_dir``'s kept eval points with the run's own criterion (``config``'s selection, on its
        data and test-time input), record each score in the index under ``name`` and return the first of the
        best in step order (the trainer keeps ``best.pt`` only when a score beats the best so far)."""
        folder = run_dir / EVALPOINTS
        index = _read_index(folder)
        score = self._validator_scorer(config)  # one validator: a fitted noise model is fitted once
        best: tuple[float, Path] | None = None
        for step, path in self.kept_evalpoints(run_dir):
            entry = index[str(step)]
            if name not in entry:  # resumed after an interruption
                entry[name] = score(path)
                write_json(folder / "index.json", index)
            if best is None or entry[name] > best[0]:
                best = (float(entry[name]), path)
        assert best is not None, "no kept eval points"
        return best[1]

    def kept_evalpoints(self, run_dir: Path) -> list[tuple[int, Path]]:
        """The kept eval-point checkpoints of a run, ``(step, path)`` in step order."""
        index = _read_index(run_dir / EVALPOINTS)
        return [(int(s), run_dir / EVALPOINTS / index[s]["file"]) for s in sorted(index, key=int)]

    def validator_score(self, config: Mapping[str, Any], checkpoint: Path) -> float:
        """The score the run's own label-free criterion (``evaluation.selection`` / ``validator``) gives
        ``checkpoint``, on the run's own (aligned) data and test-time input, as the trainer computes it
        (``scripts/select_start_regret.py`` scores warm starts with it)."""
        return self._validator_scorer(config)(checkpoint)

    def _validator_scorer(self, config: Mapping[str, Any]) -> Callable[[Path], float]:
        """``checkpoint -> score`` of the run's own criterion, with one validator and context for every
        checkpoint it scores (as the trainer keeps one validator for a run)."""
        from voxuda.denoisers import build_input_denoiser
        from voxuda.engine.inference import make_input_transform

        rc = self._run_config(config)
        ref = rc.selection_ref
        if ref is None:
            raise ValueError(f"evaluation.selection = {rc.evaluation.selection!r} scores no checkpoint")
        transform = make_input_transform(build_input_denoiser(rc.evaluation.input_denoiser))
        return self._scorer(rc, self._run_data(rc), ref, transform)

    def _oracle_score(self, rc: Any, checkpoint: Path, data: Any) -> float:
        oracle = ComponentRef("target_oracle", {"max_volumes": ORACLE_VOLUMES})
        return self._scorer(rc, data, oracle)(checkpoint)

    def _scorer(self, rc: Any, data: Any, validator_ref: ComponentRef,
                input_transform: Any = None) -> Callable[[Path], float]:
        from voxuda.engine.validators import ValidationContext, build_validator

        validator = build_validator(validator_ref)
        context = ValidationContext(data=data, num_classes=rc.data.num_classes,
                                    batch_size=rc.evaluation.batch_size, input_transform=input_transform)
        return lambda checkpoint: float(validator.score(self._predictor(rc, checkpoint), context))

    # -- checkpoints ------------------------------------------------------------------------------------
    def selected_checkpoint(self, run_dir: Path) -> Path:
        """The checkpoint the run's own criterion chose (``best.pt``; ``last.pt`` for selection 'last')."""
        best = run_dir / "best.pt"
        return best if best.is_file() else run_dir / "last.pt"

    def oracle_choice_checkpoint(self, run_dir: Path) -> Path | None:
        """The kept eval-point checkpoint with the highest target_oracle score (first of ties)."""
        index = _read_index(run_dir / EVALPOINTS)
        if len(index) < 2:
            return None
        best = max(sorted(index, key=int), key=lambda s: index[s]["target_oracle"])
        return run_dir / EVALPOINTS / index[best]["file"]

    def oracle_scores(self, run_dir: Path) -> dict[int, float]:
        """target_oracle score per kept eval point (for the curves figure)."""
        return {int(s): float(v["target_oracle"]) for s, v in _read_index(run_dir / EVALPOINTS).items()}

    def method_flag(self, method: str) -> str:
        from voxuda.plugins import resolve

        cls = resolve("method", method).load_factory()
        return str(getattr(cls, "flag", ""))

    # -- evaluation -------------------------------------------------------------------------------------
    def network_names(self, config: Mapping[str, Any]) -> tuple[str, tuple[str, ...]]:
        """The method's reported network and all its predicting networks (``("", ())`` for a method that
        does not name them: it is evaluated through ``predictor()`` only)."""
        from voxuda.api import build_method

        method = build_method(self._run_config(config).method)
        names = tuple(method.networks())
        reported = method.reported_network if names else ""
        return reported, names

    def _predictor(self, rc: Any, checkpoint: Path, network: str | None = None) -> Any:
        """``method.predictor()`` of ``checkpoint``, or the named network wrapped to return logits."""
        from voxuda.api import build_method
        from voxuda.backbones.blocks import LogitsOnly
        from voxuda.engine.checkpoint import load_checkpoint

        payload = load_checkpoint(checkpoint)
        method = build_method(rc.method)
        method.load_state_dict(payload["method"])
        method.eval()
        self._last_step = int(payload["step"])
        self._last_method = method
        if network is None:
            return method.predictor()
        return LogitsOnly(method.networks()[network]).eval()

    def evaluate(self, config: Mapping[str, Any], run_dir: Path, checkpoint: Path,
                 denoiser: ComponentRef, network: str | None = None) -> EvalResult:
        """Score ``checkpoint`` on the target test split with ``denoiser`` applied to the input; with
        ``network``, that network of ``method.networks()`` instead of ``method.predictor()``."""
        import torch

        from voxuda.denoisers import build_input_denoiser
        from voxuda.engine.decision import calibrate_readout, readout_rule
        from voxuda.engine.evaluate import evaluate_predictor
        from voxuda.engine.inference import make_input_transform, with_test_time_orientations

        rc = self._run_config(config)
        torch.set_num_threads(rc.trainer.num_threads)
        predictor = with_test_time_orientations(self._predictor(rc, checkpoint, network), rc.evaluation.tta)
        transform = make_input_transform(build_input_denoiser(denoiser))
        decision = calibrate_readout(predictor, readout_rule(rc.evaluation), self._readout_splits(rc),
                                     batch_size=rc.evaluation.batch_size, input_transform=transform)
        metrics = evaluate_predictor(predictor, self._test_split(rc), num_classes=rc.data.num_classes,
                                     batch_size=rc.evaluation.batch_size, input_transform=transform,
                                     decision=decision)
        per_class = {name: {"dice": float(m["dice_fg"]), "iou": float(m["iou_fg"])}
                     for name, m in metrics.get("per_macromolecule", {}).items()}
        return EvalResult(dice=float(metrics["overall"]["dice_fg"]), iou=float(metrics["overall"]["iou_fg"]),
                          per_class=per_class, step=self._last_step, n_volumes=int(metrics["volumes"]),
                          decision=decision.record() if decision is not None else None)

    def _readout_splits(self, rc: Any) -> Any:
        """The run's unlabelled, aligned target train split and its source splits, loaded (once, cached)
        only when a test-time decision rule asks for them."""
        from voxuda.engine.decision import ReadoutSplits
        from voxuda.errors import ConfigError

        def source_val(with_labels: bool) -> tuple[Any, Any]:
            held_out = self._run_data(rc).source_val
            if held_out is None:
                raise ConfigError("evaluation.prior_estimate: the dataset has no held-out source "
                                  f"split ({rc.data.val_split}) to measure the network's prior on")
            return held_out.volumes, held_out.labels if with_labels else None

        return ReadoutSplits(target_train=lambda: self._run_data(rc).target_train.volumes,
                             source_val=source_val,
                             source_train_labels=lambda: self._run_data(rc).source_train.labels)

    def example_panels(self, config: Mapping[str, Any], run_dir: Path, n: int = 3) -> list[tuple[str, Any]]:
        """Target input, IBF-denoised input, teacher pseudo-label, prediction, truth of ``n`` test volumes."""
        import torch

        from voxuda.api import build_component
        from voxuda.engine.inference import predict_labels

        rc = self._run_config(config)
        predictor = self._predictor(rc, self.selected_checkpoint(run_dir))
        method = self._last_method
        test = self._test_split(rc)
        x = test.volumes[:n]
        ibf = build_component("denoiser", "improved_bilateral")
        with torch.no_grad():
            den = ibf(x)
            pred = predict_labels(predictor, x, batch_size=n)
            panels = [("target input", x[:, 0].numpy()), ("IBF-denoised input", den[:, 0].numpy())]
            self_training = getattr(method, "self_training", None)  # methods/terms.py: SelfTrainingTerm
            if self_training is not None:
                pseudo = self_training.make_pseudo_labels(self_training.teacher_input(x))
                panels.append(("teacher pseudo-label", pseudo.labels.numpy().astype(np.int64)))
        panels.append(("prediction", pred.numpy().astype(np.int64)))
        if test.labels is not None:
            panels.append(("ground truth", test.labels[:n].numpy().astype(np.int64)))
        return panels

    # -- provenance -------------------------------------------------------------------------------------
    def versions(self) -> dict[str, str]:
        from voxuda.engine.provenance import package_versions

        return package_versions()

    def device_description(self) -> str:
        import os

        import torch

        from voxuda.engine.provenance import cpu_model

        return (f"{cpu_model()} ({torch.backends.cpu.get_cpu_capability()}), {os.cpu_count()} CPUs visible, "
                f"torch threads {torch.get_num_threads()}")


def warm_start(last: Path, parent: Path, record: Path) -> dict[str, Any]:
    """Copy student weights of ``parent`` into the step-0 checkpoint ``last`` (teacher too, from the student).

    Keys are matched by name and shape; a child key ``teacher.X`` takes the parent's ``teacher.X`` when it
    exists, else ``student.X``. Everything else (discriminators, optimiser, RNG) keeps its fresh state. The
    run's ``init.pt`` (beside ``last``) is rewritten with the warm-started weights, so drift is measured from
    them.
    """
    from voxuda.engine.checkpoint import load_checkpoint, save_atomic
    from voxuda.engine.drift import INIT_CHECKPOINT, save_initial_weights

    child = load_checkpoint(last)
    src = load_checkpoint(parent)["method"]
    state = child["method"]
    copied, kept = [], []
    for key, value in state.items():
        candidates = [key]
        if key.startswith("teacher."):
            candidates.append("student." + key[len("teacher."):])
        for cand in candidates:
            other = src.get(cand)
            if other is not None and getattr(other, "shape", None) == getattr(value, "shape", None):
                state[key] = other.clone()
                copied.append(key)
                break
        else:
            kept.append(key)
    if not copied:
        from voxuda.errors import ConfigError

        raise ConfigError(f"init_from: no weights of {parent} match the run's method (same backbone?)")
    save_atomic(child, last)
    save_initial_weights(state, last.with_name(INIT_CHECKPOINT))
    info = {"parent": str(parent), "parent_step": int(load_checkpoint(parent)["step"]),
            "copied": len(copied), "kept_fresh": kept}
    write_json(record, info)
    return info


def _read_index(folder: Path) -> dict[str, Any]:
    return read_json(folder / "index.json", default={})


def default_engine() -> BenchEngine:
    return BenchEngine()


__all__ = ["BenchEngine", "EvalResult", "default_engine", "warm_start"]
