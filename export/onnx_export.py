"""ONNX export with camwatch's metadata contract, and the checks that it matches PyTorch.

Legacy exporter (``dynamo=False``) at opset 17: one self-contained file, no
``.onnx.data`` and no onnxscript dependency (see GUIDE.md).
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import torch


def metadata(spec: dict, dim: int, threshold: float, name: str, version: str) -> dict[str, str]:
    """camwatch's ``metadata_props``: see docs/DESIGN.md "Model contract"."""
    fmt = lambda vals: ",".join(repr(float(v)) for v in vals)  # noqa: E731
    return {
        "camwatch.format": "1",
        "camwatch.input_width": str(int(spec["width"])),
        "camwatch.input_height": str(int(spec["height"])),
        "camwatch.channels": spec["channels"],
        "camwatch.input_scale": repr(float(spec["scale"])),
        "camwatch.mean": fmt(spec["mean"]),
        "camwatch.std": fmt(spec["std"]),
        "camwatch.embedding_dim": str(int(dim)),
        "camwatch.threshold": f"{float(threshold):.4f}",
        "camwatch.model_name": name,
        "camwatch.model_version": version,
    }


def export(model: torch.nn.Module, spec: dict, path: Path, meta: dict[str, str]) -> Path:
    """Write ``model`` to ``path`` as one ONNX file with dynamic batch and ``meta`` as metadata."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = 1 if spec["channels"] == "gray" else 3
    dummy = torch.rand(2, channels, spec["height"], spec["width"]) * 255 * float(spec["scale"])
    model = model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (dummy,), str(path), input_names=["image"], output_names=["embedding"],
                          dynamic_axes={"image": {0: "N"}, "embedding": {0: "N"}}, opset_version=17,
                          dynamo=False, do_constant_folding=True)
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return path


def max_abs_diff(model: torch.nn.Module, path: Path, inputs: np.ndarray) -> float:
    """Largest |ONNX Runtime - PyTorch| over ``inputs`` (float32 [N,C,H,W])."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(["embedding"], {"image": inputs.astype(np.float32)})[0]
    with torch.no_grad():
        want = model.eval()(torch.from_numpy(inputs.astype(np.float32))).numpy()
    return float(np.max(np.abs(got - want)))


def measure_speed(path: Path, frame_bgr: np.ndarray | None = None, runs: int = 5, threads: int = 2) -> dict:
    """Views/s of the ONNX model on CPU: model alone at batch 1 and 32, and from a decoded frame.

    Medians of ``runs`` timings. End-to-end = ``vision.prepare.prepare_batch`` of 32
    1080p BGR frames plus the model at batch 32, in one process, ORT on ``threads`` threads.
    """
    import cv2
    import onnxruntime as ort

    from camwatch.vision.prepare import InputSpec, prepare, prepare_batch

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    spec = InputSpec(int(meta["camwatch.input_width"]), int(meta["camwatch.input_height"]),
                     meta["camwatch.channels"], float(meta["camwatch.input_scale"]),
                     tuple(float(v) for v in meta["camwatch.mean"].split(",")),
                     tuple(float(v) for v in meta["camwatch.std"].split(",")))
    if frame_bgr is None:
        rng = np.random.default_rng(0)
        frame_bgr = cv2.GaussianBlur(rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8), (0, 0), 2)
    x1 = prepare(frame_bgr, spec)[None]
    x32 = np.repeat(x1, 32, axis=0)

    def rate(fn, n_views: int, reps: int) -> float:
        fn()
        samples = []
        for _ in range(runs):
            t = time.perf_counter()
            for _ in range(reps):
                fn()
            samples.append(n_views * reps / (time.perf_counter() - t))
        return float(np.median(samples))

    out = {
        "batch1_views_per_s": rate(lambda: sess.run(None, {"image": x1}), 1, 200),
        "batch32_views_per_s": rate(lambda: sess.run(None, {"image": x32}), 32, 10),
        "prepare_1080p_views_per_s": rate(lambda: prepare(frame_bgr, spec), 1, 200),
    }
    frames = [frame_bgr] * 32
    # as the daemon does it: prepare_batch spreads preprocessing over the cores, then one batch
    out["end_to_end_1080p_views_per_s"] = rate(
        lambda: sess.run(None, {"image": prepare_batch(frames, spec)}), 32, 4)
    out["threads"] = threads
    return out
