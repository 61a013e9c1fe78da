"""Training from labelled identity folders (ROOT/<identity>/*.jpg) end to end.

A small synthetic identity set is drawn here (a distinct procedural pattern
per identity, each image shifted, rotated, relit and noised), the real trainer
runs a few dozen steps, and the exported ONNX file, run by ONNX Runtime, must
put images of one identity clearly closer together than images of two.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("torch", reason="torch (the 'train' extra) is needed to train")
ort = pytest.importorskip("onnxruntime")

N_IDS, PER_ID, SIZE = 8, 6, 64


def identity_image(identity: int, variant: int) -> np.ndarray:
    """Identity = pattern (gratings, colours, blob layout); variant = pose, light, noise."""
    base_rng = np.random.default_rng(1000 + identity)
    freq = base_rng.uniform(1.0, 4.0, 2)
    phase = base_rng.uniform(0, 2 * np.pi, 2)
    colours = base_rng.integers(0, 256, (3, 3))
    blobs = base_rng.uniform(0.15, 0.85, (3, 2))
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    g = 0.5 + 0.25 * np.sin(2 * np.pi * freq[0] * xx + phase[0]) + 0.25 * np.sin(2 * np.pi * freq[1] * yy + phase[1])
    img = (g[..., None] * colours[0] + (1 - g[..., None]) * colours[1]).astype(np.uint8)
    for (bx, by), c in zip(blobs, colours):
        cv2.circle(img, (int(bx * SIZE), int(by * SIZE)), SIZE // 7, tuple(int(v) for v in c[::-1]), -1)
    rng = np.random.default_rng(identity * 100 + variant)
    m = cv2.getRotationMatrix2D((SIZE / 2, SIZE / 2), rng.uniform(-8, 8), rng.uniform(0.93, 1.07))
    m[:, 2] += rng.uniform(-4, 4, 2)
    img = cv2.warpAffine(img, m, (SIZE, SIZE), borderMode=cv2.BORDER_REFLECT101).astype(np.float32)
    img = img * rng.uniform(0.75, 1.25) + rng.uniform(-15, 15) + rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    from export.train import main

    root = tmp_path_factory.mktemp("ids")
    for i in range(N_IDS):
        d = root / f"person{i:02d}"
        d.mkdir()
        for v in range(PER_ID):
            cv2.imwrite(str(d / f"{v}.jpg"), identity_image(i, v))
    out = root / "run"
    # the seed architecture (28x28 colour) is the cheap one; one thread, as the net is tiny
    rc = main(["--identities", str(root), "--out", str(out), "--arch", "seed", "--steps", "30",
               "--batch", "12", "--workers", "0", "--seed", "3", "--val-every", "15", "--skip-speed",
               "--no-progress", "--threads", "1", "--name", "ids-test", "--version", "t1"])
    assert rc == 0
    return out


def test_training_writes_model_card_plots_and_onnx(trained):
    for name in ("model.onnx", "loss.png", "architecture.png", "model-card.md", "info.json", "history.json"):
        assert (trained / name).is_file() and (trained / name).stat().st_size > 0, name
    info = json.loads((trained / "info.json").read_text())
    assert info["onnx_max_abs_diff"] <= 1e-4
    assert info["steps"] == 30 and info["parameters"] > 0
    history = json.loads((trained / "history.json").read_text())
    assert len(history["loss"]) == 30 and all(np.isfinite(history["loss"]))
    assert np.mean(history["loss"][-10:]) < np.mean(history["loss"][:10])      # it learned something
    meta = ort.InferenceSession(str(trained / "model.onnx"), providers=["CPUExecutionProvider"]) \
        .get_modelmeta().custom_metadata_map
    assert meta["camwatch.model_name"] == "ids-test" and meta["camwatch.channels"] == "rgb"
    assert "AUC" in (trained / "model-card.md").read_text()


def test_same_identity_is_clearly_closer_than_different(trained):
    from camwatch.vision.prepare import InputSpec, prepare

    sess = ort.InferenceSession(str(trained / "model.onnx"), providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    spec = InputSpec(int(meta["camwatch.input_width"]), int(meta["camwatch.input_height"]), meta["camwatch.channels"],
                     float(meta["camwatch.input_scale"]), tuple(float(v) for v in meta["camwatch.mean"].split(",")),
                     tuple(float(v) for v in meta["camwatch.std"].split(",")))
    # fresh variants, never seen in training
    labels = np.repeat(np.arange(N_IDS), 4)
    x = np.stack([prepare(identity_image(i, 50 + k), spec) for i in range(N_IDS) for k in range(4)])
    e = sess.run(["embedding"], {"image": x})[0]
    sim = e @ e.T
    same = (labels[:, None] == labels[None, :]) & ~np.eye(len(labels), dtype=bool)
    diff = labels[:, None] != labels[None, :]
    s_same, s_diff = sim[same], sim[diff]
    # AUC of "same identity" by similarity: 0.5 is chance
    auc = float(np.mean(s_same[:, None] > s_diff[None, :]) + 0.5 * np.mean(s_same[:, None] == s_diff[None, :]))
    assert auc > 0.9, f"same/different identity AUC {auc:.3f}"
    assert s_same.mean() - s_diff.mean() > 0.2
