"""``camwatch evaluate`` as a subprocess on a tiny case folder made here.

The folder follows drift-bench's FORMAT.md: two synthetic cameras, benign
queries (noise, JPEG, light, a pixel of shake) and drifted ones (moved
windows, blur, a black frame). The model is a real ONNX grid model
(tests/modelkit.py).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from modelkit import grid_model, view, world

from camwatch.tools.evaluate import NOT_ALERTED, Case, detection_at, kind_family, kind_table, roc_auc

ROOT = Path(__file__).resolve().parents[1]
SCORE_PY = ROOT.parent / "shared" / "drift-bench" / "score.py"   # the benchmark beside the repository, if any


def make_cases(folder: Path) -> list[tuple[str, str, int, str]]:
    rng = np.random.default_rng(4)
    rows = []
    for cam, seed in (("gate", 1), ("yard", 2)):
        w = world(seed)
        base = dict(x=200, y=150)
        cam_dir = folder / "cameras" / cam
        (cam_dir / "calibration").mkdir(parents=True)
        cv2.imwrite(str(cam_dir / "reference.jpg"), view(w, **base))
        for i in range(4):
            noisy = np.clip(view(w, **base) + rng.normal(0, 3, (480, 640, 3)), 0, 255).astype(np.uint8)
            cv2.imwrite(str(cam_dir / "calibration" / f"{i:02d}.jpg"), noisy)
        qdir = folder / "queries" / cam
        qdir.mkdir(parents=True)
        queries: list[tuple[np.ndarray, int, str]] = []
        for i in range(6):
            img = view(w, x=200 + i % 2, y=150 + i % 3)
            queries.append((np.clip(img + rng.normal(0, 5, img.shape), 0, 255).astype(np.uint8), 0, "benign:noise"))
            queries.append((np.clip(img * (0.7 + 0.1 * i) + 5, 0, 255).astype(np.uint8), 0, "benign:light"))
        for i in range(4):
            queries.append((view(w, x=200 + 120 + 20 * i, y=150 - 60 - 10 * i), 1, "moved:shift"))
            queries.append((cv2.GaussianBlur(view(w, **base), (0, 0), 5 + i), 1, "defocus"))
        queries.append((np.full((480, 640, 3), 3, np.uint8), 1, "blinded"))
        for n, (img, label, kind) in enumerate(queries):
            q = qdir / f"{n:04d}.jpg"
            cv2.imwrite(str(q), img)
            rows.append((cam, str(q.relative_to(folder)), label, kind))
    with open(folder / "cases.csv", "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["camera", "query", "label", "kind"])
        wr.writerows(rows)
    return rows


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> tuple[Path, Path, list]:
    root = tmp_path_factory.mktemp("bench")
    rows = make_cases(root / "cases")
    return root / "cases", grid_model(root / "grid.onnx"), rows


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "camwatch", "evaluate", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env=env)


def test_model_figures_and_scores_file(bench, tmp_path: Path) -> None:
    cases, model, rows = bench
    scores = tmp_path / "scores.csv"
    plot = tmp_path / "roc.png"
    out = run(str(cases), "--model", str(model), "--scores", str(scores), "--plot", str(plot), "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    got = list(csv.DictReader(open(scores)))
    assert [r["query"] for r in got] == [r[1] for r in rows]            # every query, in order
    s = np.array([float(r["score"]) for r in got])
    d = np.array([int(r["drifted"]) for r in got])
    y = np.array([r[2] for r in rows])
    assert np.array_equal(d == 1, s > 0)                                  # the decision is score > 0
    # ...then why: the kind named and the rule that decided on every alerted view, on no other; the similarity
    # and threshold of each; the learned scene's cues where calibration learned a scene (4 views a camera here)
    assert all(bool(r["kind"]) == bool(r["reason"]) == (r["drifted"] == "1") for r in got)
    assert {r["kind"] for r in got if r["drifted"] == "1"} <= {"moved", "covered", "defocused", "blinded"}
    assert all(-1.0 <= float(r["similarity"]) <= 1.0 and r["threshold"] for r in got)
    assert all(r["aligned_line"] and r["scene_aligned"] for r in got)
    why = {(r["kind"], r["reason"]) for r in got if r["drifted"] == "1"}
    assert why == {("moved", "turned"), ("defocused", "sharpness"), ("blinded", "no_contrast")}, why
    # The printed figures are the scores file's figures...
    assert doc["cases"] == len(rows)
    assert doc["auc"] == pytest.approx(roc_auc(y, s), abs=1e-4)
    assert doc["default_false_alarm_rate"] == pytest.approx(d[y == 0].mean(), abs=1e-4)
    assert doc["default_detection_rate"] == pytest.approx(d[y == 1].mean(), abs=1e-4)
    # ...and this easy benchmark is separated perfectly by a position-keeping model.
    assert doc["auc"] == 1.0 and doc["tpr_at_fpr_1pct"] == 1.0
    assert doc["default_false_alarm_rate"] == 0.0 and doc["default_detection_rate"] == 1.0
    assert set(doc["per_kind_alert_rate"]) == {"benign:noise", "benign:light", "moved:shift", "defocus", "blinded"}
    assert set(doc["thresholds"]) == {"gate", "yard"}
    benign = {cam: sum(1 for r in rows if r[0] == cam and r[2] == 0) for cam in ("gate", "yard")}
    assert doc["false_alarms_by_camera"] == {cam: {"alarms": 0, "benign": n} for cam, n in benign.items()}
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    roc = cv2.imread(str(plot))
    assert roc.shape == (500, 500, 3)
    assert (np.abs(roc.astype(int) - (180, 90, 30)).sum(axis=2) < 30).sum() > 200    # the curve is drawn
    if SCORE_PY.exists():   # agree with the benchmark's own scorer where it is available
        ref = subprocess.run([sys.executable, str(SCORE_PY), str(cases / "cases.csv"), str(scores)],
                             capture_output=True, text=True, timeout=60)
        assert json.loads(ref.stdout) == {k: v for k, v in doc.items()
                                          if k not in ("method", "thresholds", "kinds", "false_alarms_by_camera")}


def test_kind_table_in_text_and_json(bench) -> None:
    """The named kind against the true kind, printed and in --json, agrees with the alert rates."""
    cases, model, rows = bench
    doc = json.loads(run(str(cases), "--model", str(model), "--json").stdout)
    table = doc["kinds"]
    assert table["columns"] == ["moved", "covered", "defocused", "blinded", NOT_ALERTED]
    assert list(table["rows"]) == ["moved", "defocused", "blinded"]      # the families present, in order
    drifted = {"moved": "moved:shift", "defocused": "defocus", "blinded": "blinded"}
    for family, kind in drifted.items():
        n = sum(1 for r in rows if r[3] == kind)
        row = table["rows"][family]
        assert sum(row.values()) == n                                     # every drifted query, once
        assert row[NOT_ALERTED] == round(n * (1 - doc["per_kind_alert_rate"][kind]))
        alerted = n - row[NOT_ALERTED]
        assert table["named_right"][family] == pytest.approx(row[family] / alerted, abs=1e-4)
    assert table["named_right"]["blinded"] == 1.0                        # a black frame is named blinded
    out = run(str(cases), "--model", str(model))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.startswith("kind named"))
    assert lines[head + 1].split() == ["true", "kind", "moved", "covered", "defocused", "blinded", "not",
                                       "alerted", "named", "right"]
    blinded = lines[head + 4].split()
    assert blinded[0] == "blinded" and blinded[-1] == "100.0%" and blinded[4] == "2"
    # the classical baselines name no kind: no table
    assert "kinds" not in json.loads(run(str(cases), "--method", "ssim", "--json").stdout)


def test_kind_table_counts_families() -> None:
    """drift-bench's kinds fold into the four an operator is told; benign views have no true kind."""
    assert [kind_family(k) for k in ("moved:shift", "moved:zoom", "moved:rotate", "moved:tilt", "redirected",
                                     "covered", "covered:partial", "covered:spray", "defocus", "blinded",
                                     "smoke")] == \
        ["moved"] * 5 + ["covered"] * 3 + ["defocused", "blinded", "smoke"]
    cases = [Case("c", f"q{i}", label, kind) for i, (label, kind) in enumerate(
        [(1, "moved:shift"), (1, "moved:zoom"), (1, "redirected"), (1, "covered"), (1, "covered:partial"),
         (1, "covered"), (1, "defocus"), (1, "smoke"), (0, "benign:light"), (0, "benign:scene")])]
    drifted = [True, True, False, True, True, True, True, True, True, False]
    named = ["moved", "covered", None, "covered", "moved", "defocused", "defocused", "blinded", "moved", None]
    table = kind_table(cases, drifted, named)
    assert table is not None
    assert table["rows"] == {
        "moved": {"moved": 1, "covered": 1, "defocused": 0, "blinded": 0, NOT_ALERTED: 1},
        "covered": {"moved": 1, "covered": 1, "defocused": 1, "blinded": 0, NOT_ALERTED: 0},
        "defocused": {"moved": 0, "covered": 0, "defocused": 1, "blinded": 0, NOT_ALERTED: 0},
        "smoke": {"moved": 0, "covered": 0, "defocused": 0, "blinded": 1, NOT_ALERTED: 0},
    }
    assert table["named_right"] == {"moved": 0.5, "covered": round(1 / 3, 4), "defocused": 1.0, "smoke": 0.0,
                                    "all": round(3 / 7, 4)}
    # an alert whose kind was not named shows as its own column, before "not alerted"
    odd = kind_table(cases[:2], [True, True], ["moved", None])
    assert odd is not None and odd["columns"][-2:] == ["unknown", NOT_ALERTED]
    assert kind_table(cases, drifted, [None] * len(cases)) is None       # a method that names no kinds


