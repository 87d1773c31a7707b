"""``voxuda extract TOMOGRAM.mrc [PICKS] --out DIR``: cut subtomograms into a dataset folder.

The folder (one MRC per box, label boxes with ``--labels``, ``manifest.csv``) is what ``[data]`` reads as a
domain, so real tomograms enter adaptation without any code. Boxes sit at picks, on a grid or at random.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("tomogram", metavar="TOMOGRAM.mrc", help="the tomogram (any MRC mode; memory-mapped)")
    add("picks", metavar="PICKS", nargs="?",
        help="RELION 4 (rlnCoordinateX/Y/Z, pixels) or 5 (rlnCenteredCoordinateX/Y/ZAngst) STAR, or CSV "
             "(x,y,z[,class], pixels); or use --grid / --random instead")
    add("--out", required=True, help="dataset folder to write (MRC files + manifest.csv), atomically")
    add("--box", type=int, default=32, help="subtomogram edge in voxels (default 32)")
    add("--labels", metavar="LABELS.mrc",
        help="label map of this tomogram: cut the matching label boxes too (a labelled source domain)")
    add("--grid", action="store_true", help="boxes on a regular grid instead of picks (see --stride)")
    add("--stride", type=int, metavar="N", help="grid step in voxels (default: the box, no overlap)")
    add("--random", type=int, metavar="N", help="N boxes at random positions instead of picks (see --seed)")
    add("--seed", type=int, default=0, help="seed of --random (default 0)")
    add("--border", choices=["skip", "pad"], default="skip",
        help="pick boxes crossing the tomogram edge: skip them (default) or pad with the mean")
    add("--domain", default="target", help="manifest domain (default target)")
    add("--split", default="train", help="manifest split (default train)")
    add("--polarity", choices=["dark", "bright"], default="dark",
        help="protein contrast in this tomogram (default dark: ordinary underfocus data)")
    add("--tomo-name", help="use the picks whose rlnTomoName matches this (default: the tomogram's name)")
    add("--voxel-size", type=float, metavar="ANGSTROM",
        help="pixel size of the tomogram in Å (overrides its header)")
    add("--picks-pixel-size", type=float, metavar="ANGSTROM",
        help="pixel size the pick coordinates are in (default: the file's rlnTomoTiltSeriesPixelSize, else "
             "the tomogram's)")
    add("--picks-binning", type=float, metavar="B",
        help="the tomogram's binning relative to the picks: coordinates are divided by B (4 for unbinned "
             "picks on a bin-4 tomogram)")
    add("--match-box-of", metavar="DATASET",
        help="dataset folder or manifest (e.g. the simulated source): warn, with the --box to use, when the "
             "physical box differs from its boxes by more than 10 %%")
    add("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    from voxuda.data.extract import extract_subtomograms

    manifest = extract_subtomograms(
        args.tomogram, args.picks, args.out, box=args.box, border=args.border, domain=args.domain,
        split=args.split, polarity=args.polarity, tomogram_name=args.tomo_name, labels=args.labels,
        grid=args.grid, stride=args.stride, random=args.random, seed=args.seed, voxel_size=args.voxel_size,
        picks_pixel_size=args.picks_pixel_size, picks_binning=args.picks_binning,
        match_box_of=args.match_box_of, progress=not args.no_progress,
    )
    with open(manifest, encoding="utf-8") as fh:
        count = sum(1 for _ in fh) - 1
    labelled = " with label boxes" if args.labels else ""
    print(f"extracted {count} subtomograms of {args.box}^3{labelled} from {args.tomogram}: wrote {manifest}")
    return 0
