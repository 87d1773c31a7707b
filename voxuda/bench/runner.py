"""Run a suite: data once, every run in order (skipping finished ones), evaluation, tables and plots.

Each run lives in ``<out>/runs/<target>/<label>/seed<k>/``: the engine's run folder (config, checkpoints,
``metrics.jsonl``) plus ``bench.json`` (what the benchmark asked for), ``eval.json`` (the run's
:class:`~voxuda.bench.results.EvalRecord` list) and, written last, a ``done`` marker. A run with ``done``
is never repeated; one without it is resumed through the trainer's ``resume`` when it left a checkpoint.
The tables are rebuilt from every ``eval.json`` at the end, so an interrupted suite loses at most the run
that was in progress.

A run that trains nothing (``mode`` ``evaluate_only`` or ``shared``, see :mod:`voxuda.bench.suite`) gets
the same files except the engine's: its ``bench.json`` names the run whose selected checkpoint it evaluates
(``weights_from``) and that checkpoint, and its ``evalpoints/index.json`` re-scores that run's kept eval
points on its own target (regret, checkpoint noise). Every network of a method is evaluated
(:meth:`BenchEngine.network_names`); the last ``noise_points`` kept eval points of a warm-start parent are
also scored on the test split (checkpoint noise).
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import attrs

from voxuda.bench.diagnostics import run_diagnostics
from voxuda.bench.executor import BenchEngine, EvalResult, default_engine
from voxuda.bench.io import read_metrics, write_json, write_text
from voxuda.bench.results import EvalRecord, SuiteResults, schedule_key
from voxuda.bench.suite import RunPlan, Suite, denoiser_label, expand
from voxuda.bench.tables import by_target, console_table, write_results
from voxuda.config import ComponentRef
from voxuda.errors import ConfigError
from voxuda.jsonio import read_json
from voxuda.simulate.presets import get_preset

DONE = "done"


@attrs.frozen
class BenchmarkOptions:
    """How to run a suite (the command line's arguments)."""

    out_dir: Path
    data_root: Path
    seeds: int | None = None
    first_seed: int = 0
    targets: tuple[str, ...] | None = None
    only: tuple[str, ...] | None = None
    sets: tuple[str, ...] = ()
    plots: bool = True
    progress: bool = True
    dry_run: bool = False
    command: str = ""
    write_doc: Path | None = None


@attrs.define
class BenchmarkResult:
    """What a benchmark produced: the table text, rows, records and file paths."""

    table: str = ""
    rows: list[Any] = attrs.field(factory=list)
    records: list[EvalRecord] = attrs.field(factory=list)
    files: dict[str, Path] = attrs.field(factory=dict)
    trained: list[str] = attrs.field(factory=list)
    reused: list[str] = attrs.field(factory=list)  # evaluated without training (evaluate-only, shared)
    skipped: list[str] = attrs.field(factory=list)
    results: SuiteResults | None = None
    notes: list[str] = attrs.field(factory=list)  # for the user, one line each (e.g. mixed numerics)


def run_dir_of(out_dir: Path, plan: RunPlan) -> Path:
    return out_dir / "runs" / plan.run_id


def is_done(run_dir: Path) -> bool:
    return (run_dir / DONE).is_file() and (run_dir / "eval.json").is_file()


def _select(plans: list[RunPlan], only: Sequence[str] | None) -> list[RunPlan]:
    """Keep the runs labelled in ``only`` and, transitively, their warm-start parents."""
    if not only:
        return plans
    parents = {p.label: p.init_from for p in plans}
    unknown = set(only) - set(parents)
    if unknown:
        runs = ", ".join(sorted(parents))
        raise ConfigError(f"--only: no run labelled {sorted(unknown)[0]!r} (runs: {runs})")
    keep = set()
    for label in only:
        cur: str | None = label
        while cur is not None and cur not in keep:
            keep.add(cur)
            cur = parents.get(cur)
    return [p for p in plans if p.label in keep]


def _progress(iterable: Sequence[Any], enabled: bool, desc: str) -> Any:
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, unit="run", dynamic_ncols=True)


