"""Preset files: a whole benchmark preset (a domain shift) described in TOML.

A preset file goes wherever a preset name goes (``voxuda simulate --preset my.toml``, ``[data] preset``,
a suite's ``[defaults] preset``). Layout (docs/data.md, "Preset files")::

    name = "my_shift"            # default: the file name without .toml; also the benchmark's folder name
    box = 32
    description = "..."
    base = "quick"               # optional: a built-in or another preset file (relative to this one)

    [source]                     # every DomainSpec field; with a base, only the fields that differ
    snr_choices = [0.38]

    [[targets]]                  # or one [target] table for a single target
    name = "my_target"
    from = "insitu_ribosome"     # start from a domain of the base or one defined above in this file
    classes = { gaussian_assembly_a = 1.0, pseudo_protein_b = 2.0 }
    splits = { train = 200, test = 100 }

Without ``[[targets]]`` a file keeps its base's targets; with them, exactly the listed ones. Every bad
value is reported as one line naming the file and the field, e.g.
``my.toml: targets[0] (my_target).snr: range [0.05, 0.01] has low > high; write [low, high]``.

:func:`preset_to_toml` writes any preset out in this format, with every field and its help text, so a
built-in can be dumped as a starting file (``voxuda simulate --dump-preset quick``).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import MISSING, asdict, fields, replace
from pathlib import Path
from typing import Any

from voxuda.errors import ConfigError
from voxuda.simulate.spec import FOURIER_ONLY, PROJECTION_ONLY, BenchmarkPreset, DomainSpec

__all__ = ["load_preset_file", "preset_to_toml", "spec_digest", "FIELD_CHECKS", "TOP_KEYS"]

#: Top-level keys of a preset file.
TOP_KEYS = ("name", "box", "description", "base", "source", "targets", "target")
#: Keys of a domain table that are not DomainSpec fields.
_DOMAIN_EXTRA = ("from",)
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_MAX_BOX = 512


class _Bad(Exception):
    """A field's problem, without its location (the caller adds file and field)."""


