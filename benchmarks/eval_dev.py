#!/usr/bin/env python3
"""The dev-footage report: shipped model, seed-architecture baseline, SSIM, edges.

Makes drift-bench cases from ../shared/footage/dev for seeds 1, 2 and 3, runs
every method through ``camwatch evaluate``'s own code, and prints one table of
means over the seeds (AUC, detection at 1% and 0.1% false alarms, the default
decision's false-alarm and detection rates, every kind's alert rate and,
for the methods that name kinds, the share of each family's alerts named
right: ``camwatch evaluate``'s kind table), and the false-alarm rate of the
camera that alarms most, pooled over the seeds (named on stderr).
Dev footage is for this report only: nothing is tuned on it.

    python benchmarks/eval_dev.py [--shared ../shared] [--seeds 1,2,3] [--out DIR] [--markdown]
                                  [--methods model,seed-arch,ssim,edges] [--model CANDIDATE.onnx]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from harness import REPO

from camwatch.tools.evaluate import detection_at, evaluate, false_alarms_by_camera, kind_table, roc_auc

SEED_ARCH = REPO / "benchmarks" / "baselines" / "seed-arch.onnx"


def per_kind_scores(result) -> dict:
    """Each drifted kind against all benign views: AUC and detection at 1% false alarms.

    The default decision's alert rate per kind says what a user gets; these say
    how well the score ranks that kind, so methods can be compared kind by kind
    without their default thresholds getting in the way.
    """
    labels = [c.label for c in result.cases]
    benign = [i for i, y in enumerate(labels) if y == 0]
    out = {}
    for kind in sorted({c.kind for c in result.cases if c.label == 1}):
        idx = benign + [i for i, c in enumerate(result.cases) if c.kind == kind]
        y = [labels[i] for i in idx]
        s = result.scores[idx]
        out[f"{kind} AUC"] = round(roc_auc(y, s), 4)
        out[f"{kind} det@1%FA"] = round(detection_at(y, s, 0.01), 4)
    return {"per_kind_ranking": out}


def named_right(result) -> dict:
    """Per true family, the share of its alerted queries named as that family (evaluate.kind_table)."""
    table = kind_table(result.cases, result.drifted, result.kinds_named)
    if table is None:           # the classical baselines name no kind
        return {}
    return {"named_right": {f"{k} named right": v for k, v in table["named_right"].items() if v is not None}}


def make_cases(shared: Path, out: Path, seed: int) -> Path:
    folder = out / f"seed{seed}"
    if not (folder / "cases.csv").is_file():
        clips = sorted(str(p) for p in (shared / "footage" / "dev").iterdir())
        subprocess.run([sys.executable, str(shared / "drift-bench" / "make_cases.py"), *clips,
                        "--out", str(folder), "--seed", str(seed)], check=True, stdout=subprocess.DEVNULL)
    return folder


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=str(REPO.parent / "shared"))
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "camwatch-devcases"),
                    help="where the case folders are made (kept: a second run reuses them)")
    ap.add_argument("--methods", default="model,seed-arch,ssim,edges")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    ap.add_argument("--json", help="also write every seed's figures and the means to this file")
    ap.add_argument("--model", help="the 'model' method's ONNX file (default: the packaged model); for judging "
                                    "a candidate once, after it was chosen on train-side cases")
    a = ap.parse_args()
    shared, out = Path(a.shared), Path(a.out)
    seeds = [int(s) for s in a.seeds.split(",")]
    folders = [make_cases(shared, out, s) for s in seeds]

    rows: dict[str, dict[str, float]] = {}
    per_seed: dict[str, list[dict]] = {}
    for method in a.methods.split(","):
        if method == "seed-arch" and not SEED_ARCH.is_file():
            print(f"(skipping seed-arch: {SEED_ARCH} not found)", file=sys.stderr)
            continue
        figs = []
        alarms: dict[str, list[int]] = {}      # per camera, pooled over the seeds: [alarms, benign]
        for folder in folders:
            if method in ("model", "seed-arch"):
                model = str(SEED_ARCH) if method == "seed-arch" else a.model
                result, fig = evaluate(folder, "model", model)
            else:
                result, fig = evaluate(folder, method)
            for cam, row in false_alarms_by_camera(result).items():
                pooled = alarms.setdefault(cam, [0, 0])
                pooled[0] += row["alarms"]
                pooled[1] += row["benign"]
            fig.update(per_kind_scores(result))
            fig.update(named_right(result))
            figs.append(fig)
        per_seed[method] = figs
        mean: dict[str, float] = {}
        for key in ("auc", "tpr_at_fpr_1pct", "tpr_at_fpr_0.1pct", "default_false_alarm_rate",
                    "default_detection_rate"):
            mean[key] = statistics.mean(f[key] for f in figs)
        for kind in figs[0]["per_kind_alert_rate"]:
            mean[kind] = statistics.mean(f["per_kind_alert_rate"][kind] for f in figs)
        for key in figs[0]["per_kind_ranking"]:
            mean[key] = statistics.mean(f["per_kind_ranking"][key] for f in figs)
        for key in figs[0].get("named_right", {}):
            mean[key] = statistics.mean(f["named_right"].get(key, float("nan")) for f in figs)
        worst = max(alarms, key=lambda cam: (alarms[cam][0] / alarms[cam][1], cam))
        mean["worst camera FA"] = alarms[worst][0] / alarms[worst][1]     # pooled over the seeds, not a mean
        rows[method] = mean
        print(f"{method}: done; most false alarms on {worst} ({alarms[worst][0]} of {alarms[worst][1]} benign "
              "over the seeds)", file=sys.stderr)

    columns = list(dict.fromkeys(c for r in rows.values() for c in r))   # every method's, in order
    names = {"auc": "AUC", "tpr_at_fpr_1pct": "det@1%FA", "tpr_at_fpr_0.1pct": "det@0.1%FA",
             "default_false_alarm_rate": "default FA", "default_detection_rate": "default det"}
    header = ["metric (mean of seeds " + ",".join(map(str, seeds)) + ")"] + list(rows)
    def cell(m: str, c: str) -> str:
        if c not in rows[m]:
            return "-"          # e.g. a named-right share for a method that names no kinds
        return f"{rows[m][c]:.4f}" if "AUC" in names.get(c, c) else f"{rows[m][c]:.3f}"

    lines = [[names.get(c, c)] + [cell(m, c) for m in rows] for c in columns]
    if a.json:
        Path(a.json).write_text(json.dumps({"seeds": seeds, "mean": rows, "per_seed": per_seed}, indent=1))
    if a.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for ln in lines:
            print("| " + " | ".join(ln) + " |")
    else:
        widths = [max(len(r[i]) for r in [header] + lines) for i in range(len(header))]
        for r in [header] + lines:
            print("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
