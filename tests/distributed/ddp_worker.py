"""Worker code run inside spawned processes by the distributed tests (importable, hence its own module)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

METHOD = {
    "name": "mean_teacher",
    "backbone": {"name": "unet3d", "widths": [4, 8]},
    "augment": False,
    "confidence_threshold": 0.0,
    "dice_weight": 0.0,
    "ema_momentum": 0.9,
}


def run_steps(steps: int, global_batch: int, rank: int = 0, world_size: int = 1) -> dict[str, Any]:
    """Train the EMA-teacher method for ``steps`` steps exactly as the trainer does (sharded when world > 1).

    Returns the method's state dict, the rank-mean metrics per step and the largest replica divergence.
    """
    from tests.conftest import blob_split
    from voxuda.api import build_method
    from voxuda.engine.data import PairedSampler, RunData
    from voxuda.engine.distributed import (
        ShardedPairedSampler,
        all_reduce_mean,
        init_distributed,
        max_replica_divergence,
        wrap_ddp,
    )
    from voxuda.methods.base import SourceBatch, TargetBatch, TrainContext

    torch.set_num_threads(1)
    context = init_distributed("cpu")
    assert context.world_size == world_size and context.rank == rank
    torch.manual_seed(1000 + rank)  # different init per rank on purpose: DDP must broadcast rank 0's weights
    method = build_method(METHOD)
    generator = torch.Generator().manual_seed(0)  # the sampling generator: identical on every rank
    data = RunData(blob_split(8, seed=1), blob_split(8, seed=2, contrast=0.7, noise=0.6))
    sampler: Any = PairedSampler(data, global_batch, "random")
    if context.enabled:
        sampler = ShardedPairedSampler(sampler, context.rank, context.world_size)
    method.on_train_start(TrainContext(total_steps=steps, device=torch.device("cpu"), generator=generator,
                                       sample_target=lambda n: data.target_train.volumes[:n]))
    optimizer = torch.optim.Adam(method.trainable_parameters(), lr=3e-3)
    step_module = wrap_ddp(method, context)
    history = []
    for step in range(steps):
        src, tgt = sampler.next(generator)
        method.train()
        loss, losses, _ = step_module(SourceBatch(src.volumes, src.labels), TargetBatch(tgt.volumes), step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        method.on_after_optimizer_step(step)
        history.append(all_reduce_mean({"loss": float(loss.detach()), **losses}))
    divergence = max_replica_divergence(method)
    return {"state": {k: v.detach().clone() for k, v in method.state_dict().items()},
            "history": history, "divergence": divergence}


def spawn_entry(rank: int, world_size: int, port: int, steps: int, global_batch: int, out: str) -> None:
    """``torch.multiprocessing.spawn`` target: join a gloo group on loopback, train, save rank results."""
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank), "GLOO_SOCKET_IFNAME": "lo"})
    from voxuda.engine.distributed import cleanup

    try:
        result = run_steps(steps, global_batch, rank, world_size)
        torch.save(result, Path(out) / f"rank{rank}.pt")
    except BaseException:
        cleanup(synchronize=False)  # a failed peer never reaches the barrier
        raise
    cleanup()  # barrier, then destroy: no rank closes its sockets while the other still communicates