def test_tamper_clip_becomes_a_case_folder(tmp_path: Path) -> None:
    """benchmarks/tamper_cases.py: a real clip (written here) and its TIMELINE make a drift-bench
    case folder that ``camwatch evaluate`` scores and names kinds on."""
    w = world(3)
    rng = np.random.default_rng(1)
    frames: list[tuple[np.ndarray, int, str]] = []
    for i in range(44):
        img = np.clip(view(w, x=200 + i % 2) + rng.normal(0, 3, (480, 640, 3)), 0, 255).astype(np.uint8)
        if 18 <= i <= 29:
            img[40:440, 40:600] = (60, 90, 130)                       # a cloth held over the lens
        elif 32 <= i <= 43:
            img = cv2.GaussianBlur(img, (0, 0), 6)                     # the view comes back soft
        frames.append((img, 0, "benign"))
    clip = tmp_path / "tamper" / "corridor.avi"
    clip.parent.mkdir()
    out = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (640, 480))
    for img, _, _ in frames:
        out.write(img)
    out.release()
    (clip.parent / "TIMELINE.csv").write_text(
        "clip,first_frame,last_frame,label,kind,note\n"
        "corridor.avi,0,15,0,benign,normal view\n"
        "corridor.avi,18,29,1,covered,cloth\n"
        "corridor.avi,32,43,1,defocus,soft\n")
    cases = tmp_path / "cases"
    made = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "tamper_cases.py"), str(clip.parent),
                           "--out", str(cases), "--calibration", "4"], capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    assert "35 cases" in made.stdout                  # 16 benign frames - reference - 4 calibration, 12, 12
    rows = list(csv.DictReader(open(cases / "cases.csv")))
    assert [r["kind"] for r in rows] == ["benign:scene"] * 11 + ["covered"] * 12 + ["defocus"] * 12
    assert {r["camera"] for r in rows} == {"corridor"} and all(r["label"] == "1" for r in rows[11:])
    assert (cases / "cameras" / "corridor" / "reference.jpg").is_file()
    assert len(list((cases / "cameras" / "corridor" / "calibration").iterdir())) == 4
    doc = json.loads(run(str(cases), "--model", str(grid_model(tmp_path / "grid.onnx")), "--json").stdout)
    assert list(doc["kinds"]["rows"]) == ["covered", "defocused"]
    assert doc["kinds"]["named_right"] == {"covered": 1.0, "defocused": 1.0, "all": 1.0}
    again = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "tamper_cases.py"), str(clip.parent),
                            "--out", str(cases)], capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "already a case folder" in again.stderr


