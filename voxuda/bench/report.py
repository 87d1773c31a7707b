"""Generated documents over one or more suites' result folders: ``docs/results.md`` (tracks in a fixed order:
appearance, then content, then gap anatomy, then suites without a track) and ``docs/anatomy.md``.

A report is rebuilt from each folder's ``results.json`` (:class:`~voxuda.bench.results.SuiteResults`), so
``voxuda benchmark --from results/appearance --from results/content --write-doc docs/results.md`` trains
nothing. Figures are copied next to the document (``<doc dir>/img/results_<suite>/``) and linked relatively.

**Gap anatomy.** A suite with ``track = "anatomy"`` has a chain of targets a1..aN from the source to a
real-like target, each adding one imaging or content knob to the previous (``knobs`` names them). Step 0 is
the source itself: the source-only run's held-out source-validation Dice at its selected checkpoint (the
``source_val`` validator: the same pooled foreground Dice, on source volumes). The drop attributed to a
knob is the source-only Dice of the previous step minus this step's, paired by seed (the shared source-only
model is the same network on every step, so the per-seed difference isolates the knob); its share is the
drop over the total gap (step 0 minus the last step), so the shares sum to 100 %. The oracle on each step
shows how much of that step a model trained with target labels recovers.
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from voxuda.bench.io import write_bytes, write_text
from voxuda.bench.results import SuiteResults, first_label
from voxuda.bench.stats import PairedInterval, paired_interval
from voxuda.bench.suite import TRACKS
from voxuda.bench.tables import provenance_lines, suite_sections
from voxuda.errors import ConfigError
from voxuda.jsonio import read_json

TRACK_TITLES = {"appearance": "Appearance track", "content": "Content track", "anatomy": "Gap anatomy",
                "": "Suites without a track"}


def load_results(folder: Path) -> SuiteResults:
    """The :class:`SuiteResults` of a finished suite's output folder (its ``results.json``)."""
    path = Path(folder) / "results.json"
    if not path.is_file():
        raise ConfigError(f"--from {folder}: no results.json there; run `voxuda benchmark --out {folder}` "
                          "first")
    return SuiteResults.from_json(read_json(path, fix="rerun the suite to rewrite it"))


def pool_seeds(folders: Sequence[Path]) -> SuiteResults:
    """One suite's seeds trained in several folders, read as one result.

    Why: a measurement planned at more seeds than one session can train (issue 15's bar: 10 seeds on one
    target, about 3.5 h on 2 cores) is trained seed block by seed block, each block in its own folder with
    its own parent, control and oracle runs. Every comparison in a table is paired within a seed, so pooling
    is sound only if each (target, seed) comes whole from one folder: then a method's seed and the control
    it is paired with share their parent. A seed found in two folders is refused (it would silently pick
    one of two draws), as are folders of different suites.
    """
    if not folders:
        raise ConfigError("--from: no folder to pool; give one or more benchmark output folders")
    loaded = [(Path(f), load_results(Path(f))) for f in folders]
    first_folder, first = loaded[0]
    owner: dict[tuple[str, int], Path] = {}
    records = []
    diagnostics: dict[str, dict[str, Any]] = {}
    labels: list[str] = []
    dens: list[str] = []
    numerics: list[str] = []
    for folder, results in loaded:
        if results.name != first.name:
            raise ConfigError(f"--from {folder}: suite {results.name!r}, but {first_folder} holds "
                              f"{first.name!r}; pool only folders of one suite")
        for key in sorted({(r.target, r.seed) for r in results.records}):
            if key in owner:
                raise ConfigError(f"--from {folder}: {key[0]} seed {key[1]} is also in {owner[key]}; "
                                  "each seed must come from one folder (drop it from one of them)")
            owner[key] = folder
        records += results.records
        diagnostics.update(results.diagnostics)
        labels += [x for x in results.label_order if x not in labels]
        dens += [x for x in results.denoiser_order if x not in dens]
        line = results.meta.get("numerics")
        if line and line not in numerics:
            numerics.append(str(line))
    meta = {**first.meta, "pooled_from": [str(f) for f, _ in loaded]}
    if numerics:
        meta["numerics"] = "; ".join(numerics)
    return SuiteResults(meta=meta, records=records, diagnostics=diagnostics, label_order=labels,
                        denoiser_order=dens)


def _track_key(results: SuiteResults) -> int:
    return TRACKS.index(results.track) if results.track in TRACKS else len(TRACKS)


