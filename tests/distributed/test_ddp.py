"""Two CPU processes (gloo on loopback) train to the same model as one process with the same global batch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from tests.distributed.ddp_worker import run_steps, spawn_entry
from voxuda.engine.distributed import (
    DistContext,
    all_reduce_mean,
    env_world,
    free_port,
    max_replica_divergence,
    shard_range,
)

STEPS = 3
GLOBAL_BATCH = 4
#: Averaging two half-batch gradients instead of one full-batch gradient changes float rounding only;
#: after 3 Adam steps parameters agree to ~1e-7. 1e-5 leaves room and still catches any real difference
#: (a wrong shard, unsynchronised gradients or teachers move parameters by ~1e-3 per step at lr 3e-3).
TOLERANCE = 1e-5


def test_two_gloo_processes_equal_one_process_with_the_same_global_batch(tmp_path: Path) -> None:
    mp.spawn(spawn_entry, args=(2, free_port(), STEPS, GLOBAL_BATCH, str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    torch.manual_seed(1000)
    single = run_steps(STEPS, GLOBAL_BATCH)
    # replicas, EMA teachers included, are bit-identical across ranks
    assert ranks[0]["divergence"] == 0.0 and ranks[1]["divergence"] == 0.0
    for key in ranks[0]["state"]:
        torch.testing.assert_close(ranks[0]["state"][key], ranks[1]["state"][key], rtol=0, atol=0,
                                   equal_nan=True, msg=key)
    # ... and equal to one process with the same global batch
    assert any(k.startswith("teacher") for k in single["state"])
    for key, value in single["state"].items():
        torch.testing.assert_close(ranks[0]["state"][key], value, rtol=0, atol=TOLERANCE, equal_nan=True,
                                   msg=key)
    # the logged (rank-mean) losses are the global-batch losses; the soft Dice (logged, weight 0 here) sums
    # over each rank's batch, so its rank mean is not the global one (docs/distributed.md)
    for mine, reference in zip(ranks[0]["history"], single["history"]):
        assert mine.keys() == reference.keys()
        for key in mine.keys() - {"dice"}:
            assert mine[key] == pytest.approx(reference[key], abs=TOLERANCE), key
        assert mine["dice"] != pytest.approx(reference["dice"], abs=1e-7)
    # the model did move: the comparison is not between two untouched initialisations
    torch.manual_seed(1000)
    untouched = run_steps(0, GLOBAL_BATCH)["state"]
    moved = max(float((single["state"][k] - untouched[k]).abs().max()) for k in untouched
                if untouched[k].is_floating_point())
    assert moved > 100 * TOLERANCE


def test_helpers_without_a_process_group() -> None:
    assert env_world({}) == (0, 1, 0)
    assert env_world({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == (3, 4, 1)
    with pytest.raises(ValueError, match="invalid"):
        env_world({"RANK": "4", "WORLD_SIZE": "4"})
    assert shard_range(8, 1, 4) == (2, 4)
    with pytest.raises(ValueError, match="divisible"):
        shard_range(6, 0, 4)
    assert all_reduce_mean({"b": 2, "a": 1.5}) == {"a": 1.5, "b": 2.0}
    assert max_replica_divergence(torch.nn.Linear(2, 2)) == 0.0
    context = DistContext()
    assert not context.enabled and context.is_main


def test_more_ranks_per_node_than_gpus_is_refused_before_nccl(monkeypatch: pytest.MonkeyPatch) -> None:
    from voxuda.engine.distributed import init_distributed

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    for key, value in {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValueError, match=r"LOCAL_RANK=1 but .* 1 CUDA device\(s\).*--nproc-per-node 1"):
        init_distributed("auto")


def test_sharded_sampler_splits_the_global_batch_disjointly() -> None:
    from tests.conftest import blob_split
    from voxuda.engine.data import PairedSampler, RunData
    from voxuda.engine.distributed import ShardedPairedSampler

    data = RunData(blob_split(8, seed=1), blob_split(8, seed=2))
    for mode in ("random", "epoch"):
        whole = PairedSampler(data, 6, mode)  # type: ignore[arg-type]
        shards = [ShardedPairedSampler(PairedSampler(data, 6, mode), r, 3) for r in range(3)]  # type: ignore[arg-type]
        generators = [torch.Generator().manual_seed(5) for _ in range(4)]
        for _ in range(3):
            src, tgt = whole.next(generators[0])
            parts = [s.next(g) for s, g in zip(shards, generators[1:])]
            torch.testing.assert_close(torch.cat([p[0].volumes for p in parts]), src.volumes, rtol=0, atol=0)
            torch.testing.assert_close(torch.cat([p[1].volumes for p in parts]), tgt.volumes, rtol=0, atol=0)
            assert all(p[0].volumes.shape[0] == 2 for p in parts)
        # the generator and sampler state stay identical on every rank (one checkpoint restores all)
        assert all(torch.equal(g.get_state(), generators[0].get_state()) for g in generators[1:])
        states = [s.state_dict() for s in shards]
        assert all(torch.equal(st["source"]["order"], whole.state_dict()["source"]["order"]) for st in states)
