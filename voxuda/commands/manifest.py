"""``voxuda manifest DIR``: a manifest.csv for the volume/label pairs in a folder, so own data needs no code.

Naming rule (see :func:`voxuda.data.manifest.build_manifest`): ``DIR/volumes/X.mrc`` + ``DIR/labels/X.mrc``,
or ``X.mrc`` + ``X_label.mrc`` side by side anywhere under ``DIR``.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("folder", metavar="DIR",
        help="folder with volumes/ + labels/ (same file names), or X.mrc + X_label.mrc pairs anywhere "
             "under it")
    add("-o", "--output", metavar="MANIFEST.csv", help="where to write (default DIR/manifest.csv; .json too)")
    add("--domain", default="source", help="manifest domain (default source)")
    add("--split", default="train", help="split of the volumes not moved by --val/--test (default train)")
    add("--val", type=float, default=0.0, metavar="FRACTION",
        help="share of volumes in split val (default 0)")
    add("--test", type=float, default=0.0, metavar="FRACTION",
        help="share of volumes in split test (default 0)")
    add("--seed", type=int, default=0, help="seed of the --val/--test assignment (default 0)")
    add("--class", dest="class_name", default="unknown", help="class name of every row (default unknown)")
    add("--polarity", choices=["dark", "bright"], default="dark",
        help="protein contrast in these volumes (default dark: ordinary underfocus data)")
    add("--voxel-size", type=float, metavar="ANGSTROM", help="pixel size of every volume (overrides headers)")
    add("--force", action="store_true", help="replace an existing manifest")


def run(args: argparse.Namespace) -> int:
    from voxuda.data.manifest import build_manifest
    from voxuda.data.mrc import stderr_note

    path, rows = build_manifest(
        args.folder, output=args.output, domain=args.domain, split=args.split, val_fraction=args.val,
        test_fraction=args.test, seed=args.seed, class_name=args.class_name, polarity=args.polarity,
        voxel_size=args.voxel_size, overwrite=args.force, note=stderr_note,
    )
    labelled = sum(1 for r in rows if r.label is not None)
    counts = ", ".join(f"{s} {sum(1 for r in rows if r.split == s)}" for s in sorted({r.split for r in rows}))
    print(f"manifest of {len(rows)} volumes ({labelled} with labels; {counts}): wrote {path}")
    return 0
