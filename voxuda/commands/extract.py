"""``voxuda extract TOMOGRAM.mrc PICKS --out DIR``: cut subtomograms at picks into a dataset folder.

The folder (one MRC per pick plus ``manifest.csv``) is what ``[data]`` reads as a target domain, so real
tomograms enter adaptation without any code.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("tomogram", metavar="TOMOGRAM.mrc", help="the tomogram (any MRC mode; memory-mapped)")
    add("picks", metavar="PICKS", help="RELION STAR (rlnCoordinateX/Y/Z, pixels) or CSV (x,y,z[,class])")
    add("--out", required=True, help="dataset folder to write (MRC files + manifest.csv)")
    add("--box", type=int, default=32, help="subtomogram edge in voxels (default 32)")
    add("--border", choices=["skip", "pad"], default="skip",
        help="boxes crossing the tomogram edge: skip them (default) or pad with the mean")
    add("--domain", default="target", help="manifest domain (default target)")
    add("--split", default="train", help="manifest split (default train)")
    add("--polarity", choices=["dark", "bright"], default="dark",
        help="protein contrast in this tomogram (default dark: ordinary underfocus data)")
    add("--tomo-name", help="use the picks whose rlnTomoName matches this (default: the tomogram's name)")


def run(args: argparse.Namespace) -> int:
    from voxuda.data.extract import extract_subtomograms

    manifest = extract_subtomograms(
        args.tomogram, args.picks, args.out, box=args.box, border=args.border, domain=args.domain,
        split=args.split, polarity=args.polarity, tomogram_name=args.tomo_name,
    )
    with open(manifest, encoding="utf-8") as fh:
        count = sum(1 for _ in fh) - 1
    print(f"extracted {count} subtomograms of {args.box}^3 from {args.tomogram}: wrote {manifest}")
    return 0
