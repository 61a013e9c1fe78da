"""ONNX export: the file honours docs/DESIGN.md "Model contract", and ONNX Runtime agrees with PyTorch.

The shipped model is checked without torch (the daemon never has it); the
export checks need torch and skip with a reason where it is not installed.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")

KEYS = ("camwatch.format", "camwatch.input_width", "camwatch.input_height", "camwatch.channels",
        "camwatch.input_scale", "camwatch.mean", "camwatch.std", "camwatch.embedding_dim",
        "camwatch.threshold", "camwatch.model_name", "camwatch.model_version")


def session(path: Path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def check_contract(path: Path) -> dict:
    """Every DESIGN.md promise about a model file; returns its metadata."""
    sess = session(path)
    meta = sess.get_modelmeta().custom_metadata_map
    missing = [k for k in KEYS if k not in meta]
    assert not missing, f"metadata lacks {missing}"
    assert meta["camwatch.format"] == "1"
    assert meta["camwatch.channels"] in ("gray", "bgr", "rgb")
    ch = 1 if meta["camwatch.channels"] == "gray" else 3
    w, h, d = int(meta["camwatch.input_width"]), int(meta["camwatch.input_height"]), int(meta["camwatch.embedding_dim"])
    assert len(meta["camwatch.mean"].split(",")) in (1, ch) and len(meta["camwatch.std"].split(",")) in (1, ch)
    float(meta["camwatch.input_scale"])
    assert -1.0 <= float(meta["camwatch.threshold"]) <= 1.0
    (inp,), (out,) = sess.get_inputs(), sess.get_outputs()
    assert inp.name == "image" and out.name == "embedding"
    assert inp.shape[1:] == [ch, h, w] and not isinstance(inp.shape[0], int)   # dynamic batch
    scale = float(meta["camwatch.input_scale"])
    rng = np.random.default_rng(0)
    for n in (1, 5):
        x = (rng.random((n, ch, h, w)) * 255 * scale).astype(np.float32)
        (e,) = sess.run(["embedding"], {"image": x})
        assert e.shape == (n, d)
        np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-4)
    assert not list(path.parent.glob(path.name + ".data")) and not list(path.parent.glob("*.onnx.data"))
    return meta


def test_shipped_model_keeps_the_contract():
    ref = importlib.resources.files("camwatch") / "models" / "camwatch-drift.onnx"
    with importlib.resources.as_file(ref) as path:
        assert path.is_file(), "camwatch/models/camwatch-drift.onnx is missing"
        assert path.stat().st_size <= 10 * 1024 * 1024
        meta = check_contract(path)
    assert meta["camwatch.model_name"] == "camwatch-drift"


def test_shipped_model_tells_a_moved_view_from_a_brighter_one():
    """A behaviour check on the real file: brightening the same view keeps it closer than shifting it."""
    import cv2

    from camwatch.vision.prepare import InputSpec, prepare

    ref = importlib.resources.files("camwatch") / "models" / "camwatch-drift.onnx"
    with importlib.resources.as_file(ref) as path:
        sess = session(path)
    rng = np.random.default_rng(3)
    world = cv2.resize(rng.integers(0, 256, (24, 40, 3), dtype=np.uint8), (800, 480), interpolation=cv2.INTER_CUBIC)
    for _ in range(40):
        c = tuple(int(v) for v in rng.integers(0, 256, 3))
        p0 = tuple(int(v) for v in rng.integers(0, 700, 2))
        p1 = tuple(int(v) for v in rng.integers(50, 800, 2))
        cv2.rectangle(world, p0, p1, c, -1)
    view = world[60:420, 100:700]
    brighter = np.clip(view.astype(np.float32) * 1.3 + 10, 0, 255).astype(np.uint8)
    moved = world[60:420, 200:800]
    spec = InputSpec()
    x = np.stack([prepare(v, spec) for v in (view, brighter, moved)])
    e = sess.run(["embedding"], {"image": x})[0]
    assert e[0] @ e[1] > e[0] @ e[2] + 0.05


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch", reason="torch (the 'train' extra) is needed to export")


@pytest.mark.parametrize("arch", ["camwatch", "seed"])
def test_export_matches_pytorch_and_keeps_the_contract(torch, tmp_path, arch):
    from export import onnx_export
    from export.nets import build

    torch.manual_seed(0)
    model, spec = build(arch)
    model.train()
    with torch.no_grad():  # a few forward passes in train mode give BatchNorm non-trivial statistics
        for _ in range(3):
            model(torch.rand(8, 1 if spec["channels"] == "gray" else 3, spec["height"], spec["width"])
                  * 255 * spec["scale"])
    model.eval()
    dim = int(model(torch.zeros(1, 1 if spec["channels"] == "gray" else 3, spec["height"], spec["width"])).shape[1])
    path = onnx_export.export(model, spec, tmp_path / f"{arch}.onnx",
                              onnx_export.metadata(spec, dim, 0.8123, f"test-{arch}", "0.0.1"))
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{arch}.onnx"]     # one self-contained file
    meta = check_contract(path)
    assert meta["camwatch.threshold"] == "0.8123" and meta["camwatch.model_version"] == "0.0.1"
    assert meta["camwatch.channels"] == spec["channels"] and int(meta["camwatch.embedding_dim"]) == dim
    ch = 1 if spec["channels"] == "gray" else 3
    x = np.random.default_rng(1).random((6, ch, spec["height"], spec["width"])) * 255 * spec["scale"]
    x = x.astype(np.float32)
    assert onnx_export.max_abs_diff(model, path, x) <= 1e-4
