"""Embedder: model metadata, every ModelError, provider read-back, batching.

Models are real ONNX graphs built with onnx.helper (tests/modelkit.py) and run
by the real ONNX Runtime. This machine has no GPU, so the GPU paths are tested
as what a CPU-only host must do: refuse ``device: cuda`` and ``require_gpu``
with a clear error, and run ``auto`` on the CPU without ORT's warning noise.
The CUDA path itself is tests/test_embedder_cuda.py's, on a GPU host.
"""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from modelkit import grid_model, view, world

from camwatch.core.errors import ModelError
from camwatch.vision.embedder import Embedder, load_embedder, shipped_model_path

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def model(tmp_path: Path) -> Path:
    return grid_model(tmp_path / "grid.onnx")


def _cuda_usable() -> bool:
    import onnxruntime as ort

    from camwatch.vision.embedder import _provider_library_problem
    return "CUDAExecutionProvider" in ort.get_available_providers() and _provider_library_problem("cuda") is None


def test_spec_from_metadata_and_identity(model: Path) -> None:
    emb = load_embedder(model, device="cpu")
    spec = emb.spec
    assert spec.identity == hashlib.sha256(model.read_bytes()).hexdigest()
    assert (spec.input.width, spec.input.height, spec.input.channels) == (64, 64, "gray")
    assert spec.embedding_dim == 64
    assert spec.threshold == pytest.approx(0.9)
    assert (spec.name, spec.version) == ("test-grid", "0")


def test_provider_is_read_back_from_the_session(model: Path) -> None:
    emb = load_embedder(model, device="cpu")
    assert emb.provider == emb.session.get_providers()[0] == "CPUExecutionProvider"
    assert not emb.gpu
    auto = load_embedder(model, device="auto")
    assert auto.provider == auto.session.get_providers()[0]
    if not _cuda_usable():
        assert auto.provider == "CPUExecutionProvider"


def test_embed_shapes_unit_length_and_batch_equals_sequential(model: Path) -> None:
    emb = load_embedder(model, device="cpu", threads=1)
    w = world(3)
    images = [view(w, x=(37 * i) % 400, y=(23 * i) % 300) for i in range(70)]    # > MAX_BATCH: split into runs
    images[3] = images[3][:, :, 0].copy()                          # a grey frame is accepted too
    batch = emb.embed(images)
    assert batch.shape == (70, 64) and batch.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    one_by_one = np.concatenate([emb.embed([im]) for im in images])
    np.testing.assert_allclose(batch, one_by_one, atol=1e-5)
    assert emb.embed([]).shape == (0, 64)
    # Views of different places differ; the same view embeds the same.
    assert float(batch[0] @ batch[10]) < 0.9
    assert float(emb.embed([images[0]])[0] @ batch[0]) == pytest.approx(1.0, abs=1e-5)


def test_warmup_runs(model: Path) -> None:
    load_embedder(model, device="cpu").warmup(batch=4)


def test_non_finite_output_becomes_an_empty_view(tmp_path: Path) -> None:
    # eps 0 in the standardisation: a perfectly flat frame divides 0 by 0.
    import onnx
    path = grid_model(tmp_path / "noeps.onnx")
    m = onnx.load(str(path))
    for init in m.graph.initializer:
        if init.name == "eps":
            init.float_data[:] = [0.0]
    onnx.save(m, str(path))
    emb = load_embedder(path, device="cpu")
    out = emb.embed([np.full((120, 160, 3), 9, np.uint8), view(world(1))])
    assert np.all(np.isfinite(out))
    assert np.allclose(out[0], 0.0) and np.linalg.norm(out[1]) == pytest.approx(1.0, abs=1e-5)


# -- every ModelError names the file and what is wrong ---------------------------------------


def _error(path: Path, **kw) -> str:
    with pytest.raises(ModelError) as info:
        load_embedder(path, device="cpu", **kw)
    text = str(info.value)
    assert "\n" not in text and "Traceback" not in text
    return text


def test_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "nope.onnx"
    assert _error(p) == f"{p}: model file not found"


def test_directory(tmp_path: Path) -> None:
    assert "is a directory" in _error(tmp_path)


def test_unreadable_file(tmp_path: Path) -> None:
    # A socket is a file that cannot be read, even by root (chmod 000 does not stop root).
    p = tmp_path / "sock.onnx"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(p))
    try:
        text = _error(p)
    finally:
        s.close()
    assert text.startswith(f"{p}: cannot read the model file")


