"""Run entries generated from the Vox-UDA ablation index (``configs/ablations/suite.toml``, format 1).

The index names a ``base`` run config and one ``[[ablation]]`` table per variant (``name``, ``group``,
``file``, ``description``, ``paper``); each variant file holds a partial ``[method]`` table. The method of
a variant is the base's ``[method]`` deep-merged with the variant's, where a component table whose ``name``
differs from the base's *replaces* it (the base's parameters belong to another component) — the rule of
docs/vox_uda.md. Only the method comes from these files: data, trainer and evaluation settings come from
the benchmark suite, so every variant is trained and scored exactly like the suite's baselines.

A suite uses it as ``runs_from = {index = "path/to/suite.toml", groups = ["components"], init_from = "..."}``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from voxuda.config import load_toml
from voxuda.errors import ConfigError

FORMAT = 1
_SPEC_KEYS = frozenset({"index", "groups", "names", "init_from", "label_prefix"})


def merge_method(base: Mapping[str, Any], variant: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``variant`` onto ``base``; a sub-table with a different ``name`` replaces the base's."""
    out = copy.deepcopy(dict(base))
    for key, value in variant.items():
        old = out.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            if "name" in value and "name" in old and value["name"] != old["name"]:
                out[key] = copy.deepcopy(dict(value))
            else:
                out[key] = merge_method(old, value)
        elif isinstance(value, Mapping) and isinstance(old, str) and value.get("name", old) != old:
            out[key] = copy.deepcopy(dict(value))
        elif isinstance(value, Mapping) and isinstance(old, str):
            out[key] = merge_method({"name": old}, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def runs_from_ablations(spec: Any, *, base: Path) -> list[dict[str, Any]]:
    """``[[runs]]`` tables for the ablation variants selected by ``spec`` (paths relative to ``base``)."""
    if isinstance(spec, str):
        spec = {"index": spec}
    if not isinstance(spec, Mapping) or "index" not in spec:
        raise ConfigError("runs_from must be a path or a table with 'index' (the ablation index TOML)")
    unknown = set(spec) - _SPEC_KEYS
    if unknown:
        known = ", ".join(sorted(_SPEC_KEYS))
        raise ConfigError(f"runs_from: unknown key {sorted(unknown)[0]!r} (known: {known})")
    index_path = (base / str(spec["index"])).resolve()
    index = load_toml(index_path)
    if index.get("format") != FORMAT:
        raise ConfigError(
            f"{index_path}: ablation index format {index.get('format')!r}; this voxuda reads {FORMAT}")
    base_cfg = load_toml(index_path.parent / str(index["base"])) if index.get("base") else {}
    base_method = dict(base_cfg.get("method", {}))
    groups = set(spec.get("groups", []))
    names = set(spec.get("names", []))
    prefix = str(spec.get("label_prefix", "abl_"))
    runs = []
    for entry in index.get("ablation", []):
        if groups and entry.get("group") not in groups:
            continue
        if names and entry.get("name") not in names:
            continue
        variant = load_toml(index_path.parent / str(entry["file"])).get("method", {})
        method = merge_method(base_method, variant)
        method.setdefault("name", index.get("method", "vox_uda"))
        note = str(entry.get("description", ""))
        if entry.get("paper"):
            note += f" (paper [R]: {entry['paper']})"
        run: dict[str, Any] = {"label": f"{prefix}{entry['name']}", "method": method,
                               "group": str(entry.get("group", "")), "note": note}
        if spec.get("init_from"):
            run["init_from"] = spec["init_from"]
        runs.append(run)
    missing = names - {e.get("name") for e in index.get("ablation", [])}
    if missing:
        raise ConfigError(f"runs_from.names: {sorted(missing)[0]!r} is not in {index_path}")
    if not runs:
        raise ConfigError(f"runs_from: no ablation of {index_path} matches groups={sorted(groups)}")
    return runs
