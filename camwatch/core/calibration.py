"""A camera's own bounds, learned from its first checks after enrolment: threshold, structure scale, scene.

Why apart from ``decision``: the decision judges one view against what a
camera learned; this module is the learning, from the views of its first
checks that were not judged drifted (the daemon records exactly those as
calibration samples; ``camwatch evaluate`` replays them from a case folder's
calibration views). The daemon, ``camwatch check`` and ``camwatch evaluate``
all call it, so a benchmark figure is a figure about the code that raises alerts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from camwatch.core import scene
from camwatch.core.decision import SHIPPED, DecisionParams, Reference, Stats, Verdict, stat_value


def _finite(samples: Sequence[float | None]) -> np.ndarray:
    return np.asarray([s for s in samples if s is not None and math.isfinite(s)], np.float64)


def calibrate(samples: Sequence[float | None], default: float, params: DecisionParams = SHIPPED) -> float:
    """A camera's threshold from similarities of its first benign checks after enrolment.

    The threshold distance (1 - threshold) is ``params.calibration_ratio`` times
    the model's default distance: stricter than the default, which is set for
    0.5% false alarms on harsh synthetic pairs over many scenes, while a
    camera's own views are the only benign change it will see. It is lowered
    further for a camera whose early views came closer than that: a view the
    camera already showed as benign must not alarm. Fewer samples than
    ``params.calibration_min_samples`` leave the default.
    """
    values = _finite(samples)
    if len(values) < params.calibration_min_samples:
        return float(default)
    base = max(1.0 - float(default), 1e-6)
    # Views below the default that were kept were kept by the learned scene (in place, the
    # embedding moved by traffic): they say nothing about how far the embedding may go.
    lowering = values[values >= float(default)]
    lowest = float(lowering.min()) - 1e-3 if lowering.size else 1.0
    return float(min(1.0 - params.calibration_ratio * base, lowest))


def calibrate_structure(samples: Sequence[float | None], params: DecisionParams = SHIPPED) -> float | None:
    """A camera's structure scale from the structure distances of its first benign checks.

    Cameras differ in how far their benign views sit from the reference in
    structure (noise, trees, traffic): the scale is ``structure_spread_factor``
    times the median early distance, within ``structure_min_scale`` and
    ``structure_max_scale``. None (structure not used) with fewer than
    ``calibration_min_samples`` samples.
    """
    values = _finite(samples)
    if len(values) < params.calibration_min_samples:
        return None
    scale = params.structure_spread_factor * float(np.median(values))
    return float(min(max(scale, params.structure_min_scale), params.structure_max_scale))


def provisional_backgrounds(references: Sequence[Reference]) -> dict[int | None, scene.Background]:
    """Each reference's scene learned from the reference alone: what the first checks are judged on."""
    return {r.id: scene.learn([stat_value(r.stats, "layout")], [stat_value(r.stats, "focus_grid")]) for r in references}


def learn_backgrounds(references: Sequence[Reference], early: Sequence[tuple[Verdict, Stats]]
                      ) -> dict[int | None, scene.Background]:
    """Each reference's scene learned from it and the early views nearest to it that were not judged drifted.

    ``camwatch evaluate`` calls this with a camera's calibration views, as the
    daemon records them; a turned camera's views are judged drifted, so they are
    never learned.
    """
    return learn_backgrounds_from(references, [(v.reference_id, s) for v, s in early if not v.drifted])


def learn_backgrounds_from(references: Sequence[Reference], views: Sequence[tuple[int | None, Stats]]
                           ) -> dict[int | None, scene.Background]:
    """Each reference's scene from its statistics and those of the views (reference id, stats) nearest to it."""
    out = {}
    for r in references:
        mine = [s for ref_id, s in views if ref_id == r.id]
        out[r.id] = scene.learn([stat_value(r.stats, "layout")] + [stat_value(s, "layout") for s in mine],
                                [stat_value(r.stats, "focus_grid")] + [stat_value(s, "focus_grid") for s in mine])
    return out


def calibrate_from(early: Sequence[Verdict], default: float,
                   params: DecisionParams = SHIPPED) -> tuple[float, float | None]:
    """(threshold, structure scale) from the verdicts of a camera's first checks at the default.

    Only the views not judged drifted count, as in the daemon, which records a
    sample only for those; ``camwatch evaluate`` and the benchmarks replay it.
    """
    kept = [v for v in early if not v.drifted]
    return (calibrate([v.similarity for v in kept], default, params),
            calibrate_structure([v.structure for v in kept], params))