def test_not_onnx(tmp_path: Path) -> None:
    p = tmp_path / "junk.onnx"
    p.write_bytes(b"\x89PNG\r\n\x1a\n this is not a model" * 10)
    text = _error(p)
    assert text.startswith(f"{p}: ") and "ONNX" in text


def test_no_metadata(tmp_path: Path) -> None:
    from modelkit import META
    p = grid_model(tmp_path / "bare.onnx", drop=tuple(META))
    assert "not a camwatch model" in _error(p) and str(p) in _error(p)


def test_missing_threshold(tmp_path: Path) -> None:
    p = grid_model(tmp_path / "m.onnx", drop=("camwatch.threshold",))
    assert _error(p) == f"{p}: model metadata lacks camwatch.threshold"


@pytest.mark.parametrize("key,value,expect", [
    ("camwatch.format", "2", "format 1 only"),
    ("camwatch.input_width", "wide", "camwatch.input_width='wide' is not an integer"),
    ("camwatch.threshold", "1.5", "not a cosine similarity"),
    ("camwatch.mean", "a,b", "camwatch.mean='a,b' is not a comma list of numbers"),
    ("camwatch.channels", "cmyk", "channels 'cmyk' is not one of"),
    ("camwatch.std", "0", "std contains 0"),
])
def test_bad_metadata_values(tmp_path: Path, key: str, value: str, expect: str) -> None:
    p = grid_model(tmp_path / "m.onnx", meta={key: value})
    text = _error(p)
    assert text.startswith(f"{p}: ") and expect in text


