"""Benchmark suites: TOML files composed from registered names, expanded into concrete runs.

A suite names methods, denoisers and validators only by their registered names, so a plugin's method joins
a suite by name and nothing here knows the built-ins. Format (docs/benchmark.md has the full reference)::

    include = "quick"                  # optional: start from another suite (its defaults and runs)
    name = "my_suite"
    description = "..."
    track = "appearance"               # optional: appearance | content | anatomy (how reports group it)
    knobs = {a1_noise = "noise level"} # optional: what each target adds (anatomy track)

    [defaults]                         # suite-level settings
    preset = "quick"                   # data preset of the simulator
    targets = ["target_a"]             # target domains, or ["all"]
    seeds = 1
    selection = "source_val"           # registered validator choosing the checkpoint
    selection_regret = true            # also score the checkpoint target_oracle would have chosen
    test_time_denoisers = ["identity", {name = "gaussian", sigma = 1.0}]
    [defaults.data]                    # RunConfig sections shared by every run
    [defaults.trainer]
    [defaults.method]                  # merged into every run's method table (e.g. the backbone)

    [[runs]]
    label = "vox_uda"
    method = "vox_uda"                 # a registered name or {name = ..., params...}
    init_from = "source_only"          # optional warm start from that run's selected checkpoint
    overrides = {"trainer.steps" = 200}
    train = true                       # false: evaluate init_from's selected checkpoint under this config
    shared = false                     # true: train once per seed (first target), reuse on the others

Expansion turns (target x seed x run) into :class:`RunPlan` objects holding a plain RunConfig mapping;
the engine structures and validates it, so a typo in a suite fails with the engine's own message. A plan's
``mode`` says whether the runner trains it (``train``), evaluates its parent's checkpoint under its own
config (``evaluate_only``) or evaluates the checkpoint its ``shared`` run trained on the first target
(``shared``); ``weights_from`` names the run folder whose selected checkpoint is then evaluated.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import attrs

from voxuda.config import ComponentRef, apply_overrides, component_ref, load_toml
from voxuda.errors import ConfigError

#: Top-level keys of a composed suite (``include`` and ``runs_from`` are resolved before parsing).
TOP_KEYS = frozenset({"name", "description", "track", "knobs", "drop", "defaults", "runs"})
#: Keys allowed in ``[defaults]`` besides the RunConfig sections.
SUITE_KEYS = frozenset(
    {"preset", "targets", "seeds", "selection", "selection_regret", "test_time_denoisers", "data_seed",
     "source_domain", "example_target", "noise_points"}
)
#: RunConfig sections a suite may set in ``[defaults.*]`` and a run's ``overrides``.
CONFIG_SECTIONS = ("data", "method", "trainer", "evaluation")
RUN_KEYS = frozenset({"label", "method", "init_from", "overrides", "selection", "test_time_denoisers",
                      "note", "group", "train", "shared"})
#: Report tracks, in the order a combined report shows them (docs/benchmark.md, "Tracks").
TRACKS = ("appearance", "content", "anatomy")
#: Selection criteria that never look at the target domain: only runs selected by one of these may be
#: ``shared`` across targets (a target-aware criterion would carry the first target into the others).
TARGET_FREE_SELECTIONS = frozenset({"source_val", "last"})
#: Kept evaluation points of a warm-start parent scored on the test split for "checkpoint noise" [I].
DEFAULT_NOISE_POINTS = 3
#: The label-leaking selection criterion; allowed, but flagged wherever it appears.
LEAKY_SELECTION = "target_oracle"
_LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


@attrs.frozen
class RunEntry:
    """One ``[[runs]]`` table: a method (by registered name) with its own settings."""

    label: str
    method: ComponentRef
    overrides: Mapping[str, Any] = attrs.field(factory=dict)
    init_from: str | None = None
    selection: str | None = None
    test_time_denoisers: tuple[ComponentRef, ...] | None = None
    note: str = ""
    group: str = ""
    train: bool = True
    shared: bool = False


@attrs.frozen
class Suite:
    """A parsed suite: suite-level defaults, RunConfig defaults and the run entries."""

    name: str
    description: str
    source: str
    preset: str
    targets: tuple[str, ...]
    seeds: int
    selection: str
    selection_regret: bool
    test_time_denoisers: tuple[ComponentRef, ...]
    data_seed: int
    config: Mapping[str, Any]
    runs: tuple[RunEntry, ...]
    source_domain: str | None = None
    example_target: bool = True
    track: str = ""
    knobs: Mapping[str, str] = attrs.field(factory=dict)
    noise_points: int = DEFAULT_NOISE_POINTS


@attrs.frozen
class RunPlan:
    """A concrete run: one entry trained on one target with one seed, with its RunConfig mapping."""

    suite: str
    label: str
    method: str
    target: str
    seed: int
    config: Mapping[str, Any]
    selection: str
    test_time_denoisers: tuple[ComponentRef, ...]
    init_from: str | None
    note: str = ""
    group: str = ""
    mode: str = "train"  # "train", "evaluate_only" or "shared" (see the module doc)
    weights_from: str | None = None  # run_id whose selected checkpoint this plan evaluates (not "train")
    noise_points: int = 0  # kept eval points scored on the test split (warm-start parents only)
    #: evaluate-only with a selection of its own: choose among the parent's kept eval points by it
    reselect: bool = False

    @property
    def trains(self) -> bool:
        return self.mode == "train"

    @property
    def run_id(self) -> str:
        """Folder name below the suite's output folder: ``<target>/<label>/seed<k>``."""
        return run_id(self.target, self.label, self.seed)

    @property
    def leaky_selection(self) -> bool:
        return self.selection == LEAKY_SELECTION


