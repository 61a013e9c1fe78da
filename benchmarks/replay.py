#!/usr/bin/env python3
"""False alarms as an operator lives them: every frame of a clip through the daemon's decision.

``camwatch evaluate`` judges single views; an operator is paged by *alerts*:
``drift_started`` events after the monitor's hysteresis (``confirm`` drifted
checks in a row, ``recover`` good ones to clear). This replays each clip frame
by frame (or every ``--stride``-th frame) at the clip's real frame interval,
through the daemon's own code path:

* the camera is enrolled on the clip's first frame by ``service.enrol.enrol_frame``
  into a real, temporary reference store (as ``auto_enroll`` does; a frame it
  refuses is skipped and the next one tried, as the daemon tries the next check);
* each later frame is embedded with ``service.checks.embed_views`` (the
  pipeline's one reduction), held to ``service.checks.threshold_for`` (the model's
  default while the first ``calibration.checks`` benign checks are recorded as
  calibration samples in the store, then the camera's calibrated threshold and
  structure scale) and judged by ``service.checks.judge``;
* the verdict goes to ``core.monitor.Monitor.assessed`` with a fake clock advanced
  by the frame interval times the stride, and its ``RecordCalibration`` actions are
  written to the store exactly as the pipeline writes them.

Settings are the product's defaults (``config.schema``: confirm, recover,
calibration checks) unless a flag says otherwise. A clip with no TIMELINE is
benign footage: every ``drift_started`` is a false alert. With ``--timeline``
(``../shared/footage/tamper/TIMELINE.csv``), each tampered range gets the
checks from its start to its alert and each restored range the checks from the
restore to the clearing:

    python benchmarks/replay.py ../shared/footage/dev/* --stride 3
    python benchmarks/replay.py ../shared/footage/tamper/*.mp4 \\
        --timeline ../shared/footage/tamper/TIMELINE.csv
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stress_cases import image_files  # noqa: E402
from tamper_cases import Span, read_timeline  # noqa: E402

from camwatch.config.schema import CameraConfig, Settings  # noqa: E402
from camwatch.core.errors import EnrolmentError  # noqa: E402
from camwatch.core.monitor import Assessed, Emit, Monitor, Policy, RecordCalibration  # noqa: E402
from camwatch.service.checks import embed_views, forget_history, judge, learn_from, threshold_for, view_of  # noqa: E402
from camwatch.service.enrol import enrol_frame  # noqa: E402
from camwatch.store.references import ReferenceStore  # noqa: E402
from camwatch.vision.embedder import Embedder, load_embedder  # noqa: E402

#: Frames embedded at once (the daemon batches views the same way).
BATCH = 16
#: A clip whose container gives no usable frame rate is replayed at this one (and says so).
FALLBACK_FPS = 25.0
#: The fake clock's start (any fixed unix time: the monitor only compares times).
T0 = 1_700_000_000.0


@dataclass(frozen=True)
class Event:
    frame: int
    at_s: float            # seconds into the clip
    type: str              # drift_started, drift_cleared
    kind: str | None
    message: str
    #: A drift_started that opened an alert (False: the open alert's kind changed, told as a new event).
    opened: bool = False


@dataclass(frozen=True)
class Check:
    frame: int
    drifted: bool          # the view's verdict
    alert_open: bool       # after the monitor's hysteresis


@dataclass
class ClipReplay:
    camera: str
    clip: str
    fps: float
    fps_guessed: bool
    stride: int
    interval_s: float
    enrolled_frame: int
    threshold: float = 0.0
    threshold_source: str = ""
    checks: list[Check] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    @property
    def alerts(self) -> list[Event]:
        """drift_started events that opened an alert: what pages an operator."""
        return [e for e in self.events if e.opened]

    @property
    def kind_changes(self) -> list[Event]:
        return [e for e in self.events if e.type == "drift_started" and not e.opened]


def camera_id(clip: Path) -> str:
    name = clip.stem if clip.is_file() else clip.name
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def clip_fps(clip: Path) -> tuple[float, bool]:
    """(frames per second, guessed): a folder of frames or a broken rate gets FALLBACK_FPS."""
    if clip.is_dir():
        return FALLBACK_FPS, True
    cap = cv2.VideoCapture(str(clip))
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    cap.release()
    if not 0.5 <= fps <= 240.0:
        return FALLBACK_FPS, True
    return fps, False


def frames_of(clip: Path, stride: int) -> Iterator[tuple[int, np.ndarray]]:
    """(frame number, BGR frame) of every ``stride``-th frame, streamed (a clip is never held whole)."""
    if clip.is_dir():
        files = image_files(clip)
        for i in range(0, len(files), stride):
            image = cv2.imread(str(files[i]), cv2.IMREAD_COLOR)
            if image is not None:
                yield i, image
        return
    cap = cv2.VideoCapture(str(clip))
    i = 0
    try:
        while cap.grab():
            if i % stride == 0:
                ok, frame = cap.retrieve()
                if ok:
                    yield i, frame
            i += 1
    finally:
        cap.release()


def _batches(items: Iterator[tuple[int, np.ndarray]], n: int) -> Iterator[list[tuple[int, np.ndarray]]]:
    batch: list[tuple[int, np.ndarray]] = []
    for item in items:
        batch.append(item)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def effective(confirm: int | None, recover: int | None, calibration: int | None) -> tuple[int, int, int]:
    """(confirm, recover, calibration checks): the product's defaults (config.schema) where None."""
    camera = CameraConfig.model_construct(id="replay", url="")
    return (camera.confirm if confirm is None else confirm, camera.recover if recover is None else recover,
            Settings().calibration.checks if calibration is None else calibration)


