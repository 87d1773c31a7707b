"""Train, then evaluate the selected checkpoint: the sequence ``voxuda train`` runs, written once.

Why not inside :func:`~voxuda.engine.trainer.train`: the trainer used to end by calling
:func:`~voxuda.engine.evaluate.evaluate_run`, while evaluation imported the trainer's device helper, a
circle between two modules that should sit one above the other. Not every caller wants that evaluation
either: the benchmark (:mod:`voxuda.bench.executor`) trains in slices and evaluates every network under every
test-time denoiser itself, and ``--init-from`` stages a zero-step run. So :func:`train` only trains, and the
callers that want the default evaluation (the CLI, :func:`voxuda.testing.train_tiny`, tests and notebooks)
call :func:`train_and_evaluate`, the one place that decides when it runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

from voxuda.engine.data import RunData
from voxuda.engine.evaluate import evaluate_run
from voxuda.engine.run_config import RunConfig
from voxuda.engine.trainer import RunResult, train


def train_and_evaluate(
    run_config: RunConfig,
    out_dir: str | Path,
    resume: bool = False,
    *,
    data: RunData | None = None,
    stop_after: int | None = None,
) -> RunResult:
    """:func:`~voxuda.engine.trainer.train` (same arguments), then, once the run is complete, evaluate its
    selected checkpoint on ``evaluation.split`` and put that record in ``RunResult.evaluation``.

    Nothing is evaluated when ``evaluation.split`` is empty, on the ranks of a distributed run other than 0,
    for a session that stopped early (``stop_after``), or when the target domain has no labels (real target
    data: there is nothing to score against; a note says so on stderr).
    """
    result = train(run_config, out_dir, resume, data=data, stop_after=stop_after)
    split = run_config.evaluation.split
    if not (result.main_process and result.completed and split):
        return result
    if not result.target_labelled:  # real target data (e.g. `voxuda extract` output)
        print(f"voxuda: note: the target domain has no labels; skipped the evaluation on {split!r} "
              "(set evaluation.split = \"\" to silence this)", file=sys.stderr)
        return result
    result.evaluation = evaluate_run(result.out_dir, split=split, checkpoint="best", data_override=data)
    return result