def test_plot_works_without_matplotlib(bench, tmp_path: Path) -> None:
    """--plot on the default install: matplotlib (the train extra) is not needed."""
    cases, model, _ = bench
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "matplotlib.py").write_text("raise ImportError('matplotlib is not installed here')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(blocker), os.environ.get("PYTHONPATH", "")]))
    plot = tmp_path / "roc.png"
    out = run(str(cases), "--method", "ssim", "--plot", str(plot), env=env)
    assert out.returncode == 0, out.stderr
    assert cv2.imread(str(plot)).shape == (500, 500, 3)
    line = _one_line_error(run(str(cases), "--method", "ssim", "--plot", str(tmp_path / "roc.svg"), env=env))
    assert "roc.svg" in line and ".png" in line


def test_text_output_and_calibration_switch(bench) -> None:
    cases, model, rows = bench
    out = run(str(cases), "--model", str(model))
    assert out.returncode == 0, out.stderr
    assert "AUC: 1.0000" in out.stdout
    assert "detection at 1% false alarms: 1.0000" in out.stdout
    assert "default decision: false-alarm rate 0.0000, detection rate 1.0000" in out.stdout
    assert "  blinded        1.000" in out.stdout
    assert "false alarms by camera: none on any of 2 cameras" in out.stdout
    calibrated = json.loads(run(str(cases), "--model", str(model), "--json").stdout)["thresholds"]
    fixed = json.loads(run(str(cases), "--model", str(model), "--json", "--no-calibration").stdout)["thresholds"]
    assert set(fixed.values()) == {0.9}                     # the model's default
    assert all(v != 0.9 for v in calibrated.values())       # adapted to each camera's spread


@pytest.mark.parametrize("method", ["ssim", "edges"])
def test_baselines_in_the_same_harness(bench, tmp_path: Path, method: str) -> None:
    cases, _, rows = bench
    scores = tmp_path / "s.csv"
    out = run(str(cases), "--method", method, "--json", "--scores", str(scores))
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["method"] == method and doc["cases"] == len(rows)
    s = np.array([float(r["score"]) for r in csv.DictReader(open(scores))])
    y = np.array([r[2] for r in rows])
    assert doc["auc"] == pytest.approx(roc_auc(y, s), abs=1e-4)
    assert doc["auc"] > 0.7     # moved and blurred views are not subtle here


def test_false_alarms_are_counted_and_printed_per_camera() -> None:
    """The pooled rate hides which camera alarms: each camera's benign queries and alarms, the worst first."""
    from camwatch.cli.evaluate import format_camera_alarms
    from camwatch.tools.evaluate import Case, Result, false_alarms_by_camera

    cases = [Case("road", f"q/r{i}.jpg", 0, "benign:scene") for i in range(4)] \
        + [Case("road", "q/r9.jpg", 1, "covered")] \
        + [Case("hall", f"q/h{i}.jpg", 0, "benign:light") for i in range(10)] \
        + [Case("yard", f"q/y{i}.jpg", 0, "benign:noise") for i in range(5)] + [Case("dock", "q/d.jpg", 1, "moved")]
    drifted = np.array([1, 1, 0, 0, 1] + [1] + [0] * 9 + [0] * 5 + [1], bool)
    by_camera = false_alarms_by_camera(Result(cases, drifted.astype(float), drifted))
    assert by_camera == {"hall": {"alarms": 1, "benign": 10}, "road": {"alarms": 2, "benign": 4},
                         "yard": {"alarms": 0, "benign": 5}}            # a drifted view is no false alarm
    assert format_camera_alarms(by_camera).splitlines() == [
        "false alarms by camera (default decision; none on the other 1):",
        "  road  2 of 4 benign (50.0%)",
        "  hall  1 of 10 benign (10.0%)",
    ]


def test_metric_definitions() -> None:
    y = np.array([0, 0, 0, 0, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.9, 0.5, 0.95])
    assert roc_auc(y, s) == pytest.approx(7 / 8)   # 0.5 beats 3 of 4 benign, 0.95 all 4
    assert detection_at(y, s, 0.0) == 0.5       # above the highest benign score (0.9)
    assert detection_at(y, s, 0.25) == 1.0      # one benign allowed: above 0.3
    assert roc_auc(np.array([0, 1]), np.array([0.5, 0.5])) == 0.5   # ties count half


def _one_line_error(out: subprocess.CompletedProcess) -> str:
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("camwatch:")]
    assert len(lines) == 1, out.stderr
    return lines[0]