# -- value checks: one per DomainSpec field (a test asserts the two sets are equal) ----------------------
def _number(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise _Bad(f"must be a number, got {_show(v)}")
    if not math.isfinite(v):
        raise _Bad(f"must be finite, got {v}")
    return float(v)


def _integer(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise _Bad(f"must be an integer, got {_show(v)}")
    return int(v)


def _at_least(lo: float, strict: bool) -> Callable[[float], float]:
    def check(x: float) -> float:
        if (x <= lo) if strict else (x < lo):
            raise _Bad(f"must be {'>' if strict else '>='} {lo:g}, got {x:g}")
        return x

    return check


def _pair(v: Any, item: Callable[[Any], Any]) -> tuple[Any, Any]:
    if not isinstance(v, list) or len(v) != 2:
        raise _Bad(f"must be a range [low, high], got {_show(v)}")
    lo, hi = item(v[0]), item(v[1])
    if lo > hi:
        raise _Bad(f"range [{lo:g}, {hi:g}] has low > high; write [low, high]")
    return lo, hi


def _range(lo: float, strict: bool) -> Callable[[Any], tuple[float, float]]:
    bound = _at_least(lo, strict)
    return lambda v: _pair(v, lambda x: bound(_number(x)))


def _float(lo: float, strict: bool, hi: float | None = None) -> Callable[[Any], float]:
    bound = _at_least(lo, strict)

    def check(v: Any) -> float:
        x = bound(_number(v))
        if hi is not None and x > hi:
            raise _Bad(f"must be <= {hi:g}, got {x:g}")
        return x

    return check


def _choice(*options: str) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        if v not in options:
            hint = _did_you_mean(v, options)
            raise _Bad(f"must be {' or '.join(map(repr, options))}, got {_show(v, False)}{hint}")
        return str(v)

    return check


def _safe_name(v: Any) -> str:
    if not isinstance(v, str) or not _SAFE_NAME.match(v):
        raise _Bad(f"must be a name of letters, digits and _ . - (a folder name), got {_show(v)}")
    return v


def _class_name(v: Any) -> str:
    from voxuda.simulate.structures import CLASSES

    if not isinstance(v, str) or v not in CLASSES:
        hint = _did_you_mean(v, CLASSES)
        raise _Bad(f"unknown class {_show(v, False)}{hint} (known: {', '.join(CLASSES)})")
    return v


def _classes(v: Any) -> tuple[tuple[str, float], ...]:
    if not isinstance(v, Mapping):
        raise _Bad(f"must be a table of class = weight, e.g. {{ ribosome_4v5d = 3.0 }}, got {_show(v)}")
    if not v:
        raise _Bad("needs at least one class")
    out = []
    for name, w in v.items():
        _class_name(name)
        try:
            out.append((name, _at_least(0.0, True)(_number(w))))
        except _Bad as exc:
            raise _Bad(f"weight of {name!r} {exc}") from None
    return tuple(out)


def _splits(v: Any) -> tuple[tuple[str, int], ...]:
    if not isinstance(v, Mapping):
        raise _Bad(f"must be a table of split = count, e.g. {{ train = 200, test = 100 }}, got {_show(v)}")
    if not v:
        raise _Bad("is empty; give at least one split, e.g. { train = 200, test = 100 }")
    out = []
    for name, n in v.items():
        _safe_name(name)
        try:
            out.append((name, int(_at_least(1, False)(_integer(n)))))
        except _Bad as exc:
            raise _Bad(f"count of {name!r} {exc}") from None
    return tuple(out)


def _snr_choices(v: Any) -> tuple[float, ...]:
    if not isinstance(v, list):
        raise _Bad(f"must be a list of SNR values, e.g. [0.05], got {_show(v)}")
    return tuple(_float(0.0, True)(x) for x in v)


def _class_list(v: Any) -> tuple[str, ...]:
    if not isinstance(v, list):
        raise _Bad(f"must be a list of class names, got {_show(v)}")
    return tuple(_class_name(x) for x in v)


def _tilts(v: Any) -> tuple[float, float]:
    lo, hi = _pair(v, _number)
    if lo <= -90.0 or hi >= 90.0 or lo == hi:
        raise _Bad(f"must satisfy -90 < low < high < 90 degrees, got [{lo:g}, {hi:g}]")
    return lo, hi


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise _Bad(f"must be true or false, got {_show(v)}")
    return v


def _count_range(v: Any) -> tuple[int, int]:
    return _pair(v, lambda x: int(_at_least(0, False)(_integer(x))))


#: How each DomainSpec field is read and checked.
FIELD_CHECKS: dict[str, Callable[[Any], Any]] = {
    "name": _safe_name,
    "model": _choice("fourier", "projection"),
    "polarity": _choice("bright", "dark"),
    "classes": _classes,
    "splits": _splits,
    "snr": _range(0.0, True),
    "snr_choices": _snr_choices,
    "defocus_um": _range(0.0, True),
    "voxel_size": _range(0.0, True),
    "tilt_range": _tilts,
    "tilt_step": _float(0.0, True),
    "amplitude": _float(0.0, False, 1.0),
    "bfactor": _range(0.0, False),
    "astigmatism_a": _float(0.0, False),
    "misalign_px": _float(0.0, False),
    "neighbour_classes": _class_list,
    "neighbours": _count_range,
    "same_class_neighbours": _bool,
    "outlier_probability": _float(0.0, False, 1.0),
    "gradient": _range(0.0, False),
    "gain": _range(0.0, True),
    "margin": lambda v: int(_at_least(0, False)(_integer(v))),
}


# -- reading -------------------------------------------------------------------------------------------
def load_preset_file(path: str | Path) -> BenchmarkPreset:
    """Read, resolve (``base``, ``from``) and validate a preset file; errors are one-line ``ConfigError``s."""
    return _load(Path(path), ())


def _load(path: Path, stack: tuple[Path, ...]) -> BenchmarkPreset:
    from voxuda.config import load_toml

    if path.suffix != ".toml":
        raise ConfigError(f"{path}: a preset file must end in .toml")
    if not path.is_file():
        raise ConfigError(f"{path}: preset file not found; check the path (relative to the working folder)")
    key = path.resolve()
    if key in stack:
        raise ConfigError(f"{path}: base: preset files name each other as base in a cycle")
    data = load_toml(path)

    def bad(where: str, problem: str) -> ConfigError:
        return ConfigError(f"{path}: {where}: {problem}")

    for k in data:
        if k not in TOP_KEYS:
            raise bad(k, f"unknown key{_did_you_mean(k, TOP_KEYS)} (keys: {', '.join(TOP_KEYS)})")
    base = _base(data.get("base"), path, stack + (key,), bad) if "base" in data else None
    try:
        name = _safe_name(data.get("name", path.stem))
    except _Bad as exc:
        raise bad("name", str(exc)) from None
    if "box" in data:
        try:
            box = _integer(data["box"])
        except _Bad as exc:
            raise bad("box", str(exc)) from None
        if not 8 <= box <= _MAX_BOX:
            raise bad("box", f"must be between 8 and {_MAX_BOX} voxels, got {box}")
    elif base is not None:
        box = base.box
    else:
        raise bad("box", "missing; give the box edge in voxels (e.g. box = 32) or a base preset")
    description = data.get("description", base.description if base else "")
    if not isinstance(description, str):
        raise bad("description", f"must be a string, got {_show(description)}")

    known: dict[str, DomainSpec] = {d.name: d for d in base.domains} if base else {}
    if "source" in data:
        source = _domain(data["source"], "source", base.source if base else None, known, bad)
    elif base is not None:
        source = base.source
    else:
        raise bad("source", "missing; add a [source] table or a base preset")
    known[source.name] = source

    if "target" in data and "targets" in data:
        raise bad("target", "give either one [target] table or [[targets]] tables, not both")
    if "target" in data:
        raw_targets, label = [data["target"]], "target"
    elif "targets" in data:
        raw_targets, label = data["targets"], "targets"
        if not isinstance(raw_targets, list) or not raw_targets:
            raise bad("targets", "must be one or more [[targets]] tables")
    elif base is not None:
        raw_targets, label = [], ""
    else:
        raise bad("targets", "missing; add [[targets]] tables (or one [target]) or a base preset")
    targets = list(base.targets) if base is not None and not raw_targets else []
    base_names = {d.name for d in base.domains} if base else set()
    for i, raw in enumerate(raw_targets):
        where = label if label == "target" else f"targets[{i}]"
        start = None
        if isinstance(raw, Mapping) and "from" not in raw and raw.get("name") in base_names:
            start = known[raw["name"]]  # a base domain of the same name: override only what is written
        target = _domain(raw, where, start, known, bad)
        targets.append(target)
        known[target.name] = target
    names = [source.name] + [t.name for t in targets]
    for n in names:
        if names.count(n) > 1:
            raise bad("targets", f"domain name {n!r} is used twice; every domain needs its own name")
    return BenchmarkPreset(name, box, source, tuple(targets), description, origin=str(path))


def _base(
    value: Any, path: Path, stack: tuple[Path, ...], bad: Callable[[str, str], ConfigError]
) -> BenchmarkPreset:
    from voxuda.simulate.presets import PRESETS, is_preset_path

    if not isinstance(value, str):
        raise bad("base", f"must be a preset name or a .toml path, got {_show(value)}")
    if is_preset_path(value):
        target = Path(value) if Path(value).is_absolute() else path.parent / value
        if not target.is_file():
            where = f"a relative base is read from {path.parent}"
            raise bad("base", f"preset file {str(target)!r} not found ({where})")
        return _load(target, stack)
    if value not in PRESETS:
        hint = _did_you_mean(value, PRESETS)
        raise bad("base", f"unknown preset {value!r}{hint} (built-in: {', '.join(PRESETS)})")
    return PRESETS[value]


def _domain(
    raw: Any,
    where: str,
    start: DomainSpec | None,
    known: Mapping[str, DomainSpec],
    bad: Callable[[str, str], ConfigError],
) -> DomainSpec:
    """One domain table: start from ``from`` (or ``start``), apply the written fields, check the result."""
    if not isinstance(raw, Mapping):
        raise bad(where, f"must be a table, got {_show(raw)}")
    allowed = tuple(FIELD_CHECKS) + _DOMAIN_EXTRA
    for k in raw:
        if k not in allowed:
            hint = _did_you_mean(k, allowed)
            raise bad(f"{where}.{k}", f"unknown field{hint} (fields: {', '.join(allowed)})")
    label = f"{where} ({raw['name']})" if isinstance(raw.get("name"), str) else where
    if "from" in raw:
        origin = raw["from"]
        if not isinstance(origin, str) or origin not in known:
            names = ", ".join(known) or "none: give a base preset or define the domain above"
            hint = _did_you_mean(origin, known)
            raise bad(f"{label}.from", f"no domain {_show(origin, False)}{hint} (domains: {names})")
        start = known[origin]
    values: dict[str, Any] = {}
    for k, v in raw.items():
        if k in _DOMAIN_EXTRA:
            continue
        try:
            values[k] = FIELD_CHECKS[k](v)
        except _Bad as exc:
            raise bad(f"{label}.{k}", str(exc)) from None
    if start is not None:
        spec = replace(start, **values)
    else:
        values.setdefault("name", "source" if where == "source" else None)
        missing = [f.name for f in fields(DomainSpec) if f.default is MISSING and values.get(f.name) is None]
        if missing:
            raise bad(
                f"{label}.{missing[0]}",
                "missing; give it, or start from a domain with from = \"<domain>\" (or a base preset)",
            )
        spec = DomainSpec(**values)
    _check_model_fields(spec, values, f"{where} ({spec.name})", bad)
    return spec


def _check_model_fields(
    spec: DomainSpec, written: Mapping[str, Any], label: str, bad: Callable[[str, str], ConfigError]
) -> None:
    """Fields the domain's model never reads are errors when written: the file would not do what it says."""
    if spec.model == "fourier":
        unused = [f for f in PROJECTION_ONLY if f in written]
        if unused:
            raise bad(f"{label}.{unused[0]}", "has no effect with model = 'fourier' (projection only); "
                      "remove it or set model = 'projection'")
        if spec.defocus_um[0] != spec.defocus_um[1]:
            raise bad(f"{label}.defocus_um", "the fourier model images at one defocus; write [d, d]")
    elif spec.snr_choices:
        raise bad(f"{label}.snr_choices", "has no effect with model = 'projection' (fourier only); "
                  "use snr = [low, high] and snr_choices = []")


# -- writing -------------------------------------------------------------------------------------------
def preset_to_toml(preset: BenchmarkPreset) -> str:
    """The preset as a complete preset file: every field the domain's model reads (fields it ignores are
    left out, as the reader rejects them), each field's help as a comment where it first appears."""
    lines = [
        f"# voxuda simulator preset {preset.name!r}: every field of every domain (docs/data.md)",
        "# Use it wherever a preset name goes: voxuda simulate --preset FILE.toml, [data] preset, a suite's",
        f"# [defaults] preset. To change only a few fields, write a new file with base = {preset.name!r}.",
        f"name = {_value(preset.name)}",
        f"box = {preset.box}",
        f"description = {_value(preset.description)}",
    ]
    explained: set[str] = set()
    for i, d in enumerate(preset.domains):
        lines += ["", "[source]" if i == 0 else "[[targets]]"]
        lines += _domain_lines(d, explained)
    return "\n".join(lines) + "\n"


def _domain_lines(d: DomainSpec, explained: set[str]) -> list[str]:
    ignored = PROJECTION_ONLY if d.model == "fourier" else FOURIER_ONLY
    out = []
    for f in fields(DomainSpec):
        if f.name in ignored:
            continue
        v = getattr(d, f.name)
        text = _pairs_table(v) if f.name in ("classes", "splits") else _value(v)
        line = f"{f.name} = {text}"
        if f.name not in explained:
            explained.add(f.name)
            line = f"{line}  # {f.metadata['help']}"
        out.append(line)
    return out


def _pairs_table(pairs: tuple[tuple[str, Any], ...]) -> str:
    return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in pairs) + " }"


def _key(k: str) -> str:
    return k if _BARE_KEY.match(k) else json.dumps(k, ensure_ascii=False)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)  # shortest repr: read back exactly
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # JSON string escapes are valid TOML basic-string escapes
    if isinstance(v, tuple | list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to a preset file")


# -- identity ------------------------------------------------------------------------------------------
def spec_digest(preset: BenchmarkPreset) -> str:
    """Hash of everything that shapes the simulated data (box and every domain field), not of the name,
    description or file layout: editing what a preset file simulates changes it, a comment does not."""
    payload = json.dumps({"box": preset.box, "domains": [asdict(d) for d in preset.domains]}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


# -- messages ------------------------------------------------------------------------------------------
def _show(v: Any, kind: bool = True) -> str:
    """A value for a message: its repr (shortened) and, for type errors, its TOML kind."""
    kinds = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "table"}
    name = kinds.get(type(v), type(v).__name__)
    text = repr(v) if not isinstance(v, Mapping) else "{...}"
    if len(text) > 60:
        return f"a {name}"
    return f"{text} ({name})" if kind else text


def _did_you_mean(value: Any, options: Any) -> str:
    if not isinstance(value, str):
        return ""
    hint = difflib.get_close_matches(value, list(options), n=1)
    return f"; did you mean {hint[0]!r}?" if hint else ""