def run_id(target: str, label: str, seed: int) -> str:
    """The folder of one run below ``<out>/runs`` (also how runs refer to each other in ``bench.json``)."""
    return f"{target}/{label}/seed{seed}"


# -- finding and loading ----------------------------------------------------------------------------------
def builtin_suites() -> list[str]:
    """Names of the suites shipped as package data in ``voxuda/suites``."""
    files = resources.files("voxuda.suites")
    return sorted(p.name[:-5] for p in files.iterdir() if p.name.endswith(".toml"))


def find_suite(name_or_path: str | Path, *, relative_to: Path | None = None) -> Path:
    """A suite file: an existing path (``.toml``), a path relative to an including suite, or a built-in."""
    text = str(name_or_path)
    candidates = [Path(text)]
    if relative_to is not None:
        candidates.insert(0, relative_to / text)
    for cand in candidates:
        if cand.is_file():
            return cand
        if cand.suffix != ".toml" and cand.with_suffix(".toml").is_file() and "/" in text:
            return cand.with_suffix(".toml")
    ref = resources.files("voxuda.suites") / f"{text}.toml"
    if ref.is_file():
        return Path(str(ref))
    known = ", ".join(builtin_suites())
    raise ConfigError(f"suite {text!r} is neither a TOML file nor a built-in suite (built-in: {known})")


def load_suite(name_or_path: str | Path, *, sets: Sequence[str] = ()) -> Suite:
    """Load and compose a suite; ``sets`` are dotted ``key=value`` overrides of its ``[defaults]``."""
    data = _load_composed(find_suite(name_or_path), seen=())
    if sets:
        data = {**data, "defaults": apply_overrides(dict(data.get("defaults", {})), list(sets))}
    return parse_suite(data, source=str(name_or_path))


def _load_composed(path: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path}: suite includes itself ({' -> '.join(str(p) for p in seen)})")
    data = load_toml(path)
    data["__file__"] = str(path)
    include = data.pop("include", None)
    if include is None:
        return _expand_runs_from(data, path)
    base = _load_composed(find_suite(include, relative_to=path.parent), seen + (path,))
    return _merge_suites(base, _expand_runs_from(data, path))


