"""The words an operator reads about a camera: one form for the log, the events and ``camwatch check``.

Why a module: an alert line is read by someone deciding whether to send a
person, often without the code or the docs at hand. So it says what happened
in the operator's words (``view MOVED``), the two numbers that decided it
(``match 0.10, needs 0.43``: the view's similarity to its reference and the
camera's own threshold, the same on every line), and, where those two numbers
alone do not explain the verdict, the cue that did (``but the layout
changed``). The cues' own figures go to DEBUG lines and event details.
Pure text: no I/O, no clock.
"""

from __future__ import annotations

import re
from typing import Protocol


class VerdictFields(Protocol):
    """What the monitor and these lines read of a check's verdict (core.decision.Verdict has these)."""

    @property
    def similarity(self) -> float: ...
    @property
    def threshold(self) -> float: ...
    @property
    def drifted(self) -> bool: ...
    @property
    def kind(self) -> str | None: ...
    @property
    def reference_id(self) -> int | None: ...
    @property
    def structure(self) -> float | None: ...
    @property
    def reason(self) -> str: ...
    @property
    def sharpness_ratio(self) -> float | None: ...


def numbers(similarity: float, threshold: float) -> tuple[str, str]:
    """``similarity`` and ``threshold`` with two decimals, more only where two would hide
    which side of the threshold the view is on (0.428 against 0.431 is not "0.43, needs 0.43")."""
    for digits in (2, 3, 4):
        s, t = f"{similarity:.{digits}f}", f"{threshold:.{digits}f}"
        if s != t and (float(s) < float(t)) == (similarity < threshold):
            return s, t
    return f"{similarity:.4f}", f"{threshold:.4f}"


def explanation(drifted: bool, similarity: float, threshold: float, reason: str,
                sharpness_ratio: float | None) -> str:
    """Why a view came out as it did although its match alone says otherwise, or "".

    A view can be drifted with a match above the camera's threshold (its layout
    changed, its detail or its contrast went) and ok with a match below it (its
    layout is intact): the decision weighs those cues too (core/decision.py).
    """
    if drifted and similarity >= threshold:
        if reason == "no_contrast":
            return "no contrast left"
        if reason == "sharpness":
            if sharpness_ratio is not None:
                return f"detail down to {sharpness_ratio:.0%} of the reference's"
            return "the view lost its detail"
        if reason == "cover":
            return "something covers part of the view"
        if reason == "glare":
            return "a light is blown out in the view"
        if reason == "turned":
            return "the whole view turned, shifted, zoomed or tipped"
        return "the layout changed"
    if not drifted and similarity < threshold:
        return "the layout is intact"
    return ""


def match(similarity: float, threshold: float, why: str = "") -> str:
    """``match 0.10, needs 0.43`` (and ``, but WHY`` when given)."""
    s, t = numbers(similarity, threshold)
    return f"match {s}, needs {t}" + (f", but {why}" if why else "")


def with_evidence(line: str, evidence: str | None) -> str:
    """The line with ``; evidence PATH`` inside its closing parenthesis (or appended)."""
    if not evidence:
        return line
    if line.endswith(")"):
        return f"{line[:-1]}; evidence {evidence})"
    return f"{line} (evidence {evidence})"


def without_camera(message: str, camera_id: str) -> str:
    """A source's error message without its leading ``camera ID (URL):``, so a line that names
    the camera already does not name it twice; the redacted URL stays, as ``URL: ...``."""
    m = re.match(rf"camera {re.escape(camera_id)}(?: \((?P<url>[^()]*)\))?(?::\s*|\s+)", message)
    if m is None or m.end() == len(message):
        return message
    rest = message[m.end():]
    return f"{m.group('url')}: {rest}" if m.group("url") else rest


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 failed fetch``, ``3 failed fetches``."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


def cue_details(verdict: VerdictFields, camera_threshold: float, threshold_source: str,
                structure_scale: float | None) -> dict[str, float | str]:
    """The cues behind a verdict, for DEBUG lines and an event's ``details``: the threshold the
    view was actually held to, what moved it, and which rule decided."""
    v = verdict
    out: dict[str, float | str] = {"camera_threshold": round(float(camera_threshold), 4),
                                   "threshold_source": threshold_source,
                                   "adjusted_threshold": round(float(v.threshold), 4)}
    if v.reason:
        out["decided_by"] = v.reason
    if v.structure is not None:
        out["structure_distance"] = round(float(v.structure), 4)
    if structure_scale is not None:
        out["structure_scale"] = round(float(structure_scale), 4)
    if v.sharpness_ratio is not None:
        out["sharpness_ratio"] = round(float(v.sharpness_ratio), 4)
    if v.reference_id is not None:
        out["reference"] = int(v.reference_id)
    line = getattr(v, "aligned_line", None)
    for name, value in _scene_cues(v):
        out[f"scene_{name}"] = round(value, 3)
        if name == "aligned" and line is not None:
            out["scene_aligned_line"] = round(float(line), 3)
    return out


def _scene_cues(v: object) -> list[tuple[str, float]]:
    """The learned scene's cues of a verdict that has them (``core.scene.SceneCues``), those measured."""
    cues = getattr(v, "scene_cues", None)
    if cues is None:
        return []
    names = ("aligned", "cover", "plain", "unexplained", "veiled", "glare", "soft", "edges", "contrast", "veil",
             "dulled", "hidden_contrast", "displaced", "turned", "zoomed", "warped", "shifted")
    return [(n, float(getattr(cues, n))) for n in names if getattr(cues, n, None) is not None]


def cue_text(v: VerdictFields, camera_threshold: float, structure_scale: float | None) -> str:
    """A DEBUG line's account of the cues: how far the structure moved the bar, the sharpness."""
    parts = []
    if v.structure is not None and structure_scale is not None and abs(v.threshold - camera_threshold) >= 1e-3:
        parts.append(f"structure {v.structure:.3f} against its scale {structure_scale:.3f} "
                     f"puts the bar at {v.threshold:.3f}")
    elif v.structure is not None:
        parts.append(f"structure {v.structure:.3f}")
    if v.sharpness_ratio is not None:
        parts.append(f"sharpness {v.sharpness_ratio:.2f} of the reference's")
    cues = dict(_scene_cues(v))
    if cues:
        line = getattr(v, "aligned_line", None)
        scene = [f"aligned {cues.pop('aligned'):.2f}" + (f" (in place from {line:.2f})" if line is not None else "")
                 ] if "aligned" in cues else []
        scene += [f"{'detail' if n == 'soft' else n} {value:+.2f}" if n in ("soft", "edges", "contrast")
                  else f"{n} {value:.2f}" for n, value in cues.items()]
        parts.append("scene " + ", ".join(scene))
    return "".join(f"; {p}" for p in parts)
