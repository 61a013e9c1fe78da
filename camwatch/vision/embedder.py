"""ONNX Runtime session for the drift model: metadata, providers, warm-up, batching.

The model file carries everything needed to use it (docs/DESIGN.md "Model
contract"): its input size and colour handling, its embedding size and its
default similarity threshold, so that a new model is a new file and nothing
else. A model's identity is the sha256 of its bytes; references embedded by
another model are re-embedded (references.py) rather than compared across
models.

onnxruntime-gpu falls back to the CPU silently when CUDA cannot be loaded,
so the provider actually in use is always read back from the session and
reported, and ``require_gpu`` turns such a fallback into an error.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import importlib.metadata
import importlib.resources
import importlib.util
import io
import logging
import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from camwatch.core.errors import ModelError
from camwatch.vision.prepare import InputSpec, prepare_batch, single_threaded_opencv

log = logging.getLogger(__name__)

SHIPPED_MODEL = "camwatch-drift.onnx"
DEVICES = ("auto", "cpu", "cuda", "tensorrt")
#: Largest batch handed to ONNX Runtime at once; bigger requests are split so
#: memory stays bounded whatever the number of cameras.
MAX_BATCH = 64
# On a GPU every run is padded to the same number of rows (``Embedder.run_rows``: 64 for
# the shipped model, fewer for a large input, within GPU_RUN_BYTES), so the session only
# ever sees one input shape. ONNX Runtime's CUDA provider sets its convolutions up again whenever the
# input shape differs from the last run's, about 0.1 s on an H200 even for a shape it
# has seen. The daemon's batches are as many views as are waiting (1 to 64), so the
# shape changed at almost every run: 64 cameras took 12.4 ms of inference per view on
# CUDA against 4.5 ms on the CPU. A full batch of this model costs ~1 ms on that GPU.
GPU_RUN_BYTES = 16 << 20
#: Bounds on what a model's metadata may ask for, checked before anything is sized by it.
#: A model whose metadata said input_width/input_height 100000 passed ``validate`` and made
#: the daemon's warm-up ask for 27.9 GiB and die. 1024 px is 8x the shipped model's side
#: and still a bounded batch (64 x 3 x 1024 x 1024 float32 = 805 MB).
MAX_INPUT_SIDE = 1024
MAX_EMBEDDING_DIM = 16384

_META = "camwatch."
_REQUIRED = ("format", "input_width", "input_height", "channels", "embedding_dim", "threshold")
_CPU = "CPUExecutionProvider"
_CUDA = "CUDAExecutionProvider"
_TRT = "TensorrtExecutionProvider"
_GPU_PROVIDERS = (_CUDA, _TRT)

# ORT's C++ logger would otherwise print an ERROR and a WARNING on every CPU
# machine with the GPU wheel. Warnings are noise to a user; errors stay visible
# (severity 3), and session failures still raise and become ModelError.
_ORT_LOG_SEVERITY = 3
_logged_providers: set[tuple[str, str]] = set()
_log_lock = threading.Lock()


@dataclass(frozen=True)
class ModelSpec:
    """What a model file says about itself (its ``camwatch.*`` metadata) and who it is."""

    path: Path
    identity: str              # sha256 hex of the file: the model id stored with references
    input: InputSpec
    embedding_dim: int
    threshold: float           # default similarity threshold: below it a view has drifted
    name: str
    version: str
    metadata: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def short_id(self) -> str:
        return self.identity[:12]


def shipped_model_path() -> Path:
    """Where the packaged model lies (importlib.resources, so it works from a wheel too)."""
    ref = importlib.resources.files("camwatch") / "models" / SHIPPED_MODEL
    return Path(str(ref))


def _floats(text: str, key: str, where: str) -> tuple[float, ...]:
    parts = text.split(",")
    if len(parts) > 4:  # one per channel at most: a list of thousands is no model's
        raise ModelError(f"{where}: metadata {_META}{key} has {len(parts)} values, more than one per channel")
    try:
        values = tuple(float(v) for v in parts if v.strip() != "")
    except ValueError:
        raise ModelError(f"{where}: metadata {_META}{key}={text[:40]!r} is not a comma list of numbers") from None
    if not values:
        raise ModelError(f"{where}: metadata {_META}{key} is empty")
    if not all(math.isfinite(v) for v in values):
        raise ModelError(f"{where}: metadata {_META}{key}={text[:40]!r} holds a number that is not finite")
    return values


def spec_from_metadata(meta: dict[str, str], path: Path, identity: str) -> ModelSpec:
    """Read and check the ``camwatch.*`` metadata; one ModelError naming the file and key."""
    where = str(path)
    missing = [_META + k for k in _REQUIRED if _META + k not in meta]
    if len(missing) == len(_REQUIRED):
        raise ModelError(f"{where}: not a camwatch model: it has no camwatch.* metadata "
                         f"(needs {', '.join(_META + k for k in _REQUIRED)})")
    if missing:
        raise ModelError(f"{where}: model metadata lacks {', '.join(missing)}")
    if meta[_META + "format"].strip() != "1":
        raise ModelError(f"{where}: metadata {_META}format={meta[_META + 'format']!r}: "
                         "this camwatch reads format 1 only")

    def integer(key: str, bound: int) -> int:
        text = meta[_META + key]
        try:
            value = int(text)
        except ValueError:
            raise ModelError(f"{where}: metadata {_META}{key}={text[:40]!r} is not an integer") from None
        if value < 1:
            raise ModelError(f"{where}: metadata {_META}{key}={text!r} must be positive")
        if value > bound:
            raise ModelError(f"{where}: metadata {_META}{key}={value} is over the bound of {bound}")
        return value

    def number(key: str, default: str) -> float:
        values = _floats(meta.get(_META + key, default), key, where)
        if len(values) != 1:
            raise ModelError(f"{where}: metadata {_META}{key} must be one number")
        return values[0]

    threshold = number("threshold", "")
    if not -1.0 <= threshold <= 1.0:
        raise ModelError(f"{where}: metadata {_META}threshold={threshold} is not a cosine similarity in -1..1")
    width, height = integer("input_width", MAX_INPUT_SIDE), integer("input_height", MAX_INPUT_SIDE)
    scale = number("input_scale", "1")
    mean = _floats(meta.get(_META + "mean", "0"), "mean", where)
    std = _floats(meta.get(_META + "std", "1"), "std", where)
    try:  # InputSpec's own checks do not know the file: named here
        inp = InputSpec(width=width, height=height, channels=meta[_META + "channels"].strip(),
                        scale=scale, mean=mean, std=std)
    except ModelError as exc:
        raise ModelError(f"{where}: {exc}") from None
    return ModelSpec(
        path=path, identity=identity, input=inp, embedding_dim=integer("embedding_dim", MAX_EMBEDDING_DIM),
        threshold=threshold, name=meta.get(_META + "model_name", path.stem),
        version=meta.get(_META + "model_version", "unknown"), metadata=dict(meta),
    )


# -- providers ---------------------------------------------------------------------


def _provider_library_problem(name: str) -> str | None:
    """Why ORT's GPU provider library ``name`` cannot load here, or None if it can.

    Asking ORT for CUDA on a machine without it prints an error and falls back;
    loading the provider library ourselves first tells the same thing quietly.
    CUDA libraries installed as pip packages (onnxruntime-gpu[cuda,cudnn]) are
    preloaded the way ORT documents; its messages go to stdout, so they are
    captured.
    """
    import onnxruntime as ort

    if importlib.util.find_spec("nvidia") is not None and hasattr(ort, "preload_dlls"):
        with contextlib.redirect_stdout(io.StringIO()):
            with contextlib.suppress(Exception):
                ort.preload_dlls()
    lib = Path(ort.__file__).parent / "capi" / f"libonnxruntime_providers_{name}.so"
    if not lib.exists():
        return f"this onnxruntime has no {name} provider ({_gpu_build_fix()})"
    try:
        ctypes.CDLL(str(lib))
    except OSError as exc:
        return str(exc) or type(exc).__name__
    return None


def _gpu_build_fix() -> str:
    """What to run to get ONNX Runtime's CUDA build, for the line that says GPU is not used.

    The CPU and GPU wheels install the same ``onnxruntime`` package; when both are
    installed, whichever pip wrote last wins, and an upgrade of camwatch can lay the
    CPU build back over the GPU one (docs/deploy.md).
    """
    def installed(dist: str) -> bool:
        try:
            importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return False
        return True

    if installed("onnxruntime-gpu"):
        return ("the CPU build of onnxruntime lies over onnxruntime-gpu: "
                "pip install --force-reinstall --no-deps onnxruntime-gpu")
    return "for a GPU: pip install 'camwatch[gpu]', see docs/deploy.md"


#: An ONNX Runtime provider: its name, or its name and options.
Provider = str | tuple[str, dict[str, object]]


def _providers_for(device: str, trt_cache: Path | None) -> tuple[list[Provider], str | None]:
    """ORT provider list for a device setting, and why a GPU was not asked for (if so)."""
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    if device == "cpu":
        return [_CPU], None
    cuda_problem = (_provider_library_problem("cuda") if _CUDA in available
                    else f"this onnxruntime build has no CUDA provider ({_gpu_build_fix()})")
    if device == "auto":
        return ([_CUDA, _CPU], None) if cuda_problem is None else ([_CPU], cuda_problem)
    if device == "cuda":
        if cuda_problem is not None:
            raise ModelError(f"device cuda: CUDA cannot be used: {cuda_problem}")
        return [_CUDA, _CPU], None
    # tensorrt: TensorRT with an engine cache (building engines takes minutes), then CUDA, then CPU.
    trt_problem = (_provider_library_problem("tensorrt") if _TRT in available
                   else "this onnxruntime build has no TensorRT provider")
    if trt_problem is not None and cuda_problem is not None:
        return [_CPU], f"neither TensorRT ({trt_problem}) nor CUDA ({cuda_problem}) can be used"
    providers: list[Provider] = []
    if trt_problem is None:
        cache = trt_cache or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "camwatch" / "tensorrt"
        with contextlib.suppress(OSError):
            cache.mkdir(parents=True, exist_ok=True)
        providers.append((_TRT, {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache),
                                 "trt_fp16_enable": False}))
    if cuda_problem is None:
        providers.append(_CUDA)
    providers.append(_CPU)
    return providers, trt_problem


# -- the embedder -------------------------------------------------------------------


class Embedder:
    """A loaded model: ``embed`` turns BGR frames into (N, D) unit vectors.

    Thread-safe: ONNX Runtime's ``run`` may be called from several threads.
    """

    def __init__(self, session: Any, spec: ModelSpec, input_name: str, output_name: str):
        self.session = session
        self.spec = spec
        self._input = input_name
        self._output = output_name
        self.providers: list[str] = list(session.get_providers())
        self.provider: str = self.providers[0]
        #: Pad each run to ``run_rows`` rows (on by default on a GPU, where a new shape costs).
        self.pad_batches: bool = self.gpu
        view_bytes = 4 * spec.input.n_channels * spec.input.height * spec.input.width
        self.run_rows: int = max(1, min(MAX_BATCH, GPU_RUN_BYTES // view_bytes))

    @property
    def gpu(self) -> bool:
        return self.provider in _GPU_PROVIDERS

    def warmup(self, batch: int = 1) -> None:
        """Run once so the first real check does not pay for allocation and kernel set-up.

        On a GPU this also sets the convolutions up for the one padded shape.
        """
        spec = self.spec.input
        image = np.full((spec.height, spec.width, 3), 127, np.uint8)
        image[:, : spec.width // 2] = 64
        self.embed([image] * max(1, batch))

    def run_prepared(self, batch: np.ndarray) -> np.ndarray:
        """Run the model on already-prepared input [N, C, H, W]; returns (N, D) unit vectors."""
        n = int(batch.shape[0])
        d = self.spec.embedding_dim
        if n == 0:
            return np.zeros((0, d), np.float32)
        parts = []
        step = self.run_rows if self.pad_batches else MAX_BATCH
        for i in range(0, n, step):
            part = batch[i:i + step]
            m = int(part.shape[0])
            size = step if self.pad_batches else m
            if size > m:
                part = np.concatenate([part, np.repeat(part[-1:], size - m, axis=0)])
            try:
                out = self.session.run([self._output], {self._input: part})[0]
            except Exception as exc:  # ORT raises its own exception types
                raise ModelError(f"{self.spec.path}: inference failed: {exc}") from None
            parts.append(out[:m] if size > m else out)
        out = np.concatenate(parts).astype(np.float32, copy=False)
        if out.shape != (n, d):
            raise ModelError(f"{self.spec.path}: model returned shape {list(out.shape)}, "
                             f"expected [{n}, {d}] (camwatch.embedding_dim)")
        return _normalise(out)

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """BGR (or grey) uint8 frames -> (N, D) float32 unit vectors, as one batch."""
        return self.run_prepared(prepare_batch(list(images), self.spec.input))


def _normalise(out: np.ndarray) -> np.ndarray:
    """Unit-length rows, whatever the model did.

    The contract says the model normalises; doing it again costs nothing and
    keeps cosine = dot product true for a model that forgot. A non-finite
    output (a model without an epsilon on a perfectly flat view) becomes the
    zero vector: similarity 0 to every reference, i.e. drifted, which is the
    right answer for a view with nothing in it.
    """
    if not np.all(np.isfinite(out)):
        log.warning("model returned non-finite embeddings for %d view(s); treating them as empty views",
                    int((~np.isfinite(out)).any(axis=1).sum()))
        out = np.where(np.isfinite(out).all(axis=1, keepdims=True), out, 0.0).astype(np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return (out / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


def _read_model(path: Path) -> bytes:
    if not path.exists():
        raise ModelError(f"{path}: model file not found")
    if path.is_dir():
        raise ModelError(f"{path}: is a directory, not an ONNX model file")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the model file: {exc.strerror or exc}") from None


def _check_shapes(session: Any, spec: ModelSpec) -> tuple[str, str]:
    where = str(spec.path)
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1:
        raise ModelError(f"{where}: model has {len(inputs)} inputs, expected one image input [N, C, H, W]")
    if len(outputs) < 1:
        raise ModelError(f"{where}: model has no output")
    by_name = {o.name: o for o in outputs}
    out = by_name.get("embedding", outputs[0] if len(outputs) == 1 else None)
    if out is None:
        raise ModelError(f"{where}: model has {len(outputs)} outputs and none is named 'embedding'")
    inp = inputs[0]
    if inp.type != "tensor(float)":
        raise ModelError(f"{where}: input {inp.name!r} is {inp.type}, expected float32 [N, C, H, W]")
    shape = list(inp.shape)
    if len(shape) != 4:
        raise ModelError(f"{where}: input {inp.name!r} has shape {shape}, expected [N, C, H, W]")
    want = [spec.input.n_channels, spec.input.height, spec.input.width]
    for dim, expected, what in zip(shape[1:], want, ("channels", "height", "width")):
        if isinstance(dim, int) and dim != expected:
            raise ModelError(f"{where}: input {inp.name!r} has shape {shape} but its metadata says "
                             f"{what} = {expected} ([N, {want[0]}, {want[1]}, {want[2]}])")
    if isinstance(shape[0], int) and shape[0] != 1:
        raise ModelError(f"{where}: input {inp.name!r} has fixed batch {shape[0]}; the batch must be dynamic")
    oshape = list(out.shape)
    if len(oshape) != 2:
        raise ModelError(f"{where}: output {out.name!r} has shape {oshape}, expected [N, D]")
    if isinstance(oshape[1], int) and oshape[1] != spec.embedding_dim:
        raise ModelError(f"{where}: output {out.name!r} has shape {oshape} but camwatch.embedding_dim "
                         f"is {spec.embedding_dim}")
    return inp.name, out.name


def load_embedder(path: str | os.PathLike[str] | None = None, device: str = "auto",
                  require_gpu: bool = False, threads: int | None = None,
                  trt_cache: str | os.PathLike[str] | None = None) -> Embedder:
    """Open a model for inference; None = the shipped model.

    ``device``: auto (CUDA when it can load, else CPU), cpu, cuda (error when
    CUDA cannot load), tensorrt (TensorRT with an engine cache, then CUDA,
    then CPU). ``threads``: ORT intra-op threads (None = ORT's default, one
    per core). Any problem with the file is one ModelError naming it.
    """
    import onnxruntime as ort

    # Frames are spread over the cores a whole frame per thread (prepare.spread);
    # OpenCV's own pool would only add spinning threads to every resize.
    single_threaded_opencv()
    if device not in DEVICES:
        raise ModelError(f"device {device!r} is not one of {', '.join(DEVICES)}")
    p = Path(path).expanduser() if path is not None else shipped_model_path()
    data = _read_model(p)
    identity = hashlib.sha256(data).hexdigest()

    ort.set_default_logger_severity(_ORT_LOG_SEVERITY)
    options = ort.SessionOptions()
    options.log_severity_level = _ORT_LOG_SEVERITY
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # ORT's pool threads spin after each run by default: the daemon embeds now and
    # then, so spinning burnt ~54 ms CPU per check (720p, 2 cores) for no speed-up.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    if threads is not None:
        options.intra_op_num_threads = max(1, int(threads))
        options.inter_op_num_threads = 1
    providers, why_not_gpu = _providers_for(device, Path(trt_cache) if trt_cache else None)
    if require_gpu and not any((p_[0] if isinstance(p_, tuple) else p_) in _GPU_PROVIDERS for p_ in providers):
        raise ModelError(f"{p}: require_gpu is set but no GPU provider can be used"
                         f"{': ' + why_not_gpu if why_not_gpu else ''}")
    try:
        session = ort.InferenceSession(data, options, providers=providers)
    except Exception as exc:  # InvalidProtobuf, Fail, NoSuchFile...: ORT's own types
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "Protobuf parsing failed" in text or "INVALID_PROTOBUF" in text or "Load model" in text:
            raise ModelError(f"{p}: not a readable ONNX model ({text})") from None
        raise ModelError(f"{p}: ONNX Runtime cannot load the model: {text}") from None

    meta = dict(session.get_modelmeta().custom_metadata_map or {})
    spec = spec_from_metadata(meta, p, identity)
    input_name, output_name = _check_shapes(session, spec)
    emb = Embedder(session, spec, input_name, output_name)
    wanted = [p_[0] if isinstance(p_, tuple) else p_ for p_ in providers]
    if require_gpu and not emb.gpu:
        raise ModelError(f"{p}: require_gpu is set but ONNX Runtime fell back to {emb.provider} "
                         f"(asked for {', '.join(wanted)})")
    if device == "cuda" and not emb.gpu:
        raise ModelError(f"{p}: device cuda: ONNX Runtime could not start CUDA and fell back to {emb.provider}")
    key = (identity, emb.provider)
    with _log_lock:
        first = key not in _logged_providers
        _logged_providers.add(key)
    if first:
        extra = f" (no GPU: {why_not_gpu})" if why_not_gpu and device != "cpu" else ""
        log.info("model %s %s (%s) on %s%s", spec.name, spec.version, spec.short_id, emb.provider, extra,
                 extra={"provider": emb.provider})
    return emb
