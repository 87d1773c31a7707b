"""``voxuda describe NAME``: a component's config fields with defaults and one-line docs."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="component name, bare or qualified (plugin:name)")
    parser.add_argument("--kind", help="restrict to one kind (backbone, method, ...)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    from voxuda.api import describe

    descriptions = describe(args.name, kind=args.kind)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        **d.spec.provenance(),
                        "summary": d.doc,
                        "fields": [
                            {"name": f.name, "type": f.type, "default": f.default, "help": f.help}
                            for f in d.fields
                        ],
                    }
                    for d in descriptions
                ],
                indent=2,
                default=str,
            )
        )
        return 0
    for d in descriptions:
        s = d.spec
        print(f"{s.kind} {s.qualified_name}  ({s.distribution or '-'} {s.version or ''})".rstrip())
        if d.doc:
            print(f"  {d.doc}")
        if not d.fields:
            print("  (no configuration)")
        width = max((len(f.name) for f in d.fields), default=0)
        for f in d.fields:
            default = json.dumps(f.default, default=str)
            print(f"  {f.name.ljust(width)}  {f.type} = {default}")
            if f.help:
                print(f"  {' ' * width}    {f.help}")
    return 0
