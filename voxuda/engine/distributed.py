"""Helpers for data-parallel training with ``torch.distributed`` (launched by ``torchrun``).

How a voxuda run is parallelised, and why:

* **One process per device**, started by ``torchrun`` (which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
  ``MASTER_ADDR``, ``MASTER_PORT``). :func:`init_distributed` reads them; gloo on CPU, NCCL on CUDA.
* **The same global batch as one process.** Every rank seeds the run's sampling generator identically, draws
  the *global* batch of indices and keeps its own contiguous share (:class:`ShardedPairedSampler`). The
  generator state therefore stays identical on every rank, so the checkpoint that rank 0 writes restores all
  ranks, and a run on N processes sees exactly the samples of a 1-process run with the same global batch.
* **DistributedDataParallel** over the method (:func:`wrap_ddp`): a method's entry point is
  ``training_step``, not ``forward``, so :class:`StepModule` makes ``training_step`` the forward that DDP
  wraps (DDP must see the forward to prepare gradient reduction). Gradients are averaged across ranks, so
  every rank takes the same optimiser step and holds the same student weights.
* **EMA teachers stay identical** because they follow identical averaged student weights with the same
  momentum; DDP also broadcasts rank 0's parameters and buffers (teacher included) when it wraps the model.
  :func:`max_replica_divergence` verifies it (the tests assert it is exactly 0).
* **Metrics are means over ranks** (:func:`all_reduce_mean`), and **only rank 0 writes files**
  (:func:`is_main_process`, :func:`main_process_first`).

Exactness: a loss that is a mean over samples (cross-entropy with equal per-rank batch sizes) gives the same
gradient as one process; a batch-summed soft Dice, BatchNorm statistics or a confidence-masked mean over a
different number of voxels per rank are computed per rank, as with any DDP training (docs/distributed.md).
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import os
import zlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import attrs
import torch
import torch.distributed as dist
from torch import Tensor, nn

if TYPE_CHECKING:  # pragma: no cover
    from voxuda.methods.base import Method

__all__ = [
    "DistContext",
    "env_world",
    "init_distributed",
    "cleanup",
    "is_main_process",
    "barrier",
    "main_process_first",
    "shard_range",
    "ShardedPairedSampler",
    "StepModule",
    "wrap_ddp",
    "unwrap",
    "all_reduce_mean",
    "broadcast_object",
    "max_replica_divergence",
    "free_port",
    "truncate_metrics",
    "remove_stale_temporaries",
]


@attrs.frozen
class DistContext:
    """Where this process stands: rank, world size, local rank, backend and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""
    device: torch.device = attrs.field(factory=lambda: torch.device("cpu"))
    #: True when :func:`init_distributed` created the process group (so :func:`cleanup` may destroy it)
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        """True when more than one process takes part (a process group exists)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_world(environ: Mapping[str, str] | None = None) -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun's environment variables (``0, 1, 0`` when absent)."""
    env = os.environ if environ is None else environ
    try:
        rank = int(env.get("RANK", "0"))
        world = int(env.get("WORLD_SIZE", "1"))
        local = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError as exc:
        raise ValueError(f"RANK/WORLD_SIZE/LOCAL_RANK must be integers ({exc}); use torchrun") from exc
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"invalid distributed environment: RANK={rank} WORLD_SIZE={world}")
    return rank, world, local


def init_distributed(device: str | torch.device = "cpu", backend: str | None = None,
                     timeout_s: float = 1800.0) -> DistContext:
    """Join the process group described by the environment; a no-op context for a single process.

    ``device`` ``cuda``/``auto`` (with CUDA present) selects NCCL and this rank's GPU ``cuda:LOCAL_RANK``;
    otherwise gloo and the CPU. ``backend`` forces one. Idempotent: an existing group is reused.
    """
    rank, world, local = env_world()
    name = str(device)
    wants_cuda = name.startswith("cuda") or (name == "auto" and torch.cuda.is_available())
    if wants_cuda and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available; use cpu (gloo)")
    cpu = torch.device("cpu")
    gpus = torch.cuda.device_count() if wants_cuda else 0
    if wants_cuda and world > 1 and local >= gpus:
        # two ranks on one GPU end in NCCL's "Duplicate GPU detected", which names neither option
        raise ValueError(f"LOCAL_RANK={local} but this machine has {gpus} CUDA device(s): start at most "
                         f"{gpus} process(es) per node (torchrun --nproc-per-node {gpus}) or set "
                         "trainer.device = \"cpu\" (gloo)")
    dev = torch.device("cuda", local) if wants_cuda else cpu
    if world == 1:
        return DistContext(0, 1, 0, "", dev)
    chosen = backend or ("nccl" if wants_cuda else "gloo")
    if wants_cuda:
        torch.cuda.set_device(dev)
    created = not dist.is_initialized()
    if created:
        for key in ("MASTER_ADDR", "MASTER_PORT"):
            if key not in os.environ:
                raise ValueError(f"{key} is not set; launch with torchrun (it sets it) or export it")
        kwargs: dict[str, Any] = {
            "backend": chosen, "init_method": "env://", "rank": rank, "world_size": world,
            "timeout": datetime.timedelta(seconds=timeout_s),
        }
        if chosen == "nccl":
            kwargs["device_id"] = dev
        dist.init_process_group(**kwargs)
    return DistContext(rank, world, local, chosen, dev, owns_group=created)


