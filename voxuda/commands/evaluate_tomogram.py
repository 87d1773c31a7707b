"""``voxuda evaluate-tomogram SEG.mrc LABELS.mrc [--picks PICKS.star --truth TRUTH.star --distance Å]``:
score a whole-tomogram segmentation against a label map (Dice) and picks against true positions.

Why a separate command from ``voxuda evaluate``: that one scores a run on a dataset of subtomograms; this one
scores *files*, whatever made them (``voxuda segment``, another tool), on a tomogram whose truth is known,
e.g. one written by ``voxuda simulate --tomogram``.

* Dice of the foreground (label > 0 in both maps). When LABELS holds several classes: per class, Dice if
  SEG holds classes too, otherwise the fraction of that class's voxels SEG marks as foreground (recall).
* Picks: each pick may match at most one true position and the reverse, within ``--distance`` Å (the pixel
  size of LABELS converts pick pixels to Å). The matching maximises the number of matched pairs and, among
  those, minimises their total distance: Hungarian assignment
  (:func:`scipy.optimize.linear_sum_assignment`) on the candidate pairs :class:`scipy.spatial.cKDTree`
  finds within the distance, so a tomogram of thousands of picks needs no dense distance matrix.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from voxuda.jsonio import read_json

__all__ = ["add_arguments", "run", "dice", "segmentation_scores", "match_points", "pick_scores"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add(
        "segmentation",
        metavar="SEG.mrc",
        help="the segmentation to score (integer labels, e.g. voxuda segment)",
    )
    add("labels", metavar="LABELS.mrc", help="the true label map (same shape and voxel size)")
    add("--picks", metavar="PICKS.star", help="picks to score (STAR or CSV, tomogram pixels)")
    add("--truth", metavar="TRUTH.star", help="true particle positions (e.g. particles.star of simulate)")
    add(
        "--distance",
        type=float,
        metavar="ANGSTROM",
        help="a pick matches a true position closer than this (required with --picks)",
    )
    add(
        "--tomo-name",
        metavar="NAME",
        help="score the picks and true positions of this rlnTomoName (default: the one name the truth holds)",
    )
    add("--json", action="store_true", help="print the whole result as JSON")


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two boolean masks; 1.0 when both are empty (nothing to find, nothing found)."""
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def segmentation_scores(
    seg: np.ndarray, labels: np.ndarray, class_names: dict[int, str] | None = None
) -> dict[str, Any]:
    """Foreground Dice, and per class (when ``labels`` has more than one) Dice or recall (see module doc)."""
    fg_s, fg_l = seg > 0, labels > 0
    out: dict[str, Any] = {
        "dice_foreground": dice(fg_s, fg_l),
        "voxels_segmented": int(fg_s.sum()),
        "voxels_labelled": int(fg_l.sum()),
        "voxels": int(labels.size),
    }
    values = [int(v) for v in np.unique(labels) if v != 0]
    if len(values) > 1:
        seg_has_classes = len([v for v in np.unique(seg) if v != 0]) > 1
        per: dict[str, dict[str, Any]] = {}
        for v in values:
            mine = labels == v
            row: dict[str, Any] = {"value": v, "voxels": int(mine.sum())}
            if seg_has_classes:
                row["dice"] = dice(seg == v, mine)
            else:
                row["recall"] = float(np.logical_and(fg_s, mine).sum() / mine.sum())
            per[(class_names or {}).get(v, str(v))] = row
        out["per_class"] = per
        out["per_class_metric"] = "dice" if seg_has_classes else "recall"
    return out


def match_points(found: np.ndarray, true: np.ndarray, distance: float) -> list[tuple[int, int, float]]:
    """One-to-one pairs ``(i_found, j_true, d)`` with ``d <= distance``: the largest number of pairs, and of
    those the smallest total distance (Hungarian assignment on the candidate pairs within ``distance``)."""
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial import cKDTree

    if len(found) == 0 or len(true) == 0:
        return []
    pairs = cKDTree(found).sparse_distance_matrix(cKDTree(true), distance, output_type="ndarray")
    if len(pairs) == 0:
        return []
    rows, r_of = np.unique(pairs["i"], return_inverse=True)
    cols, c_of = np.unique(pairs["j"], return_inverse=True)
    # A missing pair costs more than any set of real ones, so the assignment first maximises the count.
    forbidden = distance * (len(rows) + len(cols) + 1) + 1.0
    cost = np.full((len(rows), len(cols)), forbidden)
    cost[r_of, c_of] = pairs["v"]
    ri, ci = linear_sum_assignment(cost)
    return [
        (int(rows[a]), int(cols[b]), float(cost[a, b]))
        for a, b in zip(ri, ci, strict=True)
        if cost[a, b] <= distance
    ]