def _expand_runs_from(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """Resolve ``runs_from`` (run entries generated from another file, e.g. the ablation configs)."""
    spec = data.pop("runs_from", None)
    if spec is None:
        return data
    from voxuda.bench.ablations import runs_from_ablations

    generated = runs_from_ablations(spec, base=path.parent)
    data["runs"] = list(generated) + list(data.get("runs", []))
    return data


def _merge_suites(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """Child keys win; ``defaults`` merge deeply; runs with a label the child redefines are replaced."""
    out = {**base, **{k: v for k, v in child.items() if k not in ("defaults", "runs", "drop")}}
    out["defaults"] = _deep_merge(base.get("defaults", {}), child.get("defaults", {}))
    drop = set(child.get("drop", []))
    child_runs = list(child.get("runs", []))
    child_labels = {r.get("label") for r in child_runs}
    runs = [r for r in base.get("runs", []) if r.get("label") not in drop | child_labels]
    unknown = drop - {r.get("label") for r in base.get("runs", [])}
    if unknown:
        raise ConfigError(f"{child.get('__file__')}: drop names unknown runs {sorted(unknown)}")
    out["runs"] = runs + child_runs
    return out


def _deep_merge(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(a))
    for key, value in b.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# -- parsing ----------------------------------------------------------------------------------------------
def _refs(value: Any, where: str) -> tuple[ComponentRef, ...]:
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f"{where}: expected a non-empty list of denoiser names or tables, got {value!r}")
    return tuple(component_ref(v) for v in value)


def parse_suite(data: Mapping[str, Any], *, source: str = "<suite>") -> Suite:
    """Check a composed suite mapping and build a :class:`Suite` (one-line errors naming the key)."""
    where = str(data.get("__file__", source))
    unknown_top = set(data) - TOP_KEYS - {"__file__"}
    if unknown_top:
        raise ConfigError(f"{where}: unknown top-level key {sorted(unknown_top)[0]!r} "
                          f"(known: {', '.join(sorted(TOP_KEYS | {'include', 'runs_from'}))})")
    track = str(data.get("track", ""))
    if track and track not in TRACKS:
        raise ConfigError(f"{where}: track = {track!r} is not a track (known: {', '.join(TRACKS)})")
    knobs = data.get("knobs", {})
    if not isinstance(knobs, Mapping) or not all(isinstance(v, str) for v in knobs.values()):
        raise ConfigError(f"{where}: knobs must be a table of target domain = \"what this step adds\"")
    defaults = dict(data.get("defaults", {}))
    unknown = set(defaults) - SUITE_KEYS - set(CONFIG_SECTIONS)
    if unknown:
        raise ConfigError(f"{where}: unknown key defaults.{sorted(unknown)[0]} "
                          f"(known: {', '.join(sorted(SUITE_KEYS | set(CONFIG_SECTIONS)))})")
    targets = defaults.get("targets", ["all"])
    if isinstance(targets, str):
        targets = [targets]
    seeds = defaults.get("seeds", 1)
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
        raise ConfigError(f"{where}: defaults.seeds must be a positive integer, got {seeds!r}")
    noise_points = defaults.get("noise_points", DEFAULT_NOISE_POINTS)
    if not isinstance(noise_points, int) or isinstance(noise_points, bool) or noise_points < 0:
        raise ConfigError(f"{where}: defaults.noise_points must be an integer >= 0, got {noise_points!r}")
    ttd = _refs(defaults.get("test_time_denoisers", ["identity"]), f"{where}: defaults.test_time_denoisers")
    runs = tuple(_parse_run(r, f"{where}: runs[{i}]") for i, r in enumerate(data.get("runs", [])))
    if not runs:
        raise ConfigError(f"{where}: a suite needs at least one [[runs]] entry")
    labels = [r.label for r in runs]
    dup = {x for x in labels if labels.count(x) > 1}
    if dup:
        raise ConfigError(f"{where}: run label {sorted(dup)[0]!r} is used twice; labels must be unique")
    for r in runs:
        if r.init_from is not None and r.init_from not in labels:
            raise ConfigError(f"{where}: run {r.label!r}: init_from={r.init_from!r} is no run label")
    _check_acyclic(runs, where)
    _check_reuse(runs, where)
    return Suite(
        name=str(data.get("name") or Path(where).stem),
        description=str(data.get("description", "")),
        source=where,
        preset=str(defaults.get("preset", "quick")),
        targets=tuple(str(t) for t in targets),
        seeds=seeds,
        selection=str(defaults.get("selection", "source_val")),
        selection_regret=bool(defaults.get("selection_regret", True)),
        test_time_denoisers=ttd,
        data_seed=int(defaults.get("data_seed", 0)),
        config={k: copy.deepcopy(defaults[k]) for k in CONFIG_SECTIONS if k in defaults},
        runs=runs,
        source_domain=defaults.get("source_domain"),
        example_target=bool(defaults.get("example_target", True)),
        track=track,
        knobs={str(k): str(v) for k, v in knobs.items()},
        noise_points=noise_points,
    )


def _parse_run(raw: Any, where: str) -> RunEntry:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a table")
    unknown = set(raw) - RUN_KEYS
    if unknown:
        known = ", ".join(sorted(RUN_KEYS))
        raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r} (known: {known})")
    if "method" not in raw:
        raise ConfigError(f"{where}: needs a 'method' (a registered method name)")
    method = component_ref(raw["method"])
    label = str(raw.get("label", method.name))
    if not _LABEL_RE.match(label):
        raise ConfigError(f"{where}: label {label!r} may only use letters, digits and _ . + -")
    overrides = raw.get("overrides", {})
    if not isinstance(overrides, Mapping):
        raise ConfigError(f"{where}: overrides must be a table of dotted keys")
    ttd = raw.get("test_time_denoisers")
    flags = {}
    for key in ("train", "shared"):
        if key in raw and not isinstance(raw[key], bool):
            raise ConfigError(f"{where}: {key} must be true or false, got {raw[key]!r}")
        flags[key] = bool(raw.get(key, key == "train"))
    return RunEntry(
        label=label,
        method=method,
        overrides=dict(overrides),
        init_from=raw.get("init_from"),
        selection=raw.get("selection"),
        test_time_denoisers=None if ttd is None else _refs(ttd, f"{where}.test_time_denoisers"),
        note=str(raw.get("note", "")),
        group=str(raw.get("group", "")),
        **flags,
    )