def cleanup(context: DistContext | None = None, *, synchronize: bool = True) -> None:
    """Leave the process group (safe to call when none exists).

    With a ``context``, only a group that :func:`init_distributed` created is destroyed, so ``train()`` called
    from a script that set up its own group leaves that group alone.

    ``synchronize`` waits at a barrier first: a rank that tears gloo down (and exits) while a peer still
    finishes its last collective closes the peer's sockets under it, and the peer aborts with "terminate
    called without an active exception" (seen once in CI on the two-process test). Pass ``False`` on an
    error path, where the peers may never reach the barrier.
    """
    if context is not None and not context.owns_group:
        return
    if dist.is_available() and dist.is_initialized():
        if synchronize and dist.get_world_size() > 1:
            dist.barrier()
        gc.collect()  # a DDP wrapper in a reference cycle holds gloo work: free it while the group lives
        dist.destroy_process_group()


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def is_main_process() -> bool:
    """True on rank 0 or when not distributed: the one process that writes files."""
    return not _active() or dist.get_rank() == 0


def barrier() -> None:
    if _active():
        dist.barrier()


@contextlib.contextmanager
def main_process_first() -> Iterator[bool]:
    """Rank 0 runs the block first (e.g. simulating a dataset), the others after it; yields ``is_main``."""
    main = is_main_process()
    if not main:
        barrier()
    try:
        yield main
    finally:
        if main:
            barrier()


def shard_range(global_size: int, rank: int, world_size: int) -> tuple[int, int]:
    """``[start, stop)`` of this rank's contiguous share of a global batch; sizes must divide evenly."""
    if global_size % world_size:
        raise ValueError(
            f"trainer.batch_size {global_size} is the global batch and must be divisible by the "
            f"{world_size} processes; use a multiple of {world_size}"
        )
    share = global_size // world_size
    return rank * share, (rank + 1) * share


class ShardedPairedSampler:
    """Wrap the engine's ``PairedSampler`` (drawing the *global* batch) and keep this rank's share.

    The wrapped sampler and the generator it draws with are identical on every rank, so their state is
    identical too; ``state_dict``/``load_state_dict`` pass through unchanged.
    """

    def __init__(self, inner: Any, rank: int, world_size: int) -> None:
        self.inner = inner
        self.rank = rank
        self.world_size = world_size
        self.start, self.stop = shard_range(int(inner.batch_size), rank, world_size)

    def next(self, generator: torch.Generator) -> tuple[Any, Any]:
        source, target = self.inner.next(generator)
        index = torch.arange(self.start, self.stop)
        return source.take(index), target.take(index)

    def state_dict(self) -> Any:
        return self.inner.state_dict()

    def load_state_dict(self, state: Any) -> None:
        self.inner.load_state_dict(state)


class StepModule(nn.Module):
    """Make ``method.training_step`` the ``forward`` that DDP wraps; returns ``(loss, losses, metrics)``."""

    def __init__(self, method: Method) -> None:
        super().__init__()
        self.method = method

    def forward(self, source: Any, target: Any, step: int
                ) -> tuple[Tensor, dict[str, float], dict[str, float]]:
        out = self.method.training_step(source, target, step)
        return out.loss, out.losses, out.metrics


