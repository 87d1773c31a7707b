"""``voxuda plugins``: what is registered, by whom, and which plugins failed."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from voxuda.ops.backends import BackendStatus
    from voxuda.registry import ComponentSpec


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--kind", help="only components of this kind")


def run(args: argparse.Namespace) -> int:
    from voxuda.plugins import get_registry

    registry = get_registry()
    specs = registry.list(args.kind)
    conflicts = registry.conflicts()
    backends = _op_backend_rows(specs)
    if args.json:
        payload = {
            "components": [
                {
                    "kind": s.kind,
                    "name": s.name,
                    "qualified_name": s.qualified_name,
                    "plugin": s.plugin,
                    "distribution": s.distribution,
                    "version": s.version,
                    "aliases": list(s.aliases),
                    "summary": s.summary,
                    **(
                        {"priority": backends[s.qualified_name].priority,
                         "available": backends[s.qualified_name].available}
                        if s.kind == "op" else {}
                    ),
                }
                for s in specs
            ],
            "plugins": [
                {"plugin": p, "distribution": d, "version": v} for p, d, v in registry.loaded_plugins
            ],
            "failed": [
                {"plugin": f.plugin, "distribution": f.distribution, "error": f.error}
                for f in registry.failures
            ],
            "conflicts": [
                {"kind": k, "name": n, "claimed_by": [s.qualified_name for s in c]} for k, n, c in conflicts
            ],
        }
        print(json.dumps(payload, indent=2))
        return 0
    rows = [("KIND", "NAME", "PLUGIN", "DISTRIBUTION", "VERSION", "SUMMARY")]
    for s in specs:
        summary = s.summary
        if s.kind == "op":
            row = backends[s.qualified_name]
            state = "available" if row.available else "unavailable: " + row.reason
            summary += f" [priority {row.priority}; {state}]"
        rows.append((s.kind, s.name, s.plugin, s.distribution or "-", s.version or "-", summary))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:5], widths)) + "  " + r[5])
    for kind, name, claimants in conflicts:
        names = ", ".join(s.qualified_name for s in claimants)
        print(f"conflict: {kind} {name!r} is claimed by {names}; use a qualified name")
    for f in registry.failures:
        print(f"failed plugin: {f.plugin} ({f.distribution or 'no distribution'}): {f.error}")
    return 0


def _op_backend_rows(specs: list[ComponentSpec]) -> dict[str, BackendStatus]:
    """Op backends as the filters rank them (:func:`voxuda.ops.available_backends`), by qualified name,
    so that this listing and ``auto`` cannot disagree on a priority or an availability."""
    if not any(s.kind == "op" for s in specs):
        return {}  # listing another kind: no need to import the ops or run the probes
    from voxuda.ops.backends import available_backends

    return {row.qualified_name: row for row in available_backends()}
