"""``voxuda segment --fg-prior LO HI`` or ``--prior-estimate em``: label a whole tomogram with a foreground
threshold calibrated on it.

Why: on crowded targets the source-trained model keeps the source's occupancy (docs/vox_uda.md, "Content
track with a user-given foreground range"); a user who knows roughly how much of the tomogram is
macromolecule can have the decision follow that. The rule is the benchmark's (``evaluation.fg_prior``,
:mod:`voxuda.engine.decision`): the fraction argmax calls, clamped into ``[lo, hi]``; argmax when it already
lies inside. The tomogram itself is the unlabelled calibration set. With ``--prior-estimate em`` the range is
the single fraction the EM re-estimation of the prior reaches on this tomogram's ``p_fg`` histogram
(:func:`voxuda.engine.decision.estimate_from_histogram`), from the network's mean ``p_fg`` on its run's
held-out source.

The threshold is known only once every plane has been seen, and outputs are streamed, so the planes' ``p_fg``,
most probable macromolecule class and argmax label go to scratch memory maps beside the output (removed at
the end, also on errors) while a 2^16-bin histogram of ``p_fg`` is accumulated; :meth:`finish` picks the
threshold and writes the label planes in order.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from voxuda.engine.decision import (
    PriorEstimate,
    SourceCalibration,
    estimate_from_histogram,
    prior_fraction,
    threshold_from_histogram,
)
from voxuda.segment.writer import MRCPlaneWriter, check_int8_classes, temp_path_for

BINS = 1 << 16
#: scratch maps beside the label output ``NAME``: hidden temporaries of ``NAME.<kind>`` (voxuda.atomic names)
SCRATCH_KINDS = {"p_fg": np.float32, "class": np.int8, "argmax": np.int8}


def scratch_names(label_name: str) -> list[str]:
    """The destination names whose stale temporaries a killed ``--fg-prior`` segment may leave."""
    return [f"{label_name}.{kind}" for kind in SCRATCH_KINDS]


class PriorThresholdSink:
    """A :class:`~voxuda.segment.writer.PlaneSink` writing labels by a prior-calibrated foreground threshold
    (and, when asked, the foreground probability as :class:`SegmentationSink` does): aimed at the user's
    ``fg_prior``, or, given ``source`` (the network's posteriors on held-out source), at the EM estimate
    (``method``: em or em_calibrated) of this tomogram's foreground fraction."""

    def __init__(self, labels: MRCPlaneWriter, probabilities: MRCPlaneWriter | None,
                 fg_prior: tuple[float, float] | None = None, *, source: SourceCalibration | None = None,
                 method: str = "em") -> None:
        if (fg_prior is None) == (source is None):
            raise ValueError("give the sink a foreground range or a source prior to estimate from, not both")
        self.labels = labels
        self.probabilities = probabilities
        self.fg_prior = fg_prior
        self.source = source
        self.method = method
        self.estimate: PriorEstimate | None = None
        self.counts = np.zeros(BINS, dtype=np.int64)
        self.argmax_foreground = 0
        self.threshold: float | None = None  # None after finish(): argmax kept
        self.argmax_fraction = 0.0
        self.called_fraction = 0.0
        shape = labels.shape
        final = labels.final
        self._paths = [temp_path_for(final.with_name(name)) for name in scratch_names(final.name)]
        self._maps: dict[str, np.ndarray] = {}
        for (kind, dtype), path in zip(SCRATCH_KINDS.items(), self._paths):
            self._maps[kind] = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)

    def put(self, z0: int, probs: np.ndarray) -> None:
        check_int8_classes(probs)
        p_fg = (1.0 - probs[0]).astype(np.float32)
        z1 = z0 + p_fg.shape[0]
        self._maps["p_fg"][z0:z1] = p_fg
        self._maps["class"][z0:z1] = (probs[1:].argmax(axis=0) + 1).astype(np.int8)
        argmax = probs.argmax(axis=0).astype(np.int8)
        self._maps["argmax"][z0:z1] = argmax
        self.argmax_foreground += int((argmax > 0).sum())
        bins = np.minimum((p_fg * BINS).astype(np.int64), BINS - 1)
        self.counts += np.bincount(bins.reshape(-1), minlength=BINS)
        if self.probabilities is not None:
            self.probabilities.write(z0, p_fg)

    def finish(self) -> None:
        total = int(self.counts.sum())
        self.argmax_fraction = self.argmax_foreground / max(total, 1)
        if self.source is not None:
            self.estimate = estimate_from_histogram(self.counts, self.source, self.method)
            self.fg_prior = (self.estimate.estimate, self.estimate.estimate)
        assert self.fg_prior is not None
        wanted = prior_fraction(self.argmax_fraction, self.fg_prior)
        if wanted is not None:
            self.threshold = threshold_from_histogram(self.counts, wanted)
        called = 0
        for z in range(self.labels.shape[0]):
            maps = {kind: array[z:z + 1] for kind, array in self._maps.items()}
            if self.threshold is None:
                plane = np.asarray(maps["argmax"])
            else:
                plane = np.where(maps["p_fg"] > self.threshold, maps["class"], 0)
            called += int((plane > 0).sum())
            self.labels.write(z, plane.astype(np.int8))
        self.called_fraction = called / max(total, 1)

    def note(self) -> str:
        """One line for the log: what argmax called, the threshold and what it called."""
        assert self.fg_prior is not None, "finish() first"
        lo, hi = self.fg_prior
        rule = ("argmax kept" if self.threshold is None
                else f"foreground threshold {self.threshold:.4f} on p_fg")
        if self.estimate is not None:
            est = self.estimate
            given = (f"--prior-estimate {est.method}: {100 * est.estimate:.2f} % foreground estimated from "
                     f"mean p_fg {100 * est.target_soft:.2f} % here, {100 * est.source_soft:.2f} % on "
                     "held-out source")
        else:
            given = f"--fg-prior {lo:g} {hi:g}"
        return (f"{given}: argmax called {100 * self.argmax_fraction:.2f} % foreground; "
                f"{rule}: {100 * self.called_fraction:.2f} %")

    def close(self) -> None:
        """Delete the scratch maps (idempotent; also after an error)."""
        self._maps.clear()  # drops the memory maps before their files are removed
        for path in self._paths:
            with contextlib.suppress(FileNotFoundError):
                Path(path).unlink()


__all__ = ["PriorThresholdSink", "scratch_names"]