def check_runs(suite: Suite, options: BenchmarkOptions) -> None:
    """Validate every run's config (the suite's entries with their overrides and ``--set``: registry names,
    numbers, the backbone's box) and ``--only`` before anything is written or simulated: a bad value fails in
    a second with one line naming the run, not after the data were simulated and earlier runs trained."""
    from voxuda.api import component_config
    from voxuda.engine.run_config import run_config_from_dict
    from voxuda.errors import VoxudaError

    if options.seeds is not None and options.seeds < 1:
        raise ConfigError(f"--seeds {options.seeds}: needs at least one seed")
    if options.first_seed < 0:
        raise ConfigError(f"--first-seed {options.first_seed}: seeds are numbered from 0; give 0 or more")
    targets = [t for t in (options.targets or suite.targets) if t != "all"] or ["target"]  # "all": any name
    plans = expand(suite, targets=targets[:1], seeds=1, data_root=Path(options.data_root), sets=options.sets)
    for plan in _select(plans, options.only):
        try:
            run_config_from_dict(dict(plan.config))
            for denoiser in plan.test_time_denoisers:
                component_config("denoiser", denoiser)
        except VoxudaError as exc:
            raise ConfigError(f"suite {suite.name!r}, run {plan.label!r}: {exc}") from exc


def run_benchmark(suite: Suite, options: BenchmarkOptions,
                  engine: BenchEngine | None = None) -> BenchmarkResult:
    """Run (or resume) every run of ``suite`` and write ``results.{csv,json,md}`` and figures."""
    check_runs(suite, options)
    engine = engine or default_engine()
    started = time.perf_counter()
    out = Path(options.out_dir)
    data_dir = Path(options.data_root) / get_preset(suite.preset).name  # a preset file: its name, not path
    targets = list(options.targets or suite.targets)
    suite_targets = list(suite.targets)
    if not options.dry_run:
        out.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        engine.prepare_data(suite.preset, data_dir, suite.data_seed, progress=options.progress)
        data_seconds = time.perf_counter() - t0
        available = engine.target_domains(data_dir, suite.source_domain)
        if targets == ["all"]:
            targets = available
        if suite_targets == ["all"]:
            suite_targets = available
        missing = [t for t in targets if t not in available]
        if missing:
            domains = ", ".join(available)
            raise ConfigError(f"target domain {missing[0]!r} is not in {data_dir} (domains: {domains})")
    else:
        data_seconds = 0.0
    # shared runs train on the suite's first target, also when --target names a subset
    shared_target = suite_targets[0] if suite_targets and suite_targets != ["all"] else None
    plans = expand(suite, targets=targets, seeds=options.seeds, data_root=data_dir, sets=options.sets,
                   shared_target=shared_target, first_seed=options.first_seed)
    plans = _select(plans, options.only)
    if options.dry_run:
        lines = [f"{p.run_id}  method={p.method}  selection={p.selection}  init_from={p.init_from or '-'}  "
                 f"mode={p.mode}{'  weights_from=' + p.weights_from if p.weights_from else ''}"
                 f"{'  reselects' if p.reselect else ''}  "
                 f"test-time={','.join(denoiser_label(d) for d in p.test_time_denoisers)}" for p in plans]
        return BenchmarkResult(table="\n".join(lines))
    result = BenchmarkResult()
    for plan in _progress(plans, options.progress, f"suite {suite.name}"):
        run_dir = run_dir_of(out, plan)
        if is_done(run_dir):
            _check_same_config(plan, run_dir)
            result.skipped.append(plan.run_id)
            continue
        _run_one(plan, run_dir, out, suite, engine)
        (result.trained if plan.trains else result.reused).append(plan.run_id)
    reported = [p for p in plans if p.target in targets]  # not the shared runs' own target, if not asked
    records = collect_records(out, reported)
    result.records = records
    meta = _meta(suite, options, targets, data_dir, started, data_seconds, reported, engine)
    meta["invocations"] = _log_invocation(out, options, started, data_seconds, result)
    numerics = trained_numerics(out, reported)  # read once: the provenance line and the note
    meta["numerics"] = numerics_line(numerics)
    if len(numerics) > 1:
        result.notes.append(f"the runs in {out} were trained on {len(numerics)} different numerics "
                            f"({numerics_line(numerics)}): their results are not bit-reproducible on one "
                            "machine; see results.md's numerics line")
    results = SuiteResults(
        meta=meta, records=records, diagnostics=collect_diagnostics(out, reported),
        label_order=[r.label for r in suite.runs],
        denoiser_order=list(dict.fromkeys(denoiser_label(d) for p in plans for d in p.test_time_denoisers)),
    )
    result.results = results
    result.rows = results.rows
    if options.plots:
        results.figures = _figures(out, results, plans, engine, suite)
    result.files = write_results(out, results, results.figures)
    if suite.track == "anatomy":
        from voxuda.bench.report import anatomy_steps, steps_to_json

        result.files["anatomy"] = write_json(out / "anatomy.json", steps_to_json(anatomy_steps(results)))
    if options.write_doc is not None:
        from voxuda.bench.report import write_document

        result.files["doc"] = write_document(Path(options.write_doc), [(out, results)])
    result.table = "\n\n".join(f"target {t}\n{console_table(r, [])}"
                                for t, r in by_target(result.rows).items())
    return result