def _copy_figures(doc: Path, out_dir: Path, results: SuiteResults) -> list[str]:
    """Copy the suite's figures to ``<doc dir>/img/results_<suite>/``; links relative to the document."""
    img = doc.parent / "img" / f"results_{results.name}"
    links = []
    for name in results.figures:
        src = out_dir / name
        if not src.is_file():
            continue
        write_bytes(img / name, src.read_bytes())  # atomic, creating the folder
        links.append(os.path.relpath((img / name).resolve(), doc.parent.resolve()))
    return links


def write_document(doc: Path, suites: Sequence[tuple[Path, SuiteResults]]) -> Path:
    """Write the Markdown report of one or more suites to ``doc`` (tracks in order; see the module doc)."""
    doc = Path(doc)
    ordered = sorted(suites, key=lambda item: _track_key(item[1]))
    if len(ordered) == 1:
        out_dir, results = ordered[0]
        links = _copy_figures(doc, out_dir, results)
        if results.track == "anatomy":
            text = anatomy_document(results, links, doc)
        else:
            meta = results.meta
            lines = [f"# Benchmark results: suite `{meta.get('suite')}`", "",
                     "Generated by `voxuda benchmark`; do not edit by hand.", ""]
            if results.track:
                lines += [f"Track: **{results.track}**.", ""]
            lines += provenance_lines(meta) + [""] + suite_sections(results, links)
            text = "\n".join(lines)
        return write_text(doc, text)
    names = ", ".join(f"`{r.name}`" for _, r in ordered)
    lines = ["# Benchmark results", "",
             f"Generated by `voxuda benchmark --from ...` from the suites {names}; do not edit by hand.", ""]
    tracks = list(dict.fromkeys(r.track for _, r in ordered))
    lines += ["Contents: " + ", ".join(TRACK_TITLES.get(t, t) for t in tracks) + ".", ""]
    for out_dir, results in ordered:
        links = _copy_figures(doc, out_dir, results)
        title = TRACK_TITLES.get(results.track, results.track)
        lines += [f"## {title}: suite `{results.name}`", ""]
        if results.meta.get("description"):
            lines += [str(results.meta["description"]), ""]
        lines += provenance_lines(results.meta) + [""]
        if results.track == "anatomy":
            lines += anatomy_sections(results, links, doc, level=3)
        else:
            lines += suite_sections(results, links, level=3)
    return write_text(doc, "\n".join(lines))


# -- gap anatomy --------------------------------------------------------------------------------------------
@attrs.frozen
class AnatomyStep:
    """One step of the chain from the source to the real-like target (step 0 = the source itself)."""

    index: int
    domain: str
    knob: str
    source_only: float  # mean over seeds
    source_only_std: float
    oracle: float
    drop: float  # source-only Dice of the previous step minus this one (NaN for step 0)
    drop_interval: PairedInterval | None
    share: float  # drop / total gap


def anatomy_steps(results: SuiteResults, reference_denoiser: str = "identity") -> list[AnatomyStep]:
    """The steps of an anatomy suite, in its target order (``meta['targets']``; else record order)."""
    selected = [r for r in results.records if r.checkpoint == "selected" and r.reported
                and r.input_denoiser == reference_denoiser]
    src = first_label(selected, "source_only")
    orc = first_label(selected, "oracle")
    if src is None:
        return []
    order = [t for t in results.meta.get("targets") or [] if any(r.target == t for r in selected)]
    order = order or list(dict.fromkeys(r.target for r in selected))
    knobs: Mapping[str, str] = results.meta.get("knobs") or {}

    def per_seed(target: str, label: str | None) -> dict[int, float]:
        return {r.seed: r.dice for r in selected if r.target == target and r.label == label}

    chain: list[tuple[str, str, dict[int, float], dict[int, float]]] = []
    source_val: dict[int, float] = {}
    if order:
        for seed in per_seed(order[0], src):
            val = (results.diagnostics.get(f"{order[0]}/{src}/seed{seed}") or {}).get("validation") or {}
            if val.get("criterion") == "source_val":
                source_val[seed] = float(val["best_score"])
    if source_val:
        chain.append(("source (held-out source validation)", "", source_val, {}))
    chain += [(t, knobs.get(t, ""), per_seed(t, src), per_seed(t, orc)) for t in order]
    if not chain:
        return []
    first_mean = statistics.fmean(chain[0][2].values()) if chain[0][2] else math.nan
    last_mean = statistics.fmean(chain[-1][2].values()) if chain[-1][2] else math.nan
    total = first_mean - last_mean
    steps = []
    for i, (domain, knob, so, oracle) in enumerate(chain):
        mean = statistics.fmean(so.values()) if so else math.nan
        std = statistics.stdev(so.values()) if len(so) > 1 else math.nan
        drop, interval = math.nan, None
        if i > 0:
            interval = paired_interval(chain[i - 1][2], so)
            drop = interval.mean if interval is not None else math.nan
        share = drop / total if i > 0 and abs(total) > 1e-12 else math.nan
        steps.append(AnatomyStep(index=i, domain=domain, knob=knob, source_only=mean, source_only_std=std,
                                 oracle=statistics.fmean(oracle.values()) if oracle else math.nan,
                                 drop=drop, drop_interval=interval, share=share))
    return steps


