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
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

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


def learn_backgrounds(references: Sequence[Reference], early: Sequence[tuple[Verdict, Stats]],
                      params: DecisionParams = SHIPPED) -> dict[int | None, scene.Background]:
    """Each reference's scene learned from it and the early views nearest to it that were not judged
    drifted, or that were judged drifted on their similarity alone yet agree with the others
    (``consensus``).

    ``camwatch evaluate`` calls this with a camera's calibration views, as the
    daemon records them; a turned camera's views are judged drifted and disagree
    with the rest, so they are never learned.
    """
    kept = [(v.reference_id, s) for v, s in early if not v.drifted]
    doubtful = [(v.reference_id, s) for v, s in early if v.drifted and v.reason == "similarity"]
    return learn_calibrated(references, kept, doubtful, params)[1]


def learn_calibrated(references: Sequence[Reference], kept: Sequence[tuple[int | None, Stats]],
                     doubtful: Sequence[tuple[int | None, Stats]], params: DecisionParams = SHIPPED
                     ) -> tuple[list[tuple[int | None, Stats]], dict[int | None, scene.Background]]:
    """(the views learned from, each reference's scene) from a camera's early views, (reference id, stats):
    the ``kept`` ones and the ``doubtful`` ones ``consensus`` lets join, each scene's line no higher than
    the doubtful views it found in the scene but did not let join. ``camwatch evaluate`` (through
    ``learn_backgrounds``) and the daemon (``service.checks``) both learn a calibrated scene here."""
    agreed = consensus(references, kept, doubtful, params)
    views = [*kept, *agreed.kept]
    return views, learn_backgrounds_from(references, views, agreed.least_aligned)


@dataclass(frozen=True)
class Consensus:
    """What a camera's doubtful early views came to (``consensus``)."""

    #: The doubtful views that join their reference's scene, as (reference id, statistics).
    kept: list[tuple[int | None, Stats]]
    #: By reference id: the lowest ``aligned`` of a doubtful view found in the scene that did not join it
    #: (``consensus``); absent for a reference that had none.
    least_aligned: dict[int | None, float]


def consensus(references: Sequence[Reference], kept: Sequence[tuple[int | None, Stats]],
              doubtful: Sequence[tuple[int | None, Stats]], params: DecisionParams = SHIPPED) -> Consensus:
    """The ``doubtful`` early views (judged drifted on similarity alone) that belong to their reference's scene.

    Why: on a camera filled with traffic (a close-up road, a lorry in the
    reference) nearly every early view is far from the reference in the
    embedding and in the reference's own structure, and a scene learned from the
    few that were not becomes the reference with its traffic. Judged together,
    the reference and its early views agree where the scene is static. A doubtful
    view is kept when it aligns with the background learned from all the others
    (``scene.agreement``) at least ``scene_aligned`` (the line an uncalibrated
    camera's view is held to), and only when the reference aligns as well with
    the background of the doubtful views alone: a camera turned during
    calibration gives doubtful views that agree with each other and not with
    the reference, and none of them is kept. A doubtful view that shows a cover
    on the reference's own scene is never kept (``_in_the_scene``). A reference
    that aligns less on the doubtful views, because traffic in it hides the road
    they show, still lets in those that show sharp things in the scene rather
    than a soft cover or a blur when its structure is hidden on their scene, not
    moved (``_hidden_not_moved``).

    A doubtful view that passed all of that but aligned under ``scene_aligned``
    does not join (one busy moment must not teach the scene its traffic), yet it
    is a benign view of this camera all the same: how little it aligned is
    returned, and the scene's ``least_aligned`` (its line) goes no higher than
    that. Otherwise a busy road's line is set by its calmest early views alone
    and the same traffic alarms minutes later. Only views aligned at least
    ``scene_aligned_min + scene_aligned_margin`` count, so that no single view
    takes the line to the floor.
    """
    out: list[tuple[int | None, Stats]] = []
    least: dict[int | None, float] = {}
    for r in references:
        mine = [s for ref_id, s in doubtful if ref_id == r.id]
        if not mine:
            continue
        others = [s for ref_id, s in kept if ref_id == r.id]
        reference = stat_value(r.stats, "layout")
        on_doubtful = scene.agreement([reference] + [stat_value(s, "layout") for s in mine], which=[0])[0]
        if on_doubtful is None:
            continue
        hidden = on_doubtful < params.scene_aligned
        mine = _in_the_scene(r, mine, params, sharp=hidden)
        if hidden and not _hidden_not_moved(r, mine, params):
            continue
        first = 1 + len(others)
        aligned = scene.agreement([reference] + [stat_value(s, "layout") for s in others + mine],
                                  which=range(first, first + len(mine)))
        out += [(r.id, s) for s, a in zip(mine, aligned[first:])
                if a is not None and a >= params.scene_aligned]
        below = [a for a in aligned[first:] if a is not None
                 and params.scene_aligned_min + params.scene_aligned_margin <= a < params.scene_aligned]
        if below:
            least[r.id] = min(below)
    return Consensus(out, least)


