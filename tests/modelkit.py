"""Small real ONNX models built with onnx.helper, for tests that need a model.

They are genuine models run by ONNX Runtime, not mocks: each standardises the
image (as the shipped model does inside), average-pools it to a coarse grid
(keeping position, so a moved view is far from its reference), flattens and
L2-normalises. Tests can therefore reason about what the embedding must do.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper

META = {
    "camwatch.format": "1",
    "camwatch.input_width": "64",
    "camwatch.input_height": "64",
    "camwatch.channels": "gray",
    "camwatch.input_scale": "1",
    "camwatch.mean": "0",
    "camwatch.std": "1",
    "camwatch.embedding_dim": "64",
    "camwatch.threshold": "0.9",
    "camwatch.model_name": "test-grid",
    "camwatch.model_version": "0",
}


def grid_model(path: Path, *, size: int = 64, channels: int = 1, grid: int = 8,
               meta: dict[str, str] | None = None, drop: tuple[str, ...] = (),
               input_shape: list | None = None, output_shape: list | None = None,
               flatten: bool = True) -> Path:
    """Write a standardise -> avgpool(grid x grid) -> flatten -> L2 model to ``path``.

    ``meta`` overrides metadata entries, ``drop`` removes some; ``input_shape``
    / ``output_shape`` override the declared shapes (to build wrong ones);
    ``flatten=False`` leaves a 4-D output.
    """
    k = size // grid
    dim = channels * grid * grid
    in_shape = input_shape or ["N", channels, size, size]
    out_shape = output_shape or (["N", dim] if flatten else ["N", channels, grid, grid])
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, in_shape)
    y = helper.make_tensor_value_info("embedding", TensorProto.FLOAT, out_shape)
    eps = helper.make_tensor("eps", TensorProto.FLOAT, [], [1e-3])
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["mu"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Sub", ["image", "mu"], ["c"]),
        helper.make_node("Mul", ["c", "c"], ["c2"]),
        helper.make_node("ReduceMean", ["c2"], ["var"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Add", ["var", "eps"], ["var_e"]),
        helper.make_node("Sqrt", ["var_e"], ["sd"]),
        helper.make_node("Div", ["c", "sd"], ["z"]),
        helper.make_node("AveragePool", ["z"], ["pooled"], kernel_shape=[k, k], strides=[k, k]),
    ]
    if flatten:
        nodes += [helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
                  helper.make_node("LpNormalization", ["flat"], ["embedding"], axis=1, p=2)]
    else:
        nodes += [helper.make_node("Identity", ["pooled"], ["embedding"])]
    graph = helper.make_graph(nodes, "camwatch-test-grid", [x], [y], initializer=[eps])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    values = dict(META)
    values["camwatch.input_width"] = values["camwatch.input_height"] = str(size)
    values["camwatch.channels"] = "gray" if channels == 1 else "bgr"
    values["camwatch.embedding_dim"] = str(dim)
    values.update(meta or {})
    for key in drop:
        values.pop(key, None)
    helper.set_model_props(model, values)
    path = Path(path)
    onnx.save(model, str(path))
    return path


def world(seed: int = 0, width: int = 1200, height: int = 900):
    """A textured synthetic 'world' (blobs at several scales) for cutting camera views from."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)
    img = np.zeros((height, width), np.float32)
    for scale, amp in ((64, 60.0), (16, 40.0), (4, 25.0)):
        small = rng.normal(0, 1, (height // scale + 2, width // scale + 2)).astype(np.float32)
        img += amp * cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    img = np.clip(img + 128, 0, 255).astype(np.uint8)
    colour = np.stack([img, np.roll(img, 7, axis=1), np.roll(img, 13, axis=0)], axis=2)
    return np.ascontiguousarray(colour)


def view(world_img, x: int = 200, y: int = 150, w: int = 800, h: int = 600, out_w: int = 640):
    """The view of a camera looking at the window (x, y, w, h) of ``world_img``, out_w wide."""
    import cv2

    crop = world_img[y:y + h, x:x + w]
    return cv2.resize(crop, (out_w, round(out_w * h / w)), interpolation=cv2.INTER_AREA)
