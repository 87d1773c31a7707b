"""A fake benchmark engine: the runner's plumbing (resume, reuse, networks, eval points, tables) without
training. It 'trains' by writing marker files in the engine's layout (last.pt, best.pt, metrics.jsonl and
kept eval points with an index) and scores checkpoints from a table, so tests know every expected number."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from voxuda.bench.executor import EVALPOINTS, BenchEngine, EvalResult
from voxuda.config import ComponentRef

#: Dice the fake engine reports per method (identity input); gaussian input adds 0.05.
FAKE_DICE = {"source_only": 0.5, "mean_teacher": 0.6, "oracle": 0.8}
#: Networks per method (reported first); others have a single "student".
NETWORKS = {"mean_teacher": ("teacher", ("student", "teacher"))}


def run_label(run_dir: Path) -> str:
    return Path(run_dir).parts[-2]


class FakeEngine(BenchEngine):
    """Counts trainer and evaluation calls; see the module doc.

    ``dice(config, run_dir, checkpoint, denoiser, network)`` may be replaced to script the scores; by default
    a method's ``FAKE_DICE`` + 0.05 for gaussian input + 0.01 per seed, + 0.02 for the last eval point (the
    checkpoint target_oracle prefers), - 0.01 for an earlier one, - 0.1 for a student that is not reported.
    ``metrics`` (label -> list of step records) and ``run_json`` (label -> dict) add logs to a 'trained' run.
    """

    def __init__(self, fail_on: str | None = None, *, evalpoints: int = 2,
                 dice: Callable[..., float] | None = None) -> None:
        super().__init__()
        self.train_calls: list[tuple[str, bool, Path | None]] = []
        self.eval_calls: list[tuple[str, str, str | None, dict[str, Any]]] = []
        self.oracle_calls: list[tuple[str, str]] = []
        self.fail_on = fail_on
        self.evalpoints = evalpoints
        self.dice = dice or self.default_dice
        self.metrics: dict[str, list[dict[str, Any]]] = {}
        self.run_json: dict[str, dict[str, Any]] = {}
        self.validator: Callable[[int], float] | None = None
        self.validator_calls: list[tuple[str, str]] = []

    def prepare_data(self, preset: str, data_dir: Path, seed: int, *, progress: bool = True) -> Path:
        data_dir.mkdir(parents=True, exist_ok=True)
        return data_dir

    def target_domains(self, data_dir: Path, source_domain: str | None) -> list[str]:
        return ["t1", "t2", "t3"]

    def train(self, config: Any, run_dir: Path, *, resume: bool, init_checkpoint: Path | None = None,
              regret: bool = True) -> None:
        self.train_calls.append((str(run_dir), resume, init_checkpoint))
        if self.fail_on and self.fail_on in str(run_dir):
            (run_dir / "last.pt").write_text("half")
            raise KeyboardInterrupt
        (run_dir / "last.pt").write_text("ckpt")
        (run_dir / "best.pt").write_text("ckpt")
        label = run_label(run_dir)
        steps = int(config["trainer"]["steps"])
        records = self.metrics.get(label) or [{"step": 1, "loss": 1.0}]
        lines = [json.dumps(r) for r in records]
        if regret and self.evalpoints:
            folder = run_dir / EVALPOINTS
            folder.mkdir(exist_ok=True)
            index = {}
            for k in range(1, self.evalpoints + 1):
                step = steps * k // self.evalpoints
                name = f"step{step:07d}.pt"
                (folder / name).write_text(f"step {step}")
                index[str(step)] = {"file": name, "target_oracle": 0.1 * k}
                lines.append(json.dumps({"step": step, "event": "validation", "criterion": "source_val",
                                         "score": 0.7 + 0.01 * k, "improved": True}))
            (folder / "index.json").write_text(json.dumps(index))
        (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
        if label in self.run_json:
            (run_dir / "run.json").write_text(json.dumps(self.run_json[label]))

    def score_checkpoint_oracle(self, config: Mapping[str, Any], checkpoint: Path) -> float:
        self.oracle_calls.append((config["data"]["target_domain"], str(checkpoint)))
        return 0.1 * int(checkpoint.stem[4:]) / 1000.0

    def _validator_scorer(self, config: Mapping[str, Any]) -> Callable[[Path], float]:
        """A label-free criterion's score of a kept eval point: ``validator`` (step -> score), else -step."""

        def score(checkpoint: Path) -> float:
            step = int(checkpoint.stem[4:])
            self.validator_calls.append((config["evaluation"]["selection"], str(checkpoint)))
            return self.validator(step) if self.validator is not None else -float(step)

        return score

    def method_flag(self, method: str) -> str:
        return "upper bound" if method == "oracle" else ""

    def network_names(self, config: Mapping[str, Any]) -> tuple[str, tuple[str, ...]]:
        return NETWORKS.get(config["method"]["name"], ("student", ("student",)))

    def default_dice(self, config: Mapping[str, Any], run_dir: Path, checkpoint: Path, denoiser: ComponentRef,
                     network: str | None) -> float:
        dice = FAKE_DICE[config["method"]["name"]] + (0.05 if denoiser.name == "gaussian" else 0.0)
        dice += 0.01 * config["seed"]
        if checkpoint.parent.name == EVALPOINTS:
            last = max(p.name for p in checkpoint.parent.glob("step*.pt"))
            dice += 0.02 if checkpoint.name == last else -0.01
        if network is not None and network != self.network_names(config)[0]:
            dice -= 0.1
        return dice

    def evaluate(self, config: Any, run_dir: Path, checkpoint: Path, denoiser: ComponentRef,
                 network: str | None = None) -> EvalResult:
        self.eval_calls.append((str(run_dir), str(checkpoint), network, config))
        dice = self.dice(config, run_dir, checkpoint, denoiser, network)
        step = int(checkpoint.stem[4:]) if checkpoint.stem.startswith("step") else 10
        return EvalResult(dice=dice, iou=dice / (2 - dice), per_class={"ribo": {"dice": dice, "iou": 0.5}},
                          step=step, n_volumes=4)

    def example_panels(self, config: Any, run_dir: Path, n: int = 3) -> list[tuple[str, Any]]:
        return []