def replay_clip(clip: Path, embedder: Embedder, stride: int = 1, confirm: int | None = None,
                recover: int | None = None, calibration: int | None = None,
                fps: float | None = None) -> ClipReplay:
    """One clip as the daemon would have watched it, check by check (see the module's docstring)."""
    cid = camera_id(clip)
    confirm, recover, calibration = effective(confirm, recover, calibration)
    base = Settings()
    settings = Settings.model_construct(calibration=base.calibration.model_copy(update={"checks": calibration}))
    camera = CameraConfig.model_construct(id=cid, url="").model_copy(update={"confirm": confirm, "recover": recover})
    rate, guessed = (fps, False) if fps else clip_fps(clip)
    interval = stride / rate
    monitor = Monitor(cid, Policy(camera.confirm, camera.recover, interval))
    out = ClipReplay(cid, str(clip), round(rate, 3), guessed, stride, round(interval, 4), -1)
    frames = frames_of(clip, stride)
    forget_history(cid)
    with tempfile.TemporaryDirectory(prefix="camwatch-replay-") as state:
        store = ReferenceStore(state)
        try:
            for n, frame in frames:
                try:
                    enrol_frame(store, embedder, camera, frame, "default")
                except EnrolmentError:
                    continue          # auto_enroll refuses it; the next check tries again
                out.enrolled_frame = n
                break
            if out.enrolled_frame < 0:
                return out
            refs = store.for_camera(cid, images=False)
            ref_ids = frozenset(r.id for r in refs)
            for batch in _batches(frames, BATCH):
                vectors, stats = embed_views(embedder, [view_of(camera, f) for _, f in batch])
                for (n, _frame), vec, st in zip(batch, vectors, stats):
                    now = T0 + n / rate
                    was_open = monitor.drift_open
                    threshold = threshold_for(camera, settings, embedder, store)
                    j = judge(vec, st, refs, threshold)
                    learn_from(cid, j, now, monitor.drift_open)
                    actions = monitor.fetched(now) + monitor.assessed(now, Assessed(
                        j.verdict, ref_ids, now, threshold.value, threshold.source, threshold.calibrating,
                        threshold.structure_scale, st))
                    for a in actions:
                        if isinstance(a, RecordCalibration):
                            store.add_calibration_sample(cid, embedder.spec.identity, a.similarity,
                                                         structure=a.structure, stats=a.stats,
                                                         reference_id=a.reference_id, doubtful=a.doubtful)
                        elif isinstance(a, Emit) and a.type in ("drift_started", "drift_cleared"):
                            out.events.append(Event(n, round(n / rate, 3), a.type, a.kind, a.message,
                                                    a.type == "drift_started" and not was_open))
                    out.checks.append(Check(n, bool(j.verdict.drifted), monitor.drift_open))
                    out.threshold, out.threshold_source = round(float(threshold.value), 4), threshold.source
        finally:
            store.close()
    return out