def _in_the_scene(reference: Reference, doubtful: Sequence[Stats], params: DecisionParams,
                  sharp: bool) -> list[Stats]:
    """The doubtful views whose difference from the reference is things in the scene, judged on the
    reference's own scene: no region of its structure lost to something without texture (``cover`` at
    most ``cover_area``, the decision's cover line) and, with ``sharp``, what hides its structure as
    sharp as what they still show (``veil``) and that as sharp as the reference had it (``dulled``),
    both at most ``scene_veil``, as the crowd rule asks of a query.

    Why: a camera covered, smeared or defocused during calibration also gives
    doubtful views that agree with each other; the reference's structure is
    hidden on their scene, not moved, and it may even align there where the
    cover leaves it in view. Their cover is plain or soft, or everything is.
    """
    alone = provisional_backgrounds([reference])[reference.id]
    out = []
    for s in doubtful:
        cues = scene.measure(stat_value(s, "layout"), stat_value(s, "focus_grid"), alone)
        if cues.cover is not None and cues.cover > params.cover_area:
            continue
        if sharp and not (cues.veil is not None and cues.veil <= params.scene_veil
                          and cues.dulled is not None and cues.dulled <= params.scene_veil):
            continue
        out.append(s)
    return out


def _hidden_not_moved(reference: Reference, doubtful: Sequence[Stats], params: DecisionParams) -> bool:
    """Whether the reference's structure is partly hidden on the doubtful views' scene, not moved: it aligns
    there at least ``scene_aligned_min`` and no global move aligns it better by more than
    ``scene_moved_gain`` (``scene.displaced``), as a query is held in place.

    Why: a reference taken with a lorry over a third of it aligns with the early
    views, which show the road, only where the lorry is not; a camera turned
    after enrolment moves all of its structure, and moved back it aligns again.
    """
    if len(doubtful) < 3:          # as ``scene.agreement``: fewer than three views make no scene
        return False
    background = scene.learn([stat_value(s, "layout") for s in doubtful],
                             [stat_value(s, "focus_grid") for s in doubtful])
    layout = stat_value(reference.stats, "layout")
    aligned = scene.measure(layout, None, background).aligned
    if aligned is None or aligned < params.scene_aligned_min:
        return False
    found = scene.displaced(layout, background, above=aligned + params.scene_moved_gain)
    return found is not None and found <= aligned + params.scene_moved_gain


def learn_backgrounds_from(references: Sequence[Reference], views: Sequence[tuple[int | None, Stats]],
                           least_aligned: Mapping[int | None, float] | None = None
                           ) -> dict[int | None, scene.Background]:
    """Each reference's scene from its statistics and those of the views (reference id, stats) nearest to it;
    ``least_aligned``: by reference id, an ``aligned`` of a benign early view its ``least_aligned`` stays
    under (``Consensus.least_aligned``)."""
    out = {}
    for r in references:
        mine = [s for ref_id, s in views if ref_id == r.id]
        learned = scene.learn([stat_value(r.stats, "layout")] + [stat_value(s, "layout") for s in mine],
                              [stat_value(r.stats, "focus_grid")] + [stat_value(s, "focus_grid") for s in mine])
        lower = (least_aligned or {}).get(r.id)
        out[r.id] = learned if lower is None or lower >= learned.least_aligned \
            else replace(learned, least_aligned=lower)
    return out