def test_missing_case_folder(tmp_path: Path) -> None:
    line = _one_line_error(run(str(tmp_path / "none")))
    assert "no such case folder" in line and str(tmp_path / "none") in line


def test_folder_without_cases_csv(tmp_path: Path) -> None:
    assert "cases.csv: missing" in _one_line_error(run(str(tmp_path)))


def test_bad_label_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "cases.csv").write_text("camera,query,label,kind\ncam,queries/cam/0.jpg,1,defocus\n"
                                        "cam,queries/cam/1.jpg,maybe,benign:scene\n")
    line = _one_line_error(run(str(tmp_path), "--method", "ssim"))
    assert f"{tmp_path / 'cases.csv'}:3: label 'maybe' is not 0 or 1" in line


def test_missing_query_image(bench, tmp_path: Path) -> None:
    cases, _, rows = bench
    (tmp_path / "cameras").symlink_to(cases / "cameras")
    (tmp_path / "cases.csv").write_text("camera,query,label,kind\ngate,queries/gate/9999.jpg,1,defocus\n"
                                        "gate,queries/gate/0000.jpg,0,benign:noise\n")
    line = _one_line_error(run(str(tmp_path), "--method", "edges"))
    assert "camera gate" in line and "9999.jpg: no such file" in line


def test_bad_model_and_method(bench, tmp_path: Path) -> None:
    cases, _, _ = bench
    junk = tmp_path / "junk.onnx"
    junk.write_text("not a model")
    assert str(junk) in _one_line_error(run(str(cases), "--model", str(junk)))
    assert "--method 'sift'" in _one_line_error(run(str(cases), "--method", "sift"))