def _log_invocation(out: Path, options: BenchmarkOptions, started: float, data_seconds: float,
                    result: BenchmarkResult) -> list[dict[str, Any]]:
    """Append this invocation to ``invocations.json``: a resumed suite keeps the history of every session."""
    path = out / "invocations.json"
    history = read_json(path, default=[], expect=list)
    history.append({
        "command": options.command,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "cpu_seconds": round(time.process_time(), 1),
        "data_seconds": round(data_seconds, 1),
        "trained": len(result.trained),
        "reused": len(result.reused),
        "skipped": len(result.skipped),
    })
    write_json(path, history)
    return history


def _check_same_config(plan: RunPlan, run_dir: Path) -> None:
    """A finished run is reused only if it was trained with the same RunConfig (e.g. by another suite)."""
    done = read_json(run_dir / "bench.json", default=None)
    if done is None:
        return
    same = json.loads(json.dumps(plan.config, default=str)) == done.get("config")
    # a run that was trained on its own target is kept where the suite would now share one (older suites
    # trained source-only per target); evaluated weights of another run are kept only if they are the same
    reused_other = done.get("weights_from") is not None and done.get("weights_from") != plan.weights_from
    if not same or done.get("init_from") != plan.init_from or reused_other:
        raise ConfigError(f"{run_dir} holds a finished run with another config than this suite's "
                          f"{plan.label!r}; use another --out folder or delete that run folder")


def wants_regret(suite: Suite, plan: RunPlan) -> bool:
    """Regret is measured for runs that select a checkpoint without target labels."""
    return suite.selection_regret and not plan.leaky_selection and plan.selection != "last"


def selected_checkpoint_of(out: Path, run_dir: Path, engine: BenchEngine) -> Path:
    """The checkpoint a finished run stands for: its own selection, or (for a run that trained nothing)
    the selected checkpoint of the run it reuses, followed through ``bench.json``'s ``weights_from``."""
    seen = set()
    while True:
        info = read_json(run_dir / "bench.json", default={})
        if info.get("reselected_checkpoint"):
            return Path(info["reselected_checkpoint"])
        source = info.get("weights_from")
        if not source or source in seen:
            return engine.selected_checkpoint(run_dir)
        seen.add(source)
        run_dir = out / "runs" / source


