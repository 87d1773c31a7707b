"""pytest-benchmark cases of training steps at a small size (not part of `pytest tests`): the trainer's own
step for source-only, mean teacher, DANN and Vox-UDA, U-Net 4-8-16 on batch 4 x 16^3, 1 thread.

Run: pytest benchmarks/test_bench_train.py --benchmark-only --benchmark-enable
(`benchmarks/bench_train.py` measures the quick and paper sizes, interleaved, with the breakdown.)
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_train  # noqa: E402


@pytest.fixture(scope="module")
def small_data():  # type: ignore[no-untyped-def]
    return bench_train.synthetic_data(box=16, n_source=32, n_target=24)


@pytest.mark.benchmark(group="train-step-unet4-8-16-batch4-16^3")
@pytest.mark.parametrize("method", bench_train.METHODS)
def test_bench_train_step(benchmark, small_data, method: str) -> None:  # type: ignore[no-untyped-def]
    torch.set_num_threads(1)
    config = bench_train.run_config(method, {"name": "unet3d", "widths": [4, 8, 16]}, threads=1, batch=4,
                                    box=16)
    trainer = bench_train.build_trainer(config, small_data)
    cache = getattr(getattr(trainer.method, "self_training", None), "teacher_input_cache", None)
    if method == "vox_uda":  # its default teacher denoiser (IBF) is cached: timed in the steady state
        assert cache is not None and len(cache) == len(small_data.target_train.volumes)
    bench_train.trainer_step(trainer)  # warm-up
    start = trainer.step
    benchmark.pedantic(bench_train.trainer_step, args=(trainer,), rounds=5, iterations=1)
    assert trainer.step == start + 5
    assert trainer.method.training  # the trainer's own step ran (it puts the method in train mode)
