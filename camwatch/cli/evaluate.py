"""``camwatch evaluate``: print the benchmark figures of a case folder (the work is tools/evaluate.py)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from camwatch.tools.evaluate import (
    NOT_ALERTED,
    CameraAlarms,
    Figures,
    KindTable,
    evaluate,
    false_alarms_by_camera,
    kind_table,
    write_scores,
)
from camwatch.tools.roc_plot import write_plot


def format_figures(fig: Figures, method: str) -> str:
    """The figures as the text report prints them."""
    lines = [
        f"method: {method}",
        f"cases: {fig['cases']}",
        f"AUC: {fig['auc']:.4f}",
        f"detection at 1% false alarms: {fig['tpr_at_fpr_1pct']:.4f}",
        f"detection at 0.1% false alarms: {fig['tpr_at_fpr_0.1pct']:.4f}",
        f"default decision: false-alarm rate {fig['default_false_alarm_rate']:.4f}, "
        f"detection rate {fig['default_detection_rate']:.4f}",
        "alert rate per kind:",
    ]
    lines += [f"  {k:<14} {v:.3f}" for k, v in fig["per_kind_alert_rate"].items()]
    return "\n".join(lines)


def format_camera_alarms(by_camera: dict[str, CameraAlarms]) -> str:
    """The cameras that alarmed on benign queries, worst first, as the text report prints them."""
    alarmed = sorted(((row["alarms"] / row["benign"], cam, row) for cam, row in by_camera.items() if row["alarms"]),
                     key=lambda t: (-t[0], t[1]))
    if not alarmed:
        return f"false alarms by camera: none on any of {len(by_camera)} cameras"
    width = max(len(cam) for _, cam, _ in alarmed)
    lines = [f"false alarms by camera (default decision; none on the other {len(by_camera) - len(alarmed)}):"]
    lines += [f"  {cam.ljust(width)}  {row['alarms']} of {row['benign']} benign ({100 * share:.1f}%)"
              for share, cam, row in alarmed]
    return "\n".join(lines)


def format_kind_table(table: KindTable) -> str:
    """The confusion table of named against true kind, as the text report prints it."""
    columns = [*table["columns"], "named right"]
    width = max(len(c) for c in columns)

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f}%"

    lines = ["kind named, drifted queries by true kind (named right: share of the alerted named as their true kind):",
             "  " + "true kind".ljust(11) + "".join(c.rjust(width + 1) for c in columns)]
    for family, row in table["rows"].items():
        cells = [str(row[c]) for c in table["columns"]] + [pct(table["named_right"][family])]
        lines.append("  " + family.ljust(11) + "".join(v.rjust(width + 1) for v in cells))
    alerted = sum(n for row in table["rows"].values() for c, n in row.items() if c != NOT_ALERTED)
    lines.append(f"  all: {pct(table['named_right']['all'])} of {alerted} alerted named right")
    return "\n".join(lines)


def cli_evaluate(args: argparse.Namespace) -> int:
    """Print the benchmark figures for a case folder; optionally write scores and a ROC plot."""
    started = time.monotonic()
    method = getattr(args, "method", "model") or "model"
    result, fig = evaluate(args.cases, method, getattr(args, "model", None),
                           calibrate=not getattr(args, "no_calibration", False))
    if args.scores:
        write_scores(Path(args.scores), result)
    if args.plot:
        write_plot(Path(args.plot), result, f"{Path(args.cases).name}: {method}")
    kinds = kind_table(result.cases, result.drifted, result.kinds_named)
    by_camera = false_alarms_by_camera(result)
    if args.json:
        doc = dict(fig, method=method, thresholds={k: round(v, 4) for k, v in result.thresholds.items()},
                   false_alarms_by_camera=by_camera)
        if kinds is not None:
            doc["kinds"] = kinds
        print(json.dumps(doc, indent=1))
    else:
        print(format_figures(fig, method))
        if by_camera:
            print(format_camera_alarms(by_camera))
        if kinds is not None:
            print(format_kind_table(kinds))
        if result.thresholds:
            t = list(result.thresholds.values())
            print(f"thresholds: {min(t):.4f}..{max(t):.4f} over {len(t)} cameras")
        print(f"({time.monotonic() - started:.1f} s)")
    sys.stdout.flush()
    return 0