# -- a TIMELINE's ranges ------------------------------------------------------------------


@dataclass(frozen=True)
class RangeResult:
    """One labelled range of a TIMELINE, as the replay met it.

    Tampered (label 1): ``alert_frame`` the drift_started that answered it (None: none),
    ``checks_to_alert`` the checks from the range's first to it, inclusive (0: an alert
    was already open when it began), ``held`` the share of its checks with the alert open.
    Benign (label 0) after a tampered range: ``clear_frame`` and ``checks_to_clear`` from
    its first check (0: cleared before it began; None: never cleared). Any benign range:
    ``false_alerts``, the alerts opened inside it.
    """

    first: int
    last: int
    label: int
    kind: str
    checks: int
    alert_frame: int | None = None
    checks_to_alert: int | None = None
    held: float | None = None
    clear_frame: int | None = None
    checks_to_clear: int | None = None
    false_alerts: int = 0
    after_tamper: bool = False


def judge_timeline(replay: ClipReplay, spans: Sequence[Span]) -> list[RangeResult]:
    """Each range of the clip's TIMELINE: checks to its alert, or to the clearing after a restore.

    The frames between two ranges (the cloth going on or off) belong to neither: an
    alert open when a tampered range begins (opened in the gap, or still open from the
    tampered range before: a cover, then a soft lens, owes one alert) answers it with 0
    checks; a clearing in the gap before a restore counts as 0 checks to clear.
    """
    mine = sorted((s for s in spans if Path(s.clip).name == Path(replay.clip).name), key=lambda s: s.first)
    checks = replay.checks
    results = []
    for i, span in enumerate(mine):
        gap = mine[i - 1].last + 1 if i else 0
        inside = [c for c in checks if span.first <= c.frame <= span.last]
        if span.label == 1:
            frame: int | None = None
            n: int | None = None
            if next((c.alert_open for c in reversed(checks) if c.frame < span.first), False):
                frame = next((e.frame for e in reversed(replay.alerts) if e.frame < span.first), gap)
                n = 0
            else:
                alert = next((e for e in replay.alerts if span.first <= e.frame <= span.last), None)
                if alert is not None:
                    frame, n = alert.frame, sum(1 for c in inside if c.frame <= alert.frame)
            held = round(sum(c.alert_open for c in inside) / len(inside), 3) if inside else None
            results.append(RangeResult(span.first, span.last, 1, span.kind, len(inside), frame, n, held))
            continue
        false = sum(1 for e in replay.alerts if span.first <= e.frame <= span.last)
        after = i > 0 and mine[i - 1].label == 1
        clear_frame: int | None = None
        clear_n: int | None = None
        if after:
            cleared = next((e for e in replay.events if e.type == "drift_cleared" and e.frame >= gap), None)
            open_at_gap = next((c.alert_open for c in reversed(checks) if c.frame < gap), False)
            if cleared is not None and open_at_gap:
                clear_frame = cleared.frame
                clear_n = sum(1 for c in inside if c.frame <= cleared.frame)
            elif not open_at_gap:
                clear_n = 0       # the alert had already cleared within the tampered range
        results.append(RangeResult(span.first, span.last, 0, span.kind, len(inside),
                                   clear_frame=clear_frame, checks_to_clear=clear_n, false_alerts=false,
                                   after_tamper=after))
    return results

# -- printing -----------------------------------------------------------------------------