def _check_reuse(runs: Sequence[RunEntry], where: str) -> None:
    """``train = false`` evaluates the parent's weights, so it needs a parent with the same method; a
    ``shared`` run trains once for every target, so whatever it warm-starts from must be shared too."""
    by_label = {r.label: r for r in runs}
    for r in runs:
        if not r.train:
            if r.init_from is None:
                raise ConfigError(f"{where}: run {r.label!r}: train = false needs init_from (the run whose "
                                  "selected checkpoint it evaluates)")
            parent = by_label[r.init_from]
            if parent.method.name != r.method.name:
                raise ConfigError(f"{where}: run {r.label!r}: train = false evaluates {r.init_from!r}'s "
                                  f"weights, so its method must be {parent.method.name!r}, not "
                                  f"{r.method.name!r}")
            if r.shared:
                raise ConfigError(f"{where}: run {r.label!r}: shared applies to trained runs; drop it "
                                  "(an evaluate-only run is evaluated on every target anyway)")
        if r.shared and r.init_from is not None and not by_label[r.init_from].shared:
            raise ConfigError(f"{where}: run {r.label!r} is shared but its init_from {r.init_from!r} is not; "
                              f"set shared = true on {r.init_from!r} too")


def _check_acyclic(runs: Iterable[RunEntry], where: str) -> None:
    parent = {r.label: r.init_from for r in runs}
    for label in parent:
        seen = {label}
        cur = parent[label]
        while cur is not None:
            if cur in seen:
                raise ConfigError(f"{where}: init_from forms a cycle through {cur!r}")
            seen.add(cur)
            cur = parent.get(cur)


# -- expansion --------------------------------------------------------------------------------------------
def run_config(suite: Suite, entry: RunEntry, *, target: str, seed: int, data_root: Path,
               sets: Sequence[str] = ()) -> dict[str, Any]:
    """The plain RunConfig mapping of one run: suite defaults, then the entry's method and overrides.

    ``sets`` are the command line's ``--set`` dotted keys; they are applied last, to every run.
    """
    cfg: dict[str, Any] = {k: copy.deepcopy(dict(v)) for k, v in suite.config.items()}
    method = _deep_merge(cfg.pop("method", {}), {"name": entry.method.name, **dict(entry.method.params)})
    cfg["method"] = method
    data = cfg.setdefault("data", {})
    data.update({"root": str(data_root), "preset": suite.preset, "target_domain": target})
    if suite.source_domain:
        data.setdefault("source_domain", suite.source_domain)
    cfg["seed"] = seed
    cfg.setdefault("evaluation", {})["selection"] = selection_of(suite, entry)
    cfg = apply_overrides(cfg, _flatten(entry.overrides))
    if sets:
        cfg = apply_overrides(cfg, list(sets))
    return cfg