def _num(value: float, digits: int = 3) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def anatomy_table(steps: Sequence[AnatomyStep]) -> str:
    header = ["step", "domain", "knob added", "source-only Dice", "oracle Dice",
              "drop vs previous step (95 % CI)", "share of the gap"]
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for s in steps:
        spread = "" if math.isnan(s.source_only_std) else f" ± {s.source_only_std:.3f}"
        dice = _num(s.source_only) + spread
        drop = "-" if s.drop_interval is None else s.drop_interval.text()
        share = "-" if math.isnan(s.share) else f"{s.share:.0%}"
        out.append(f"| {s.index} | `{s.domain}` | {s.knob or '-'} | {dice} | {_num(s.oracle)} | {drop} | "
                   f"{share} |")
    return "\n".join(out)


def anatomy_findings(steps: Sequence[AnatomyStep]) -> list[str]:
    """The total gap and the knobs ranked by their share of it (significance from the paired interval)."""
    if len(steps) < 2:
        return []
    total = steps[0].source_only - steps[-1].source_only
    out = [f"Total source-only gap from `{steps[0].domain}` to `{steps[-1].domain}`: {total:+.3f} Dice "
           f"({steps[0].source_only:.3f} -> {steps[-1].source_only:.3f})."]
    ranked = sorted((s for s in steps[1:] if not math.isnan(s.drop)), key=lambda s: -s.drop)
    for s in ranked:
        what = s.knob or s.domain
        sig = s.drop_interval.verdict() if s.drop_interval is not None else "untested"
        sig = {"better": "a significant drop", "worse": "a significant gain"}.get(sig, sig)
        share = "" if math.isnan(s.share) else f", {s.share:.0%} of the gap"
        out.append(f"`{s.domain}` ({what}): drop {s.drop:+.3f}{share}; {sig}.")
    return out


def anatomy_sections(results: SuiteResults, figure_links: Sequence[str], doc: Path | None = None,
                     level: int = 2) -> list[str]:
    """The anatomy table, its figure and findings, then the suite's per-step tables."""
    h = "#" * level
    steps = anatomy_steps(results)
    out = [f"{h} Where the gap comes from, knob by knob", ""]
    if not steps:
        return out + ["No source-only records: nothing to attribute.", ""]
    out += [anatomy_table(steps), ""]
    out += [f"- {line}" for line in anatomy_findings(steps)] + [""]
    out += ["Each step's domain adds one knob to the previous one. **drop** = source-only Dice of the "
            "previous step minus this step's, paired by seed (Student t, n − 1 dof; `n.s.` = the interval "
            "contains 0); **share** = drop / total gap, so the shares sum to 100 %; step 0 is the held-out "
            "source-validation Dice of the same source-only checkpoint. **oracle Dice** (trained on that "
            "step's labels) is the ceiling of the step.", ""]
    figure = [f for f in figure_links if Path(f).name == "anatomy.png"]
    if not figure and doc is not None:
        from voxuda.bench import plots

        img = Path(doc).parent / "img" / f"results_{results.name}"
        path = plots.anatomy_waterfall(steps, img / "anatomy.png", title=f"gap anatomy: {results.name}")
        figure = [os.path.relpath(path.resolve(), Path(doc).parent.resolve())]
    out += [f"![gap anatomy]({f})" for f in figure] + [""]
    others = [f for f in figure_links if Path(f).name != "anatomy.png"]
    out += [f"{h} Per-step tables", ""] + suite_sections(results, others, level=level + 1)
    return out


def anatomy_document(results: SuiteResults, figure_links: Sequence[str], doc: Path) -> str:
    """``docs/anatomy.md`` of one anatomy-track suite."""
    lines = [f"# Gap anatomy: suite `{results.name}`", "",
             "Generated by `voxuda benchmark`; do not edit by hand.", ""]
    if results.meta.get("description"):
        lines += [str(results.meta["description"]), ""]
    lines += provenance_lines(results.meta) + [""]
    lines += anatomy_sections(results, figure_links, doc)
    return "\n".join(lines)


def steps_to_json(steps: Sequence[AnatomyStep]) -> list[dict[str, Any]]:
    return [{**attrs.asdict(s, filter=lambda a, _v: a.name != "drop_interval"),
             "drop_interval": s.drop_interval.to_dict() if s.drop_interval else None} for s in steps]