def clip_line(r: ClipReplay) -> str:
    if r.enrolled_frame < 0:
        return f"{r.camera:34s} not enrolled: every frame refused (too little contrast)"
    drifted = sum(c.drifted for c in r.checks)
    kinds = ", ".join(f"{e.frame}:{e.kind or 'unknown'}" for e in r.alerts)
    fps = f"{r.fps:g}{'?' if r.fps_guessed else ''}"
    return (f"{r.camera:34s} {fps:>6s} fps  every {r.stride} -> {r.interval_s:.3f} s  {len(r.checks):5d} checks  "
            f"drifted views {drifted:4d} ({100.0 * drifted / max(1, len(r.checks)):5.1f}%)  "
            f"threshold {r.threshold:.4f} ({r.threshold_source})  ALERTS {len(r.alerts)}"
            + (f"  [{kinds}]" if kinds else ""))


def range_line(x: RangeResult) -> str:
    head = f"  frames {x.first:5d}-{x.last:<5d} {x.kind:10s} {x.checks:4d} checks: "
    if x.label == 1:
        if x.checks_to_alert is None:
            return head + "NO ALERT"
        when = f"alert open at its start (opened at frame {x.alert_frame})" if x.checks_to_alert == 0 else \
            f"alert on check {x.checks_to_alert} (frame {x.alert_frame})"
        return head + f"{when}; open on {100 * (x.held or 0):.0f}% of its checks"
    said = f"{x.false_alerts} false alert(s)"
    if x.checks_to_clear is not None:
        if x.checks_to_clear == 0:
            said = (f"cleared at frame {x.clear_frame}, before the restore's first frame" if x.clear_frame is not None
                    else "already clear (the alert had closed within the tampered range)") + f"; {said}"
        else:
            said = f"cleared on check {x.checks_to_clear} (frame {x.clear_frame}); {said}"
    elif x.after_tamper:
        said = f"NEVER CLEARED; {said}"
    return head + said


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("clips", nargs="+", help="video files or folders of frames; each is one camera")
    ap.add_argument("--stride", type=int, default=1, help="judge every STRIDE-th frame (default 1: every frame)")
    ap.add_argument("--timeline", type=Path, default=None, help="TIMELINE.csv naming the clips' tampered ranges")
    ap.add_argument("--confirm", type=int, default=None, help="override the default confirm (hysteresis)")
    ap.add_argument("--recover", type=int, default=None, help="override the default recover")
    ap.add_argument("--calibration", type=int, default=None, help="override calibration.checks")
    ap.add_argument("--model", default=None, help="an ONNX model (default: the shipped one)")
    ap.add_argument("--json", action="store_true", help="one JSON document instead of lines")
    a = ap.parse_args()
    if a.stride < 1 or (a.confirm or 1) < 1 or (a.recover or 1) < 1 or (a.calibration or 0) < 0:
        ap.error("--stride, --confirm and --recover must be >= 1, --calibration >= 0")
    clips = [Path(c) for c in a.clips]
    missing = [str(c) for c in clips if not c.exists()]
    if missing:
        ap.error(f"no such clip: {', '.join(missing)}")
    spans = read_timeline(a.timeline) if a.timeline else []
    embedder = load_embedder(a.model, device="cpu")
    report = []
    total = 0
    if not a.json:
        confirm, recover, calibration = effective(a.confirm, a.recover, a.calibration)
        print(f"replay: model {embedder.spec.name} {embedder.spec.version}, stride {a.stride}, "
              f"confirm {confirm}, recover {recover}, calibration checks {calibration}")
    for clip in clips:
        r = replay_clip(clip, embedder, a.stride, a.confirm, a.recover, a.calibration)
        timeline = judge_timeline(r, spans) if spans else []
        benign = not any(s.label == 1 for s in spans if Path(s.clip).name == clip.name)
        if benign:
            total += len(r.alerts)
        entry = {k: v for k, v in asdict(r).items() if k != "checks"}
        entry.update(checks=len(r.checks), drifted_views=sum(c.drifted for c in r.checks),
                     kind_changes=len(r.kind_changes),
                     false_alerts=len(r.alerts) if benign else None,
                     ranges=[asdict(x) for x in timeline])
        report.append(entry)
        if not a.json:
            print(clip_line(r), flush=True)
            for x in timeline:
                print(range_line(x), flush=True)
    if a.json:
        print(json.dumps({"stride": a.stride, "clips": report, "false_alerts": total}, indent=1))
    else:
        print(f"false alerts on benign clips: {total}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