def _run_one(plan: RunPlan, run_dir: Path, out: Path, suite: Suite, engine: BenchEngine) -> None:
    """Train (or resume) one run, or take the checkpoint it reuses; evaluate every network under every
    test-time denoiser (plus the oracle choice and the checkpoint-noise points), then mark it done."""
    init = None
    source_dir = None
    if plan.trains and plan.init_from is not None:
        parent = run_dir_of(out, attrs.evolve(plan, label=plan.init_from))
        if not is_done(parent):
            raise ConfigError(f"{plan.run_id}: warm-start parent {plan.init_from!r} has not finished")
        init = selected_checkpoint_of(out, parent, engine)
    if not plan.trains:
        source_dir = out / "runs" / str(plan.weights_from)
        if not is_done(source_dir):
            raise ConfigError(f"{plan.run_id}: {plan.weights_from}, whose checkpoint it evaluates, has not "
                              "finished")
    run_dir.mkdir(parents=True, exist_ok=True)
    selected = selected_checkpoint_of(out, source_dir, engine) if source_dir is not None else None
    write_json(run_dir / "bench.json", {
        "suite": plan.suite, "label": plan.label, "method": plan.method, "target": plan.target,
        "seed": plan.seed, "selection": plan.selection, "init_from": plan.init_from,
        "init_checkpoint": str(init) if init else None,
        "mode": plan.mode, "weights_from": plan.weights_from,
        "reused_checkpoint": str(selected) if selected else None,
        "data_version": data_version(Path(plan.config["data"]["root"])),
        "test_time_denoisers": [d.to_dict() for d in plan.test_time_denoisers], "config": plan.config,
    })
    regret = wants_regret(suite, plan)
    t0 = time.perf_counter()
    if source_dir is None:
        resume = engine.can_resume(run_dir)
        engine.train(plan.config, run_dir, resume=resume, init_checkpoint=init, regret=regret)
        selected = engine.selected_checkpoint(run_dir)
    elif regret or plan.noise_points or plan.reselect:
        engine.rescore_evalpoints(plan.config, source_dir, run_dir)
    if plan.reselect:
        selected = _reselect(plan, run_dir, engine)
    train_seconds = time.perf_counter() - t0
    assert selected is not None
    records = _evaluate_run(plan, run_dir, selected, engine, regret)
    write_json(run_dir / "eval.json", {"train_seconds": train_seconds if plan.trains else 0.0,
                                       "mode": plan.mode, "weights_from": plan.weights_from,
                                       "records": [r.to_dict() for r in records]})
    write_text(run_dir / DONE, datetime.now(timezone.utc).isoformat() + "\n")


def _reselect(plan: RunPlan, run_dir: Path, engine: BenchEngine) -> Path:
    """Choose an evaluate-only run's checkpoint among its parent's kept eval points by the run's own
    criterion (``RunPlan.reselect``), as the trainer would have: the first of the best scores in step order.
    The choice is recorded in ``bench.json`` so that runs reusing this one follow it."""
    if not engine.kept_evalpoints(run_dir):
        raise ConfigError(f"{plan.run_id}: selection {plan.selection!r} chooses among {plan.weights_from}'s "
                          "kept eval points, and it kept none; rerun it with selection_regret = true and "
                          "eval_every > 0")
    chosen = engine.reselect_evalpoints(plan.config, run_dir, plan.selection)
    info = read_json(run_dir / "bench.json", default={})
    write_json(run_dir / "bench.json", {**info, "reselected_checkpoint": str(chosen)})
    return chosen