@dataclass
class SceneHistory:
    """A calibrated camera's views judged plainly benign since, per reference: what its scene goes on
    learning from.

    Calibration sees a camera's first minutes; a lorry parked through them, or a
    quiet street at dawn, would otherwise be its background for good. The scene
    is learned from the reference and the newest ``learn_views`` benign views, the
    calibration views first among them, later ones taking their place; its focus
    stays as calibrated. Only views whose stable cells sat where they were
    learned, with no cover and detail near the learned focus, are kept, and none
    while an alert is open, so a turned or softened camera's views never are.
    Kept in memory (the encoded layout and focus grid of each, ~20 kB): after a
    restart the scene learns again from its stored calibration.
    """

    views: dict[int | None, deque[Stats]] = field(default_factory=dict)
    last: dict[int | None, float] = field(default_factory=dict)
    added: int = 0
    #: What the calibrated scenes were learned from (references, calibration views): views learned
    #: under another basis are of other references and are dropped (``rebase``).
    basis: object = None

    def rebase(self, basis: object) -> None:
        """Start again, empty, when the camera's references or calibration changed."""
        if basis != self.basis:
            self.views.clear()
            self.last.clear()
            self.added, self.basis = 0, basis

    def generation(self, params: DecisionParams = SHIPPED) -> int:
        """Changes when the scene is to be learned again: after each of the first ``params.learn_batch``
        learned views (calibration's window may have been unlucky), then every ``learn_batch``."""
        batch = max(1, params.learn_batch)
        return self.added if self.added <= batch else batch + self.added // batch - 1

    def of(self, reference_id: int | None) -> list[Stats]:
        return list(self.views.get(reference_id, ()))

    def offer(self, verdict: Verdict, stats: Stats, now: float, params: DecisionParams = SHIPPED) -> bool:
        """Keep ``stats`` if its verdict was plainly benign and the reference's last kept view is old enough."""
        ref = verdict.reference_id
        cues = verdict.scene_cues
        if verdict.drifted or cues is None or cues.aligned is None or verdict.aligned_line is None:
            return False
        if cues.aligned < verdict.aligned_line + params.learn_aligned_margin:
            return False
        if cues.cover is not None and cues.cover > params.learn_cover:
            return False
        if cues.soft is not None and cues.soft < -params.focus_min_drop / 2:
            return False
        if now - self.last.get(ref, -math.inf) < params.learn_spacing:
            return False
        kept = {"layout": stat_value(stats, "layout"), "focus_grid": stat_value(stats, "focus_grid")}
        self.views.setdefault(ref, deque(maxlen=params.learn_views)).append(kept)
        self.last[ref] = now
        self.added += 1
        return True


def relearn_backgrounds(references: Sequence[Reference], calibrated: dict[int | None, scene.Background],
                        views: Sequence[tuple[int | None, Stats]], history: SceneHistory,
                        params: DecisionParams = SHIPPED) -> dict[int | None, scene.Background]:
    """Each reference's scene from it and its newest ``params.learn_views`` views: calibration views, then
    those learned since (``SceneHistory``). A reference with no learned view keeps its calibrated
    scene, and every one keeps the calibrated ``least_aligned`` and ``most_plain``."""
    out = dict(calibrated)
    for r in references:
        later = history.of(r.id)
        if not later or r.id not in calibrated:
            continue
        early = [s for ref_id, s in views if ref_id == r.id]
        mine = (early + later)[-params.learn_views:]
        # Focus stays as calibrated: a lens turned slowly soft would otherwise teach the scene its softness.
        out[r.id] = scene.learn([stat_value(r.stats, "layout")] + [stat_value(s, "layout") for s in mine],
                                [stat_value(r.stats, "focus_grid")] + [stat_value(s, "focus_grid") for s in early],
                                calibrated=calibrated[r.id])
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
