"""The CUDA path on a real NVIDIA GPU: the shipped model, the embedder and the daemon.

These tests run only where ONNX Runtime's CUDA provider loads (``onnxruntime-gpu``
and its CUDA libraries, docs/deploy.md 1b). CI and the developers' machines have
no GPU, so there they are skipped with that reason; tests/test_embedder.py covers
what a host without a GPU must do. On a GPU host:

    python -m pytest tests/test_embedder_cuda.py -v

Nothing here is mocked: real CUDA, the shipped model, a real daemon process on
the built-in demo cameras, its real /metrics.
"""

from __future__ import annotations

import numpy as np
import pytest
from daemon_helpers import Daemon, write_config
from modelkit import view, world

from camwatch.vision.embedder import MAX_BATCH, load_embedder

CUDA = "CUDAExecutionProvider"


def _cuda_usable() -> bool:
    import onnxruntime as ort

    from camwatch.vision.embedder import _provider_library_problem
    return CUDA in ort.get_available_providers() and _provider_library_problem("cuda") is None


pytestmark = pytest.mark.skipif(not _cuda_usable(),
                                reason="no usable CUDA here (onnxruntime-gpu with its CUDA libraries and a GPU)")


def _frames(n: int) -> list[np.ndarray]:
    """n textured views of several places and sizes, as cameras hand them over."""
    out = []
    for i in range(n):
        w = world(i % 5)
        v = view(w, x=(37 * i) % 400, y=(23 * i) % 300)
        if i % 3 == 1:
            v = np.ascontiguousarray(np.repeat(np.repeat(v, 2, axis=0), 2, axis=1))   # a larger frame
        out.append(v)
    return out


def test_shipped_model_runs_on_cuda_and_agrees_with_the_cpu() -> None:
    cpu = load_embedder(None, device="cpu")
    gpu = load_embedder(None, device="cuda")
    assert gpu.provider == CUDA and gpu.gpu and gpu.providers[-1] == "CPUExecutionProvider" and gpu.pad_batches
    assert gpu.spec.identity == cpu.spec.identity
    frames = _frames(MAX_BATCH + 6)                  # more than one batch: split into runs on the GPU too
    a, b = cpu.embed(frames), gpu.embed(frames)
    assert b.shape == a.shape and b.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    # Similarities (what the decision reads) agree far inside any threshold's margin.
    assert float(np.max(np.abs(a - b))) < 1e-3
    assert float(np.min(np.sum(a * b, axis=1))) > 0.99999
    sims_cpu, sims_gpu = a @ a[0], b @ b[0]
    assert float(np.max(np.abs(sims_cpu - sims_gpu))) < 5e-4     # 1.3e-4 measured on an H200
    # One by one on the GPU equals the batch on the GPU.
    one = np.concatenate([gpu.embed([f]) for f in frames[:8]])
    np.testing.assert_allclose(one, b[:8], atol=1e-3)      # 8.7e-5 measured: kernels differ per size


def test_auto_and_require_gpu_choose_cuda_and_tensorrt_falls_back_to_a_gpu() -> None:
    auto = load_embedder(None, device="auto", require_gpu=True)
    assert auto.provider == CUDA and auto.gpu
    # TensorRT needs libnvinfer; without it the tensorrt setting must still land on the GPU.
    trt = load_embedder(None, device="tensorrt", require_gpu=True)
    assert trt.gpu


def test_daemon_on_cuda_reports_it_and_catches_the_turned_demo_camera(tmp_path) -> None:
    cameras = [{"id": "street", "url": "demo:street?seed=1", "auto_enroll": True},
               {"id": "lobby", "url": "demo:lobby?seed=3&drift_after=12&drift=turn", "auto_enroll": True}]
    config = write_config(tmp_path / "cameras.yaml", cameras, device="cuda", require_gpu=True,
                          interval=1, confirm=2, recover=2)
    d = Daemon(config)
    try:
        d.wait("the CUDA provider in /metrics",
               lambda: d.value("camwatch_inference_provider_info", provider=CUDA) == 1, timeout=90)
        assert d.value("camwatch_gpu_required") == 1
        d.wait_state("street", "ok", timeout=60)
        d.wait_state("lobby", "drifted", timeout=90)
        assert d.state("street") == "ok"
        assert (d.value("camwatch_inference_duration_seconds_count") or 0) >= 10
    finally:
        rc = d.stop()
    assert rc == 0, d.log()[-3000:]
    assert "CUDAExecutionProvider" in d.log()