def _flatten(overrides: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"trainer": {"steps": 5}}`` and ``{"trainer.steps": 5}`` both become ``{"trainer.steps": 5}``."""
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and key in CONFIG_SECTIONS and not prefix:
            out.update(_flatten(value, f"{dotted}."))
        else:
            out[dotted] = value
    return out


def expand(suite: Suite, *, targets: Sequence[str], seeds: int | None = None, data_root: Path,
           sets: Sequence[str] = (), shared_target: str | None = None,
           first_seed: int = 0) -> list[RunPlan]:
    """All runs of ``suite`` on ``targets``, ordered so that every warm-start parent precedes its child.

    ``shared`` runs train on ``shared_target`` (default: the first of ``targets``; the runner passes the
    suite's first target, so that ``--target`` on a subset reuses the same checkpoint). When it is not among
    ``targets``, the shared runs on it are planned first (they are needed, not reported). Seeds run from
    ``first_seed`` (a later block of a measurement trained in several folders, docs/benchmark.md).
    """
    n_seeds = seeds if seeds is not None else suite.seeds
    order = _topological(suite.runs)
    shared = _effectively_shared(suite)
    parents = {r.init_from for r in suite.runs if r.init_from is not None}
    owner = shared_target if shared_target is not None else (targets[0] if targets else None)
    plans = []
    support = [] if owner is None or owner in targets or not shared else [owner]
    for target in [*support, *targets]:
        for seed in range(first_seed, first_seed + n_seeds):
            for entry in order:
                if target in support and entry.label not in shared:
                    continue
                mode, weights_from = "train", None
                if not entry.train:
                    mode, weights_from = "evaluate_only", run_id(target, str(entry.init_from), seed)
                elif entry.label in shared and target != owner:
                    mode, weights_from = "shared", run_id(str(owner), entry.label, seed)
                plans.append(
                    RunPlan(
                        suite=suite.name,
                        label=entry.label,
                        method=entry.method.name,
                        target=target,
                        seed=seed,
                        config=run_config(suite, entry, target=target, seed=seed, data_root=data_root,
                                          sets=sets),
                        selection=selection_of(suite, entry),
                        test_time_denoisers=entry.test_time_denoisers or suite.test_time_denoisers,
                        init_from=entry.init_from,
                        note=entry.note,
                        group=entry.group,
                        mode=mode,
                        weights_from=weights_from,
                        noise_points=suite.noise_points if entry.label in parents and entry.train else 0,
                        reselect=reselects(suite, entry),
                    )
                )
    return plans


def selection_of(suite: Suite, entry: RunEntry) -> str:
    """The criterion that chose the checkpoint a run reports: its own, else, for a run that only evaluates
    another run's selected checkpoint (``train = false``), that run's, else the suite's. So a row that
    reads out a validator-chosen checkpoint another way is not recorded under the suite's default."""
    if entry.selection:
        return entry.selection
    if not entry.train and entry.init_from is not None:
        parent = next((r for r in suite.runs if r.label == entry.init_from), None)
        if parent is not None:
            return selection_of(suite, parent)
    return suite.selection


def reselects(suite: Suite, entry: RunEntry) -> bool:
    """True for an evaluate-only run (``train = false``) that names a selection other than its parent's: it
    chooses its own checkpoint among the parent's kept eval points by that criterion (no training), so a
    new validator is measured on finished runs instead of being recorded over another criterion's choice."""
    if entry.train or entry.init_from is None or not entry.selection:
        return False
    parent = next((r for r in suite.runs if r.label == entry.init_from), None)
    return parent is not None and entry.selection != selection_of(suite, parent)


def _effectively_shared(suite: Suite) -> set[str]:
    """Labels trained once for all targets: ``shared = true``, selected by a criterion that does not look
    at the target, and (if warm-started) from a parent that is itself shared. Any other ``shared`` run is
    trained per target, and the dry run says so."""
    by_label = {r.label: r for r in suite.runs}

    def ok(entry: RunEntry) -> bool:
        if not entry.shared or (entry.selection or suite.selection) not in TARGET_FREE_SELECTIONS:
            return False
        return entry.init_from is None or ok(by_label[entry.init_from])

    return {r.label for r in suite.runs if ok(r)}


def _topological(runs: Sequence[RunEntry]) -> list[RunEntry]:
    by_label = {r.label: r for r in runs}
    done: list[RunEntry] = []
    placed: set[str] = set()

    def place(r: RunEntry) -> None:
        if r.label in placed:
            return
        if r.init_from is not None:
            place(by_label[r.init_from])
        placed.add(r.label)
        done.append(r)

    for r in runs:
        place(r)
    return done


def denoiser_label(ref: ComponentRef) -> str:
    """A short, stable name for a test-time denoiser: ``identity``, ``gaussian(sigma=1.0)``."""
    if not ref.params:
        return ref.name
    params = ",".join(f"{k}={ref.params[k]}" for k in sorted(ref.params))
    return f"{ref.name}({params})"