def test_input_not_nchw(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 4096])
    y = helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 4096])
    g = helper.make_graph([helper.make_node("LpNormalization", ["image"], ["embedding"], axis=1)], "flat", [x], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    from modelkit import META
    helper.set_model_props(m, dict(META, **{"camwatch.embedding_dim": "4096"}))
    p = tmp_path / "flat.onnx"
    onnx.save(m, str(p))
    assert "expected [N, C, H, W]" in _error(p)


def test_output_not_nd(tmp_path: Path) -> None:
    p = grid_model(tmp_path / "map.onnx", flatten=False)
    assert "expected [N, D]" in _error(p)


def test_channels_disagree_with_metadata(tmp_path: Path) -> None:
    p = grid_model(tmp_path / "m.onnx", meta={"camwatch.channels": "bgr"})
    assert "metadata says channels = 3" in _error(p)


def test_embedding_dim_disagrees(tmp_path: Path) -> None:
    p = grid_model(tmp_path / "m.onnx", meta={"camwatch.embedding_dim": "10"})
    assert "camwatch.embedding_dim is 10" in _error(p)


def test_unknown_device(model: Path) -> None:
    with pytest.raises(ModelError, match="device 'npu' is not one of auto, cpu, cuda, tensorrt"):
        load_embedder(model, device="npu")


@pytest.mark.skipif(_cuda_usable(), reason="this host can run CUDA; the refusal is for hosts without it")
def test_cuda_and_require_gpu_refused_without_a_gpu(model: Path) -> None:
    with pytest.raises(ModelError, match="device cuda: CUDA cannot be used"):
        load_embedder(model, device="cuda")
    with pytest.raises(ModelError, match="require_gpu is set but no GPU provider can be used"):
        load_embedder(model, device="auto", require_gpu=True)
    # TensorRT is opt-in and falls back through CUDA to the CPU (unless a GPU is required).
    assert load_embedder(model, device="tensorrt").provider == "CPUExecutionProvider"


def test_auto_on_cpu_host_prints_no_ort_noise(model: Path) -> None:
    code = ("import logging,sys; logging.basicConfig(level=logging.INFO, stream=sys.stderr)\n"
            "from camwatch.vision.embedder import load_embedder\n"
            f"e = load_embedder({str(model)!r}, device='auto'); print(e.provider)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "CPUExecutionProvider" or _cuda_usable()
    assert "onnxruntime:" not in out.stderr           # ORT's own [E:onnxruntime...] / [W:onnxruntime...] lines
    assert "Failed to load" not in out.stdout + out.stderr.replace("no GPU", "")
    assert out.stderr.count("INFO camwatch.vision.embedder") + out.stderr.count("INFO:camwatch.vision.embedder") == 1


def test_shipped_model_loads_through_package_resources() -> None:
    path = shipped_model_path()
    assert path.name == "camwatch-drift.onnx" and path.parent.name == "models"
    emb = load_embedder(None, device="cpu")
    assert isinstance(emb, Embedder) and emb.spec.path == path
    out = emb.embed([view(world(5))])
    assert out.shape == (1, emb.spec.embedding_dim)
    assert 0.0 < emb.spec.threshold < 1.0


# -- metadata beyond sane bounds: refused before anything is sized by it ----------------------


@pytest.mark.parametrize("meta,expect", [
    ({"camwatch.input_width": "100000"}, "camwatch.input_width=100000 is over the bound of 1024"),
    ({"camwatch.input_height": "100000"}, "camwatch.input_height=100000 is over the bound of 1024"),
    ({"camwatch.embedding_dim": "1000000000"}, "camwatch.embedding_dim=1000000000 is over the bound of 16384"),
    ({"camwatch.mean": ",".join(["0"] * 5000)}, "camwatch.mean has 5000 values, more than one per channel"),
    ({"camwatch.std": "inf"}, "camwatch.std='inf' holds a number that is not finite"),
    ({"camwatch.input_scale": "nan"}, "camwatch.input_scale='nan' holds a number that is not finite"),
])
def test_absurd_metadata_is_one_line_naming_the_key_and_bound(tmp_path: Path, meta: dict, expect: str) -> None:
    """A model asking for a 100000-px input passed validate and made warm-up ask for 27.9 GiB
    (issue 22 row 7): the metadata is checked against bounds, and the input is left dynamic here
    so that nothing but the bound stands between the model and the allocation."""
    p = grid_model(tmp_path / "m.onnx", meta=meta, input_shape=["N", 1, "H", "W"], output_shape=["N", "D"])
    assert _error(p) == f"{p}: metadata {expect}"


def test_validate_and_the_daemon_refuse_absurd_metadata_with_one_line(tmp_path: Path) -> None:
    """Real processes: ``camwatch validate`` names the model's key and bound and exits 2, and the
    daemon started on the same config exits 2 with the same line, not a traceback at warm-up."""
    from daemon_helpers import camwatch, write_config
    model = grid_model(tmp_path / "huge.onnx", meta={"camwatch.input_width": "100000",
                                                     "camwatch.input_height": "100000"},
                       input_shape=["N", 1, "H", "W"])
    cfg = write_config(tmp_path / "cameras.yaml", [{"id": "lobby", "url": "demo:lobby"}],
                       model=str(model), device="cpu")
    expect = "metadata camwatch.input_width=100000 is over the bound of 1024"
    out = camwatch("validate", "--config", str(cfg), timeout=60)
    assert out.returncode == 2 and expect in out.stderr, out.stdout + out.stderr
    assert "Traceback" not in out.stderr and "OK" not in out.stdout
    daemon = camwatch("--config", str(cfg), timeout=60)
    lines = [ln for ln in daemon.stderr.splitlines() if expect in ln]
    assert daemon.returncode == 2 and len(lines) == 1, daemon.stderr[-2000:]
    assert lines[0].startswith("camwatch: ") and "Traceback" not in daemon.stderr


def test_padded_batches_give_the_same_vectors_at_one_shape(model: Path, tmp_path: Path) -> None:
    # What a GPU session does by default (pad_batches, see embedder.GPU_RUN_BYTES), checked here
    # on the CPU, where the rows of a batch do not depend on each other. The spy records what
    # reaches ORT.
    emb = load_embedder(model, device="cpu", threads=1)
    w = world(4)
    images = [view(w, x=(41 * i) % 400, y=(29 * i) % 300) for i in range(75)]
    plain = emb.embed(images)
    assert not emb.pad_batches
    emb.pad_batches = True
    seen: list[int] = []
    real = emb.session

    class Spy:
        def run(self, names, feeds):
            seen.append(int(next(iter(feeds.values())).shape[0]))
            return real.run(names, feeds)

    emb.session = Spy()
    for n in (1, 3, 5, 17, 75):
        np.testing.assert_allclose(emb.embed(images[:n]), plain[:n], atol=1e-5)
    assert emb.run_rows == 64 and seen == [64, 64, 64, 64, 64, 64]          # one shape only
    emb.run_rows = 16                                                       # a large model's input
    seen.clear()
    np.testing.assert_allclose(emb.embed(images[:40]), plain[:40], atol=1e-5)
    assert seen == [16, 16, 16]
    # A large input pads to fewer rows, so a padded run stays within GPU_RUN_BYTES.
    big = load_embedder(grid_model(tmp_path / "big.onnx", size=1024, channels=3, grid=8), device="cpu")
    assert big.run_rows == 1 and not big.pad_batches
