"""``voxuda pick LABELS.mrc --out PICKS.star``: particle positions from a segmentation's components."""

from __future__ import annotations

import argparse

from voxuda.commands.options import add_output_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("labels", metavar="LABELS.mrc", help="label map, e.g. written by voxuda segment")
    add_output_argument(parser, "PICKS.star",
                        "RELION particle STAR (.star) or CSV (.csv, centroids in tomogram pixels and Å)")
    add("--tomogram", metavar="TOMO.mrc",
        help="the segmented tomogram: the picks take its name (rlnTomoName) and geometry, so voxuda extract "
             "and RELION match them to it (default: the label map's name and geometry, with a note)")
    add("--relion", type=int, choices=[4, 5], default=4,
        help="STAR coordinates: 4 = rlnCoordinateX/Y/Z in tomogram pixels (default), 5 = "
             "rlnCenteredCoordinateX/Y/ZAngst, Å from the tomogram centre")
    add("--class-value", type=int, action="append", dest="class_values", metavar="N",
        help="label value to pick (repeatable; default: every non-zero value)")
    add("--min-voxels", type=int, default=1, help="drop components smaller than this (default 1)")
    add("--max-voxels", type=int, help="drop components larger than this (e.g. merged clusters)")
    add("--connectivity", type=int, choices=[6, 18, 26], default=26,
        help="voxel neighbourhood of a component (default 26)")
    add("--tomo-name", help="rlnTomoName to write (default: the --tomogram's stem, else the label file's)")


def run(args: argparse.Namespace) -> int:
    from voxuda.data.picking import pick_from_labels

    particles = pick_from_labels(
        args.labels, args.output,
        class_values=tuple(args.class_values) if args.class_values else None,
        min_voxels=args.min_voxels, max_voxels=args.max_voxels,
        connectivity=args.connectivity, tomo_name=args.tomo_name,
        tomogram=args.tomogram, relion=args.relion,
    )
    print(f"picked {len(particles)} particles from {args.labels}: wrote {args.output}")
    return 0
