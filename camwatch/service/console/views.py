"""The console's HTML: server-rendered, readable with JavaScript off; console.js only refreshes it.

Why plain f-strings and ``html.escape`` rather than a template engine: two
small pages, and every value already comes from ``data`` (secrets kept out
there); escaping each one here is the whole of what a template would add.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from html import escape
from typing import Any

from camwatch import __version__

#: Tiles on one fleet page (1,000 cameras stay light: thumbnails load lazily, a page at a time).
PAGE_SIZE = 200
#: States a fleet page may be filtered to (plus "all").
FILTERS = ("drifted", "unavailable", "no_reference", "pending", "ok", "disabled", "silenced")


@dataclass(frozen=True)
class Viewer:
    """Who looks at a page: ``who`` and their CSRF token when logged in; ``can_login``: actions are on."""

    can_login: bool = False
    who: str | None = None
    csrf: str = ""


READER = Viewer()


def _user(v: Viewer) -> str:
    if v.who:
        return (f"<form class=\"user\" method=\"post\" action=\"/logout\"><span id=\"who\">{escape(v.who)}</span> "
                f"<input type=\"hidden\" name=\"csrf\" value=\"{escape(v.csrf)}\">"
                "<button type=\"submit\">log out</button></form>")
    return "<a class=\"user\" href=\"/login\">log in</a>" if v.can_login else ""


def _layout(title: str, body: str, viewer: Viewer = READER) -> str:
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{escape(title)} · camwatch</title>"
            "<link rel=\"stylesheet\" href=\"/static/console.css\">"
            "<script src=\"/static/console.js\" defer></script></head>"
            f"<body><header><a href=\"/\" class=\"brand\">camwatch</a> <span class=\"ver\">{escape(__version__)}"
            f"</span>{_user(viewer)}</header><main>{body}</main></body></html>\n")


def message_page(title: str, text: str, viewer: Viewer = READER) -> str:
    """A one-line answer to a form (refused, done), with the way back."""
    return _layout(title, f"<h1>{escape(title)}</h1><p class=\"message\">{escape(text)}</p>"
                          "<p><a href=\"/\">all cameras</a></p>", viewer)


def login_page(csrf: str, error: str = "") -> str:
    err = f"<p class=\"error\">{escape(error)}</p>" if error else ""
    return _layout("Log in", f"<h1>Log in</h1>{err}<form method=\"post\" action=\"/login\" class=\"login\">"
                             f"<input type=\"hidden\" name=\"csrf\" value=\"{escape(csrf)}\">"
                             "<label>your name <input name=\"name\" required maxlength=\"40\" "
                             "autocomplete=\"username\"></label>"
                             "<label>console token <input name=\"token\" type=\"password\" required "
                             "autocomplete=\"current-password\"></label>"
                             "<button type=\"submit\">log in</button></form>")


def age_text(seconds: float | None) -> str:
    """'12 s ago', '5 min ago', '3 h ago', '2 d ago'; '-' when never."""
    if seconds is None:
        return "-"
    s = max(0.0, float(seconds))
    if s < 90:
        return f"{s:.0f} s ago"
    if s < 5400:
        return f"{s / 60:.0f} min ago"
    if s < 172800:
        return f"{s / 3600:.0f} h ago"
    return f"{s / 86400:.0f} d ago"


def state_text(state: str, kind: str | None, silenced: bool = False) -> str:
    words = state.replace("_", " ")
    words = f"{words} ({kind})" if state == "drifted" and kind else words
    return f"{words} · silenced" if silenced else words


def match_text(similarity: float | None, threshold: float | None) -> str:
    if similarity is None or threshold is None:
        return "match -"
    return f"match {similarity:.3f} / needs {threshold:.3f}"


def _tile(c: dict[str, Any]) -> str:
    cid = escape(c["id"])
    img = (f"<img src=\"/api/cameras/{cid}/current.jpg\" alt=\"current view of {cid}\" loading=\"lazy\" "
           f"width=\"320\" height=\"180\">" if c["checked_at"] is not None
           else "<div class=\"noimg\">no view yet</div>")
    quiet = " silenced" if c["silenced"] else ""
    return (f"<a class=\"tile state-{escape(c['state'])}{quiet}\" id=\"cam-{cid}\" data-id=\"{cid}\" "
            f"data-state=\"{escape(c['state'])}\" data-checked=\"{c['checked_at'] or ''}\" "
            f"href=\"/cameras/{cid}\">{img}"
            f"<span class=\"name\">{escape(c['name'])}</span>"
            f"<span class=\"state\">{escape(state_text(c['state'], c['kind'], c['silenced']))}</span>"
            f"<span class=\"match\">{escape(match_text(c['similarity'], c['threshold']))}</span>"
            f"<span class=\"age\">{escape(age_text(c['last_check_age']))}</span></a>")


def _counts(counts: dict[str, int], total: int, active: str | None) -> str:
    items = [f"<li class=\"{'on' if active is None else ''}\"><a href=\"/\">all <b id=\"count-all\">{total}</b></a>"
             "</li>"]
    for s in FILTERS:
        on = "on" if active == s else ""
        items.append(f"<li class=\"state-{s} {on}\"><a href=\"/?state={s}\">{escape(s.replace('_', ' '))} "
                     f"<b id=\"count-{s}\">{counts.get(s, 0)}</b></a></li>")
    return f"<ul class=\"counts\">{''.join(items)}</ul>"


def fleet_page(fleet: dict[str, Any], state: str | None, page: int, viewer: Viewer = READER) -> str:
    """Every camera as a tile, drifted first; ``state`` filters, ``page`` (1-based) pages."""
    rows = [c for c in fleet["cameras"] if state is None or c["state"] == state or (state == "silenced"
                                                                                  and c["silenced"])]
    pages = max(1, math.ceil(len(rows) / PAGE_SIZE))
    page = min(max(1, page), pages)
    shown = rows[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
    nav = ""
    if pages > 1:
        q = f"state={escape(state)}&amp;" if state else ""
        links = [f"<a href=\"/?{q}page={p}\" class=\"{'on' if p == page else ''}\">{p}</a>"
                 for p in range(1, pages + 1)]
        nav = f"<nav class=\"pages\">page {' '.join(links)}</nav>"
    tiles = "".join(_tile(c) for c in shown) or "<p class=\"empty\">no camera in this state</p>"
    body = (f"<h1>Cameras</h1>{_counts(fleet['counts'], fleet['total'], state)}"
            f"<section id=\"fleet\" class=\"fleet\" data-filter=\"{escape(state or '')}\" data-page=\"{page}\" "
            f"data-page-size=\"{PAGE_SIZE}\">{tiles}</section>{nav}")
    return _layout("Cameras", body, viewer)


def _evidence_link(cid: str, e: dict[str, Any]) -> str:
    if not e["evidence"]:
        return ""
    return f"<a href=\"/api/cameras/{cid}/events/{escape(e['id'])}/evidence.jpg\">picture</a>"


CHART_W, CHART_H, CHART_PAD = 720, 160, 4


def chart_svg(h: dict[str, Any]) -> str:
    """The last 24 h as an inline SVG (no script): the lowest similarity of each five-minute point,
    the threshold dashed, a red dot where a check drifted; a gap where there was no check."""
    points = h["points"]
    if not points:
        return "<p class=\"empty\">no checks yet</p>"
    end, span = float(h["time"]), 24 * 3600.0
    lo = min(0.0, *(p["similarity_min"] for p in points), *(p["threshold"] for p in points))

    def xy(p: dict[str, Any], key: str, at: float = 0.5) -> tuple[float, float]:
        """A point's value at ``at`` of its span (0 start, 1 end), in the chart's pixels."""
        t = p["t"] + at * h["bucket_s"]
        x = CHART_PAD + (CHART_W - 2 * CHART_PAD) * max(0.0, min(1.0, (t - (end - span)) / span))
        y = CHART_PAD + (CHART_H - 2 * CHART_PAD) * (1.0 - (p[key] - lo) / (1.0 - lo if lo < 1.0 else 1.0))
        return x, y

    def line(run: list[dict[str, Any]], key: str) -> str:
        """Steps: each point holds its value across its five minutes, so a lone point shows too."""
        return " ".join("{:.1f},{:.1f}".format(*xy(p, key, at)) for p in run for at in (0.0, 1.0))

    runs: list[list[dict[str, Any]]] = []
    for p in points:   # a new run after a gap of more than one point
        if runs and p["t"] - runs[-1][-1]["t"] <= h["bucket_s"]:
            runs[-1].append(p)
        else:
            runs.append([p])
    lines = "".join(f"<polyline class=\"thr\" points=\"{line(run, 'threshold')}\"/>"
                    f"<polyline class=\"sim\" points=\"{line(run, 'similarity_min')}\"/>" for run in runs)
    dots = "".join("<circle class=\"drift\" r=\"2.5\" cx=\"{:.1f}\" cy=\"{:.1f}\"/>".format(*xy(p, "similarity_min"))
                   for p in points if p["drifted"])
    return (f"<svg class=\"chart\" id=\"chart\" viewBox=\"0 0 {CHART_W} {CHART_H}\" width=\"{CHART_W}\" "
            f"height=\"{CHART_H}\" role=\"img\" aria-label=\"similarity and threshold, last 24 hours\">"
            f"<rect class=\"bg\" width=\"{CHART_W}\" height=\"{CHART_H}\"/>{lines}{dots}</svg>"
            f"<p class=\"legend\">last 24 h, lowest match of each {h['bucket_s'] // 60} min (solid) against "
            f"the threshold (dashed); red: drifted checks; scale {lo:.2f} to 1</p>")


def _form(cid: str, action: str, viewer: Viewer, fields: str, button: str, hint: str = "") -> str:
    """One action's form: posted with the session's CSRF token (``forms.act``)."""
    return (f"<form method=\"post\" action=\"/cameras/{cid}/{action}\" class=\"action\" id=\"{action}\">"
            f"<input type=\"hidden\" name=\"csrf\" value=\"{escape(viewer.csrf)}\">{fields}"
            f"<button type=\"submit\">{escape(button)}</button>"
            + (f" <span class=\"hint\">{escape(hint)}</span>" if hint else "") + "</form>")


def _actions(c: dict[str, Any], viewer: Viewer) -> str:
    """What a logged-in operator may do to the camera (nothing is shown to a reader)."""
    if not viewer.who:
        return ""
    cid = escape(c["id"])
    out = []
    if c["enabled"]:
        out.append(_form(cid, "accept", viewer, "<label>label <input name=\"label\" value=\"default\" required "
                         "maxlength=\"64\"></label> ", "Accept the current view as the reference",
                         "(at its next check; replaces the reference with this label)"))
        out.append(_form(cid, "add-reference", viewer, "<label>label <input name=\"label\" placeholder=\"night\" "
                         "required maxlength=\"64\"></label> ", "Add the current view as another reference",
                         "(at its next check; e.g. night beside day: a view matching either is fine)"))
    if c["silenced"]:
        out.append(_form(cid, "unsilence", viewer, "", "Send alerts again",
                         f"(silenced by {c.get('silenced_by') or '?'} until {iso_text(c['silenced_until'])})"))
    else:
        out.append(_form(cid, "silence", viewer, "<label>for <input name=\"for\" value=\"2h\" required "
                         "maxlength=\"12\" size=\"5\"></label> ", "Silence its alerts",
                         "(maintenance: still checked, events recorded and logged, none sent out; at most 30 days)"))
    if c["enabled_in_config"]:
        out.append(_form(cid, "disable", viewer, "", "Disable its checks", "(kept across restarts)")
                   if c["enabled"] else
                   _form(cid, "enable", viewer, "", "Enable its checks",
                         f"(disabled by {c.get('disabled_by') or '?'})"))
    return f"<section class=\"actions\" id=\"actions\"><h2>Actions</h2>{''.join(out)}</section>"


def _remove_form(c: dict[str, Any], r: dict[str, Any], viewer: Viewer) -> str:
    if not viewer.who or len(c["references"]) < 2:
        return ""
    return _form(escape(c["id"]), "remove-reference", viewer,
                 f"<input type=\"hidden\" name=\"reference\" value=\"{r['id']}\">"
                 "<label><input type=\"checkbox\" name=\"confirm\" value=\"yes\" required> sure</label> ",
                 "remove")


def iso_text(t: float | None) -> str:
    """Unix time as UTC, to the minute ('-' for none)."""
    if t is None:
        return "-"
    return datetime.fromtimestamp(float(t), timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _audit(c: dict[str, Any]) -> str:
    rows = "".join(f"<tr><td>{escape(a['time'])}</td><td>{escape(a['by'])}</td>"
                   f"<td>{escape(a['type'].replace('_', ' '))}</td><td>{escape(a['message'])}</td></tr>"
                   for a in c["audit"]) or "<tr><td colspan=\"4\">none</td></tr>"
    return ("<h2>Operators' actions</h2><table id=\"audit\"><thead><tr><th>time (UTC)</th><th>who</th>"
            f"<th>action</th><th>what</th></tr></thead><tbody>{rows}</tbody></table>")


def scene_svg(scene: dict[str, Any] | None) -> str:
    """The learned stable/busy cells as an SVG laid over the reference (no script: colours from the sheet)."""
    if not scene or not scene.get("cells"):
        return ""
    names = {"s": "stable", "b": "busy", ".": "flat"}
    rects = "".join(f"<rect class=\"{names[ch]}\" x=\"{x}\" y=\"{y}\" width=\"1\" height=\"1\"/>"
                    for y, row in enumerate(scene["cells"]) for x, ch in enumerate(row) if ch in names)
    return (f"<svg class=\"scene\" id=\"scene\" data-ref=\"{scene['reference']}\" viewBox=\"0 0 {scene['columns']} "
            f"{scene['rows']}\" preserveAspectRatio=\"none\" aria-hidden=\"true\">{rects}</svg>")


def _scene_caption(scene: dict[str, Any] | None) -> str:
    if not scene or not scene.get("cells"):
        return "reference (its stable/busy map shows once calibration has learned the scene)"
    n, busy, flat = (sum(row.count(ch) for row in scene["cells"]) for ch in "sb.")
    return (f"reference and its learned scene ({scene['views']} views): <span class=\"key stable\">stable</span> "
            f"{n} cells (a move is told by these), <span class=\"key busy\">busy</span> {busy} (traffic, leaves: "
            f"not relied on), <span class=\"key flat\">flat</span> {flat} (no texture)")


def camera_page(c: dict[str, Any], history: dict[str, Any], viewer: Viewer = READER, notice: str = "",
                scene: dict[str, Any] | None = None) -> str:
    """Reference | current side by side, the state, a 24-hour chart, the camera's references and events."""
    cid = escape(c["id"])
    newest = max((r["id"] for r in c["references"]), default="")
    ref = (f"<img id=\"reference\" data-ref=\"{newest}\" src=\"/api/cameras/{cid}/reference.jpg\" "
           f"alt=\"reference of {cid}\" width=\"320\" height=\"180\">"
           if c["references"] else "<div class=\"noimg\">no reference</div>")
    cur = (f"<img id=\"current\" src=\"/api/cameras/{cid}/current.jpg\" alt=\"current view of {cid}\" width=\"320\" "
           "height=\"180\">" if c["checked_at"] is not None else "<div class=\"noimg\">no view yet</div>")
    diff = (f"<img id=\"difference\" src=\"/api/cameras/{cid}/difference.jpg\" alt=\"difference\" width=\"320\" "
            "height=\"180\">" if c["references"] and c["checked_at"] is not None
            else "<div class=\"noimg\">no difference yet</div>")
    refs = "".join(f"<tr><td>{r['id']}</td><td>{escape(r['label'])}</td><td>{escape(age_text(r['age']))}</td>"
                   f"<td><code>{escape(r['model'])}</code></td><td>{_remove_form(c, r, viewer)}</td></tr>"
                   for r in c["references"]) or "<tr><td colspan=\"5\">none</td></tr>"
    evs = "".join(f"<tr><td>{escape(e['time'])}</td><td>{escape(e['type'].replace('_', ' '))}"
                  f"{' (silenced: held back)' if e.get('silenced') else ''}</td>"
                  f"<td>{escape(e['kind'] or '')}</td>"
                  f"<td>{escape(match_text(e['similarity'], e['threshold']))}</td>"
                  f"<td>{escape(e['message'])}</td><td>{_evidence_link(cid, e)}</td></tr>" for e in c["events"]) \
        or "<tr><td colspan=\"6\">none</td></tr>"
    body = (f"<p><a href=\"/\">&larr; all cameras</a></p>"
            f"<h1>{escape(c['name'])} <small>{cid}</small></h1>"
            f"<div class=\"camera state-{escape(c['state'])}{' silenced' if c['silenced'] else ''}\" id=\"camera\" "
            f"data-id=\"{cid}\" "
            f"data-state=\"{escape(c['state'])}\" data-checked=\"{c['checked_at'] or ''}\">"
            f"<p class=\"status\"><span class=\"state\">{escape(state_text(c['state'], c['kind'], c['silenced']))}"
            "</span> · "
            f"<span class=\"match\">{escape(match_text(c['similarity'], c['threshold']))}</span> · "
            f"checked <span class=\"age\">{escape(age_text(c['last_check_age']))}</span> · "
            f"every {c['interval']:g} s · <code>{escape(c['url'])}</code></p>"
            f"<div class=\"pair\"><figure><div class=\"overlay\">{ref}{scene_svg(scene)}</div>"
            f"<figcaption>{_scene_caption(scene)}</figcaption></figure>"
            f"<figure>{cur}<figcaption>current</figcaption></figure>"
            f"<figure>{diff}<figcaption>difference (brighter: more changed)</figcaption></figure></div></div>"
            + (f"<p class=\"notice\" id=\"notice\">{escape(notice)}</p>" if notice else "")
            + f"{_actions(c, viewer)}<h2>Last 24 hours</h2>{chart_svg(history)}"
            "<h2>References</h2><table id=\"references\"><thead><tr><th>id</th><th>label</th><th>made</th>"
            "<th>model</th><th></th></tr></thead>"
            f"<tbody>{refs}</tbody></table>"
            "<h2>Recent events</h2><table><thead><tr><th>time (UTC)</th><th>event</th><th>kind</th><th>match</th>"
            f"<th>message</th><th>evidence</th></tr></thead><tbody>{evs}</tbody></table>{_audit(c)}")
    return _layout(c["name"], body, viewer)


def not_found_page(what: str) -> str:
    return _layout("Not found", f"<h1>Not found</h1><p>{escape(what)}</p><p><a href=\"/\">all cameras</a></p>")