def _evaluate_run(plan: RunPlan, run_dir: Path, selected: Path, engine: BenchEngine,
                  regret: bool) -> list[EvalRecord]:
    """Records of every network (reported first) x test-time denoiser x checkpoint of one run."""
    flag = engine.method_flag(plan.method)
    reported, names = engine.network_names(plan.config)
    # the reported network through method.predictor() (a plugin may override it), the others by name
    networks: list[tuple[str, str | None]] = [(reported, None)] + [(n, n) for n in names if n != reported]
    choices = {"selected": selected}
    if regret:
        oracle_ckpt = engine.oracle_choice_checkpoint(run_dir)
        if oracle_ckpt is not None:
            choices["oracle_choice"] = oracle_ckpt

    def record(ev: EvalResult, den: ComponentRef, kind: str, network: str, is_reported: bool) -> EvalRecord:
        return EvalRecord(
            suite=plan.suite, target=plan.target, label=plan.label, method=plan.method, seed=plan.seed,
            input_denoiser=denoiser_label(den), selection=plan.selection, checkpoint=kind,
            step=ev.step, dice=ev.dice, iou=ev.iou, per_class=ev.per_class, flag=flag,
            leaky_selection=plan.leaky_selection, init_from=plan.init_from, group=plan.group,
            n_volumes=ev.n_volumes, network=network, reported=is_reported, mode=plan.mode,
            weights_from=plan.weights_from, decision=ev.decision,
        )

    records = []
    for den in plan.test_time_denoisers:
        for name, network in networks:
            for kind, ckpt in choices.items():
                if kind == "oracle_choice" and network is not None:
                    continue  # target_oracle scored the reported predictor: its choice is that network's
                ev = engine.evaluate(plan.config, run_dir, ckpt, den, network=network)
                records.append(record(ev, den, kind, name, network is None))
    if plan.noise_points:
        identity = ComponentRef("identity")
        for _step, ckpt in engine.kept_evalpoints(run_dir)[-plan.noise_points:]:
            ev = engine.evaluate(plan.config, run_dir, ckpt, identity, network=None)
            records.append(record(ev, identity, "evalpoint", reported, True))
    return records


def collect_records(out: Path, plans: Sequence[RunPlan]) -> list[EvalRecord]:
    """Every record of the finished runs among ``plans`` (in plan order)."""
    records = []
    for plan in plans:
        run_dir = run_dir_of(out, plan)
        if not is_done(run_dir):
            continue
        data = read_json(run_dir / "eval.json")
        schedule = schedule_key(plan.config.get("trainer", {}))
        records += [EvalRecord.from_dict({**r, "schedule": schedule}) for r in data["records"]]
    return records


def training_dir(out: Path, plan: RunPlan) -> Path | None:
    """The folder whose logs describe the training behind ``plan``'s weights (None: evaluate-only)."""
    if plan.mode == "evaluate_only":
        return None
    if plan.mode == "shared" and plan.weights_from:
        return out / "runs" / plan.weights_from
    return run_dir_of(out, plan)


def collect_diagnostics(out: Path, plans: Sequence[RunPlan]) -> dict[str, dict[str, Any]]:
    """:func:`run_diagnostics` of every finished run among ``plans``, keyed by run id."""
    diags = {}
    for plan in plans:
        folder = training_dir(out, plan)
        if folder is not None and is_done(run_dir_of(out, plan)):
            diags[plan.run_id] = run_diagnostics(folder)
    return diags




def data_version(data_dir: Path) -> str | None:
    """The simulator code hash the dataset was written with (``benchmark.json``), if known."""
    try:
        return str(read_json(data_dir / "benchmark.json")["code_hash"])
    except (OSError, ValueError, KeyError):
        return None


def data_versions(out: Path, plans: Sequence[RunPlan]) -> list[str]:
    """Distinct data versions the finished runs were trained on (unknown for runs of older voxuda)."""
    seen = []
    for plan in plans:
        info = read_json(run_dir_of(out, plan) / "bench.json", default=None)
        if info is not None:
            seen.append(info.get("data_version") or "unknown")
    return list(dict.fromkeys(seen))


def trained_numerics(out: Path, plans: Sequence[RunPlan]) -> dict[str, int]:
    """How many of the finished training runs behind ``plans`` ran on each numerics
    (:func:`voxuda.engine.provenance.numerics_label` of ``run.json``'s ``numerics`` and of each resumed
    session's), "unknown" for runs of voxuda versions that did not record it. A run resumed on other
    numerics counts under both. Why: seeds paired within one folder are only bit-reproducible if their runs
    share numerics; a folder resumed on another machine says so instead of passing for one machine's."""
    from voxuda.engine.provenance import run_numerics_labels

    counts: dict[str, int] = {}
    seen: set[Path] = set()
    for plan in plans:
        folder = training_dir(out, plan)
        if folder is None or folder in seen or not is_done(run_dir_of(out, plan)):
            continue
        seen.add(folder)
        for label in run_numerics_labels(read_json(folder / "run.json", default={})):
            counts[label] = counts.get(label, 0) + 1
    return counts