def wrap_ddp(method: Method, context: DistContext, *, find_unused_parameters: bool = True) -> nn.Module:
    """``DistributedDataParallel(StepModule(method))`` on this rank's device (the method itself if single).

    ``find_unused_parameters`` defaults to True because methods switch losses on and off by step (warm-up,
    ramps), leaving some parameters without gradients in some steps; the cost is one graph walk per step.
    """
    if not context.enabled:
        return StepModule(method)
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [context.device.index] if context.device.type == "cuda" else None
    return DistributedDataParallel(StepModule(method), device_ids=device_ids,
                                   find_unused_parameters=find_unused_parameters)


def unwrap(module: nn.Module) -> nn.Module:
    """The method inside a DDP/StepModule wrapper (for state dicts, predictors and hooks)."""
    inner = getattr(module, "module", module)
    return getattr(inner, "method", inner)


def all_reduce_mean(values: Mapping[str, float], device: torch.device | str = "cpu") -> dict[str, float]:
    """Mean of each scalar over ranks (identity without a process group).

    Every rank must pass the same keys (they come from the same method code); they are checked once by
    comparing the sorted key list's length and a CRC so a mismatch fails loudly instead of mixing values.
    """
    keys = sorted(values)
    if not _active():
        return {k: float(values[k]) for k in keys}
    fingerprint = float(zlib.crc32("\n".join(keys).encode()))  # str hash() differs between processes
    packed = torch.tensor([float(values[k]) for k in keys] + [len(keys), fingerprint], dtype=torch.float64,
                          device=device)
    lo, hi = packed[-2:].clone(), packed[-2:].clone()
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    if not torch.equal(lo, hi):
        raise RuntimeError(f"ranks logged different metric names; this rank has {keys}")
    dist.all_reduce(packed[:-2], op=dist.ReduceOp.SUM)
    world = dist.get_world_size()
    return {k: float(v) / world for k, v in zip(keys, packed[:-2].tolist())}


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s Python object on every rank (identity without a process group)."""
    if not _active():
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def _flat_state(module: nn.Module, device: torch.device) -> Tensor:
    parts = [t.detach().reshape(-1).to(device=device, dtype=torch.float64)
             for t in module.state_dict().values() if t.is_floating_point()]
    return torch.cat(parts) if parts else torch.zeros(1, dtype=torch.float64, device=device)


def max_replica_divergence(module: nn.Module, device: torch.device | str = "cpu") -> float:
    """Largest difference of any floating-point parameter or buffer between ranks (0.0 when single).

    Use it to verify that replicas (students and EMA teachers) are identical, e.g. every few hundred steps.
    A NaN in the same place on every rank counts as identical (e.g. a "not measured yet" buffer such as the
    pseudo-label prior); a NaN on some ranks only is an infinite divergence.
    """
    if not _active():
        return 0.0
    flat = _flat_state(module, torch.device(device))
    nan = torch.isnan(flat)
    values = torch.where(nan, torch.zeros_like(flat), flat)
    both = torch.cat([values, nan.to(flat.dtype)])
    lo, hi = both.clone(), both.clone()
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    n = values.numel()
    if bool((hi[n:] != lo[n:]).any()):
        return float("inf")
    return float((hi[:n] - lo[:n]).abs().max())


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` now (for tests and single-node launches without torchrun)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


# -- run-folder bookkeeping on resume (rank 0) -----------------------------------------------------------
def truncate_metrics(path: str | os.PathLike[str], step: int) -> int:
    """Cut ``metrics.jsonl`` back to the records of steps ``<= step`` (the checkpoint being resumed).

    A run killed after logging steps past its last checkpoint would otherwise log them again on resume
    (duplicates), and a kill during a write leaves a torn last line; both are dropped here, atomically
    (temporary file + ``os.replace``). Returns the number of lines dropped. A missing file is fine.
    """
    import json
    from pathlib import Path

    file = Path(path)
    if not file.is_file():
        return 0
    kept, dropped = [], 0
    for line in file.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            dropped += 1
            continue
        record_step = record.get("step") if isinstance(record, dict) else None
        if isinstance(record_step, int) and record_step > step:
            dropped += 1
            continue
        kept.append(line)
    if dropped == 0:
        return 0
    from voxuda.atomic import write_text

    write_text(file, "".join(f"{line}\n" for line in kept))
    return dropped


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[str]:
    """Delete the temporary files that atomic writes killed mid-way left in a run folder (rank 0, holding the
    run folder's lock; :func:`voxuda.atomic.remove_stale_temporaries`)."""
    from voxuda.atomic import remove_stale_temporaries as remove

    return remove(folder, legacy=True)