def pick_scores(found: np.ndarray, true: np.ndarray, distance: float) -> dict[str, Any]:
    """Precision, recall and F1 of picks ``found`` against ``true`` positions (both (n, 3) in Å)."""
    matched = match_points(found, true, distance)
    m, n_found, n_true = len(matched), len(found), len(true)
    precision = m / n_found if n_found else 0.0
    recall = m / n_true if n_true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {
        "picked": n_found,
        "true": n_true,
        "matched": m,
        "distance_angstrom": distance,
        "matching": "hungarian (scipy linear_sum_assignment on cKDTree pairs within the distance)",
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "mean_matched_distance_angstrom": float(np.mean([d for *_, d in matched])) if matched else None,
    }


def _class_names(labels_path: Path) -> dict[int, str]:
    """Class names of a ``voxuda simulate --tomogram`` folder (its tomogram.json), else none."""
    try:
        meta = read_json(labels_path.parent / "tomogram.json")
        return {int(k): str(v) for k, v in meta["classes"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _tomo_name(path: str) -> str | None:
    """The one tomogram a STAR file names (``None`` for CSV or unnamed rows); several is an error."""
    from voxuda.data.star import read_star
    from voxuda.errors import ConfigError

    if Path(path).suffix.lower() != ".star":
        return None
    names = {
        Path(str(v).split(":")[0]).stem
        for frame in read_star(path).values()
        if "rlnTomoName" in frame.columns
        for v in frame["rlnTomoName"]
    }
    if len(names) > 1:
        raise ConfigError(
            f"{path} holds positions of {len(names)} tomograms ({', '.join(sorted(names))}); "
            "pass --tomo-name to score one"
        )
    return names.pop() if names else None


def _positions_angstrom(path: str, geometry: Any) -> np.ndarray:
    """Positions of a picks file in Å from the first voxel, read as ``voxuda extract`` reads them."""
    from voxuda.data.picking import read_picks

    picks = read_picks(path, geometry=geometry)
    xyz = np.array([[p.x, p.y, p.z] for p in picks], dtype=np.float64).reshape(-1, 3)
    vz, vy, vx = geometry.info.voxel_size
    return xyz * np.array([vx, vy, vz])


def run(args: argparse.Namespace) -> int:
    from voxuda.data.errors import DataError
    from voxuda.data.mrc import read_labels
    from voxuda.errors import ConfigError

    if bool(args.picks) != bool(args.truth):
        raise ConfigError(
            "voxuda evaluate-tomogram: --picks and --truth go together (picks and true positions)"
        )
    if args.picks and (args.distance is None or not args.distance > 0):
        raise ConfigError("voxuda evaluate-tomogram: --distance ANGSTROM (> 0) is required with --picks")
    seg, seg_info = read_labels(args.segmentation)
    labels, lab_info = read_labels(args.labels)
    if seg.shape != labels.shape or not np.allclose(seg_info.voxel_size, lab_info.voxel_size, rtol=1e-3):
        raise DataError(
            args.segmentation,
            f"shape {seg.shape} at {seg_info.voxel_size[2]:.3f} Å/px does not match {args.labels} "
            f"(shape {labels.shape} at {lab_info.voxel_size[2]:.3f} Å/px)",
            "score a segmentation of the tomogram these labels belong to",
        )
    result: dict[str, Any] = {"segmentation": args.segmentation, "labels": args.labels}
    result.update(segmentation_scores(seg, labels, _class_names(Path(args.labels))))
    if args.picks:
        from voxuda.data.picking import TomogramGeometry

        name = args.tomo_name or _tomo_name(args.truth) or _tomo_name(args.picks) or Path(args.labels).stem
        geometry = TomogramGeometry(name, labels.shape, lab_info)
        found = _positions_angstrom(args.picks, geometry)
        true = _positions_angstrom(args.truth, geometry)
        result["picks"] = pick_scores(found, true, float(args.distance))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(
        f"Dice (foreground) {result['dice_foreground']:.4f}: {result['voxels_segmented']} voxels segmented, "
        f"{result['voxels_labelled']} labelled, of {result['voxels']}"
    )
    metric = result.get("per_class_metric")
    for name, row in result.get("per_class", {}).items():
        print(f"  class {row['value']} ({name}): {metric} {row[metric]:.4f} ({row['voxels']} voxels)")
    if "picks" in result:
        p = result["picks"]
        print(
            f"picks: {p['matched']} of {p['picked']} picks match one of {p['true']} true positions within "
            f"{p['distance_angstrom']:g} Å (Hungarian): precision {p['precision']:.3f}  recall "
            f"{p['recall']:.3f}  F1 {p['f1']:.3f}"
        )
    return 0