def numerics_line(counts: dict[str, int]) -> str:
    """``counts`` (:func:`trained_numerics`) as one provenance line."""
    return "; ".join(f"{label} ({n} run{'s' if n != 1 else ''})" for label, n in counts.items())


def _train_seconds(out: Path, plans: Sequence[RunPlan]) -> float:
    total = 0.0
    for plan in plans:
        total += float(read_json(run_dir_of(out, plan) / "eval.json", default={}).get("train_seconds", 0.0))
    return total


def _meta(suite: Suite, options: BenchmarkOptions, targets: Sequence[str], data_dir: Path, started: float,
          data_seconds: float, plans: Sequence[RunPlan], engine: BenchEngine) -> dict[str, Any]:
    seeds = options.seeds or suite.seeds
    trainer = dict(plans[0].config.get("trainer", {})) if plans else {}
    return {
        "suite": suite.name,
        "description": suite.description,
        "command": options.command,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "versions": engine.versions(),
        "machine": f"{platform.machine()}, {platform.system()}, {engine.device_description()}",
        "wall_time": f"{time.perf_counter() - started:.0f} s this invocation (data {data_seconds:.0f} s); "
                     f"training of all runs {_train_seconds(options.out_dir, plans):.0f} s",
        "data": f"preset {suite.preset} (seed {suite.data_seed}) at {data_dir}, simulator version "
                f"{data_version(data_dir)}; runs trained on data versions "
                f"{', '.join(data_versions(options.out_dir, plans))}; targets {', '.join(targets)}; "
                f"{seeds} seed(s)" + (f" from seed {options.first_seed}" if options.first_seed else ""),
        "trainer": ", ".join(f"{k}={v}" for k, v in trainer.items() if k != "progress"),
        "selection": suite.selection,
        "test_time_denoisers": [denoiser_label(d) for d in suite.test_time_denoisers],
        "suite_file": suite.source,
        "track": suite.track,
        "knobs": dict(suite.knobs),
        "targets": list(targets),
        "noise_points": suite.noise_points,
    }


def _figures(out: Path, results: SuiteResults, plans: Sequence[RunPlan], engine: BenchEngine,
             suite: Suite) -> list[str]:
    """Bar chart per target, training curves per target (seed 0), example slices of one Vox-UDA run, and
    the gap-anatomy waterfall for an anatomy-track suite."""
    from voxuda.bench import plots

    figs = []
    for target, target_rows in by_target(results.rows).items():
        figs.append(plots.bar_chart(target_rows, target, out / f"dice_{target}.png").name)
        curves = {p.label: read_metrics(run_dir_of(out, p) / "metrics.jsonl")
                  for p in plans if p.target == target and p.seed == 0}
        curves = {k: v for k, v in curves.items() if v}
        if curves:
            oracle = {p.label: engine.oracle_scores(run_dir_of(out, p))
                      for p in plans if p.target == target and p.seed == 0}
            figs.append(plots.training_curves(curves, out / f"curves_{target}.png",
                                              title=f"training on source -> {target} (seed 0)",
                                              oracle_scores=oracle).name)
    if suite.example_target:
        vox = [p for p in plans if p.method == "vox_uda" and p.seed == 0 and p.trains
               and is_done(run_dir_of(out, p))]
        if vox:
            p = vox[0]
            panels = engine.example_panels(p.config, run_dir_of(out, p), n=3)
            if panels:
                figs.append(plots.example_slices(panels, out / f"examples_{p.target}_{p.label}.png",
                                                 title=f"{p.label} on {p.target} (central z-slices)").name)
    if suite.track == "anatomy":
        from voxuda.bench.report import anatomy_steps

        steps = anatomy_steps(results)
        if steps:
            figs.append(plots.anatomy_waterfall(steps, out / "anatomy.png",
                                                title=f"gap anatomy: {suite.name}").name)
    return figs
