"""The training loop: ``train(run_config, out_dir, resume=False) -> RunResult``.

One run folder holds ``config.toml`` (resolved), ``run.json`` (provenance, :mod:`voxuda.engine.run_record`),
``metrics.jsonl`` (one line per logged step), ``init.pt`` (the method's weights at step 0), ``last.pt`` and
``best.pt`` (when a validator selects), and ``eval_<split>_<ckpt>.json`` once evaluated
(:func:`voxuda.engine.pipeline.train_and_evaluate`, as ``voxuda train`` does). ``run.json`` also holds the
config check's ``warnings``, the ``teacher_schedule`` of EMA-teacher methods, and, after every session, each
network's ``drift`` from ``init.pt`` (:mod:`voxuda.engine.drift`).
Determinism: everything random flows from ``seed`` (global torch/numpy/python RNGs for initialisation, one
``torch.Generator`` for sampling and augmentation), and every state is in the checkpoint, so ``resume=True``
continues to the same parameters as an uninterrupted run on CPU.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any

import attrs
import torch

from voxuda.config import dump_toml
from voxuda.denoisers import build_input_denoiser
from voxuda.engine import provenance
from voxuda.engine.checkpoint import FORMAT, VERSION, capture_rng, load_checkpoint, restore_rng, save_atomic
from voxuda.engine.data import PairedSampler, RunData, ensure_aligned, load_run_data
from voxuda.engine.distributed import (
    DistContext,
    ShardedPairedSampler,
    all_reduce_mean,
    barrier,
    cleanup,
    init_distributed,
    main_process_first,
    remove_stale_temporaries,
    truncate_metrics,
    wrap_ddp,
)
from voxuda.engine.drift import INIT_CHECKPOINT, save_initial_weights
from voxuda.engine.inference import make_input_transform
from voxuda.engine.metrics_log import MetricsLog
from voxuda.engine.optim import build_optimizer, build_scheduler
from voxuda.engine.run_config import RunConfig, check_run_config
from voxuda.engine.run_record import finish_record, resolved_run_config, resume_record, start_record
from voxuda.engine.runtime import resolve_device, seed_everything, skip_uninitialized_fill
from voxuda.engine.validators import ValidationContext, build_validator
from voxuda.errors import ConfigError
from voxuda.methods.base import Method, SourceBatch, TargetBatch, TrainContext


@attrs.define
class RunResult:
    """What :func:`train` returns.

    ``main_process`` is false on the ranks of a distributed run other than 0 (they write no files);
    ``target_labelled`` says whether the target training split had labels (simulated data: there is
    something to score an evaluation against). ``evaluation`` stays None here: :func:`train` only trains, and
    :func:`voxuda.engine.pipeline.train_and_evaluate` fills it with the ``eval_<split>_best.json`` record.
    """

    out_dir: Path
    step: int
    completed: bool
    last_checkpoint: Path
    best_checkpoint: Path | None = None
    best_score: float | None = None
    best_step: int | None = None
    final_losses: dict[str, float] = attrs.field(factory=dict)
    main_process: bool = True
    target_labelled: bool = True
    evaluation: dict[str, Any] | None = None


class _NullLog:
    """What ranks other than 0 log to: nothing (only rank 0 writes files)."""

    def write(self, record: dict[str, Any]) -> None:
        pass


class _Trainer:
    """State of one training session (fresh or resumed), alone or on one rank of a distributed run."""

    def __init__(self, config: RunConfig, out_dir: Path, resume: bool, data: RunData | None,
                 dist_context: DistContext | None = None) -> None:
        self.config = config
        self.out_dir = out_dir
        self.resume = resume
        cfg = config.trainer
        check_run_config(config)
        torch.set_num_threads(cfg.num_threads)
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            skip_uninitialized_fill()
        self.dist = dist_context if dist_context is not None else DistContext()
        # distributed: cuda -> cuda:LOCAL_RANK; the same seed on every rank (identical init and sampling)
        self.device = self.dist.device if self.dist.enabled else resolve_device(cfg.device)
        seed_everything(config.seed)
        if data is not None:
            self.data = ensure_aligned(data, config.data)  # in-memory data get [data] alignment too
        else:
            with main_process_first():  # rank 0 simulates a missing dataset, the others then read it
                self.data = load_run_data(config.data, config.seed)
        from voxuda.api import build_method

        self.method: Method = build_method(config.method)
        self.method.to(self.device)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.sampler: Any = PairedSampler(self.data, cfg.batch_size, cfg.sampling)
        if self.dist.enabled:  # batch_size is the global batch; each rank keeps its contiguous share
            self.sampler = ShardedPairedSampler(self.sampler, self.dist.rank, self.dist.world_size)
        self.method.on_train_start(
            TrainContext(
                total_steps=cfg.steps,
                device=self.device,
                sample_target=self._sample_target,
                generator=self.generator,
                extra={"run_config": config, "data": self.data},
            )
        )
        self.optimizer = build_optimizer(self.method.optimizer_groups(), cfg)
        # DDP over training_step (broadcasts rank 0's weights, averages gradients); a plain wrapper alone
        self.step_module = wrap_ddp(self.method, self.dist)
        self.scheduler = build_scheduler(self.optimizer, cfg)
        selection = config.selection_ref
        self.validator = build_validator(selection) if selection is not None else None
        self.selection_name = selection.name if selection is not None else "last"
        self.input_denoiser = build_input_denoiser(config.evaluation.input_denoiser)
        self.input_transform = make_input_transform(self.input_denoiser)
        self.step = 0
        self.best_score: float | None = None
        self.best_step: int | None = None

    # -- helpers --------------------------------------------------------------------------------------
    def _sample_target(self, n: int) -> torch.Tensor:
        index = torch.randint(0, len(self.data.target_train), (n,), generator=self.generator)
        return self.data.target_train.volumes[index].to(self.device)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if not self.config.trainer.amp:
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.device.type == "cpu" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def checkpoint_payload(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "step": self.step,
            "method": self.method.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "sampler": self.sampler.state_dict(),
            "rng": capture_rng(self.generator),
            "best": {
                "score": float("nan") if self.best_score is None else self.best_score,
                "step": -1 if self.best_step is None else self.best_step,
            },
            "selection": self.selection_name,
        }

    def save(self, name: str) -> Path:
        path = self.out_dir / name
        if self.dist.is_main:  # only rank 0 writes; every rank holds the same state
            save_atomic(self.checkpoint_payload(), path)
        return path

    def restore(self, path: Path) -> None:
        payload = load_checkpoint(path, map_location=self.device)
        self.method.load_state_dict(payload["method"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        self.sampler.load_state_dict(payload["sampler"])
        restore_rng(payload["rng"], self.generator)
        self.step = int(payload["step"])
        best = payload.get("best", {})
        score = float(best.get("score", float("nan")))
        self.best_score = None if math.isnan(score) else score
        step = int(best.get("step", -1))
        self.best_step = None if step < 0 else step

    def validate(self) -> float | None:
        if self.validator is None or not self.dist.is_main:
            return None
        context = ValidationContext(
            data=self.data,
            num_classes=self.config.data.num_classes,
            device=self.device,
            batch_size=self.config.evaluation.batch_size,
            input_transform=self.input_transform,
        )
        return float(self.validator.score(self.method.predictor(), context))

    # -- the loop -------------------------------------------------------------------------------------
    def run(self, log: MetricsLog | _NullLog, stop_after: int | None) -> RunResult:
        cfg = self.config.trainer
        uses_labels = bool(getattr(self.method, "uses_target_labels", False))
        running: dict[str, float] = {}
        session_steps = 0
        progress = None
        if cfg.progress and self.dist.is_main:  # one bar per run, not one per rank
            from tqdm.auto import tqdm

            progress = tqdm(total=cfg.steps, initial=self.step, desc="train", dynamic_ncols=True, leave=False)
        last_losses: dict[str, float] = {}
        if self.step == 0 and self.config.evaluation.select_start and stop_after != 0:
            # the starting weights as a candidate; not in a zero-step session, which only stages a run folder
            # whose weights a warm start then replaces (bench executor, ``--init-from``)
            self._select(log)
        try:
            while self.step < cfg.steps:
                if stop_after is not None and session_steps >= stop_after:
                    break
                last_losses = self._one_step(uses_labels)
                self.step += 1
                session_steps += 1
                for key, value in last_losses.items():
                    running[key] = value if key not in running else 0.9 * running[key] + 0.1 * value
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    logged = all_reduce_mean(last_losses, self.device) if self.dist.enabled else last_losses
                    log.write({"step": self.step, "lr": self.scheduler.get_last_lr()[0], **logged})
                if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < cfg.steps:
                    self._select(log)
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                    self.save("last.pt")
                if progress is not None:
                    progress.update(1)
                    keys = ("loss", "seg", "pseudo", "domain", "dis")  # DANN logs "domain", Vox-UDA "dis"
                    shown = {k: f"{v:.3g}" for k, v in running.items() if k in keys}
                    progress.set_postfix(shown, refresh=False)
        finally:
            if progress is not None:
                progress.close()
        completed = self.step >= cfg.steps
        if completed:
            self._select(log)
        last = self.save("last.pt")
        best_path = self.out_dir / "best.pt"
        return RunResult(
            out_dir=self.out_dir,
            step=self.step,
            completed=completed,
            last_checkpoint=last,
            best_checkpoint=best_path if best_path.is_file() else None,
            best_score=self.best_score,
            best_step=self.best_step,
            final_losses=last_losses,
            main_process=self.dist.is_main,
            target_labelled=self.data.target_train.labels is not None,
        )

    def _one_step(self, uses_labels: bool) -> dict[str, float]:
        cfg = self.config.trainer
        src, tgt = self.sampler.next(self.generator)
        assert src.labels is not None
        source = SourceBatch(src.volumes.to(self.device), src.labels.to(self.device))
        target_label = tgt.labels.to(self.device) if (uses_labels and tgt.labels is not None) else None
        target = TargetBatch(tgt.volumes.to(self.device), target_label, tgt.index)
        self.method.train()
        with self._autocast():
            loss, losses, metrics = self.step_module(source, target, self.step)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"loss became {float(loss)} at step {self.step + 1}; lower trainer.lr"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # under DDP this also averages the gradients over ranks
        values: dict[str, float] = {"loss": float(loss.detach())}
        if cfg.grad_clip > 0:
            params = [p for group in self.optimizer.param_groups for p in group["params"]]
            norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            values["grad_norm"] = float(norm)
        self.optimizer.step()
        self.scheduler.step()
        self.method.on_after_optimizer_step(self.step)
        values.update(losses)
        values.update(metrics)
        return values

    def _select(self, log: MetricsLog | _NullLog) -> None:
        score = self.validate()
        if score is None:
            return
        improved = self.best_score is None or score > self.best_score
        log.write({"step": self.step, "event": "validation", "criterion": self.selection_name,
                   "score": score, "improved": improved})
        if improved:
            self.best_score, self.best_step = score, self.step
            self.save("best.pt")


def train(
    run_config: RunConfig,
    out_dir: str | Path,
    resume: bool = False,
    *,
    data: RunData | None = None,
    stop_after: int | None = None,
) -> RunResult:
    """Train ``run_config`` into ``out_dir``.

    ``resume=True`` continues from ``out_dir/last.pt``. ``stop_after`` ends this session after that many steps
    with a checkpoint (time-sliced training, and how the resume tests simulate an interruption). ``data``
    injects in-memory data instead of reading ``[data]`` (tests, notebooks). Nothing is evaluated here: the
    evaluation on ``evaluation.split`` is :func:`voxuda.engine.pipeline.train_and_evaluate`'s second step.
    """
    out = Path(out_dir)
    last = out / "last.pt"
    if resume and not last.is_file() and not (out / "config.toml").is_file():
        raise ConfigError(f"{out}: nothing to resume (no last.pt); run without --resume")
    if not resume and last.is_file():
        raise ConfigError(f"{out}: run folder already holds a run; pass --resume or choose another --out")
    # a run killed before its first checkpoint has nothing complete to continue from: it restarts at step 0
    resume = resume and last.is_file()
    dist_context = init_distributed(run_config.trainer.device)  # a no-op context without torchrun
    main = dist_context.is_main
    try:
        trainer = _Trainer(run_config, out, resume, data, dist_context)  # bad data: no run folder made
        if main:
            out.mkdir(parents=True, exist_ok=True)
        barrier()
        run_json = out / "run.json"
        if resume:
            trainer.restore(last)
            record = resume_record(run_json, trainer.step,
                                   provenance.numerics(str(trainer.device), run_config.trainer.num_threads))
        else:
            record = start_record(run_config, trainer)
        if main:
            remove_stale_temporaries(out)  # temp files of atomic writes a kill interrupted
            if resume:  # drop steps logged after the checkpoint (and a torn last line): no duplicates
                truncate_metrics(out / "metrics.jsonl", trainer.step)
            else:
                config_text = dump_toml(resolved_run_config(run_config))
                provenance.write_text_atomic(config_text, out / "config.toml")
                (out / "metrics.jsonl").unlink(missing_ok=True)  # lines of a run killed before any checkpoint
                save_initial_weights(trainer.method.state_dict(), out / INIT_CHECKPOINT)
            provenance.write_json_atomic(record, run_json)
        with MetricsLog(out / "metrics.jsonl") if main else contextlib.nullcontext(_NullLog()) as log:
            if resume:
                log.write({"event": "resume", "step": trainer.step})
            result = trainer.run(log, stop_after)
        barrier()
        completed_normally = True
    except BaseException:
        completed_normally = False
        raise
    finally:
        if dist_context.enabled:
            cleanup(dist_context, synchronize=completed_normally)
    if main:
        record = finish_record(record, trainer, out, completed=result.completed)
        provenance.write_json_atomic(record, run_json)
    return result
