"""ONNX Runtime sessions as Fathom runs them: thread settings for a shared machine, and int8 models.

Thread settings: ONNX Runtime's intra-op pool spins its threads between runs by default, so they stay
hot for the next batch. On a machine whose cores others use too (a noisy neighbour, the event loop,
tokenisation), spinning threads burn the time slices the work needs and every run waits on the slowest
thread, so `allow_spinning` is off: an idle thread sleeps. Threads are as many as the cores this
process may run on (its affinity mask, not the machine's count), unless configured.

int8: ONNX Runtime's dynamic quantisation (weights to int8, activations quantised per batch at run
time) of the model file, done once at load and cached under <data_dir>/models/int8, keyed by the
source file's SHA-256 and the recipe, so a changed model is quantised again and an unchanged one never.
The recipe: for a cross-encoder, first the MatMul inputs are smoothed (service.backends.smoothing: a few
channels with large values would otherwise take most of each tensor's 8 bits); then the MatMuls are quantised,
weights per output channel, except the last encoder layer's feed-forward pair (intermediate and output
dense), which stays fp32: about a tenth of the MatMul work, and the last errors added before the score,
with nothing after them to average them out. Smoothing lowered the mean |int8 - fp32| logit of the
bench cross-encoder on Cranfield queries it was not chosen on from 0.160 to 0.129 (see ALPHA).
Embedders are not smoothed: on MiniLM the extra elementwise pass per MatMul cost about a sixth of
`fathom index`'s int8 speed (CACM 37 s -> 44 s) for no measured gain in dense nDCG. Measured on
the bench cross-encoder against fp32, Cranfield queries x 100 abstracts: per-tensor weights, or also
quantising the embedding lookup (Gather), lose agreement for little speed (Spearman 0.92-0.94 against
0.96-0.98 per channel); keeping the last feed-forward pair fp32 raised Spearman on 15 held-out queries
from min 0.963 / mean 0.973 to min 0.973 / mean 0.980, while top-10 overlap stayed >= 0.9 on 10 of the
15 either way (that model's random head spreads its scores little, so neighbours swap). The pooler and
classifier (Gemm) stay fp32, a rounding error of the compute.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import onnxruntime as ort

from service.backends.smoothing import ALPHA, Calibration, smooth_activations
from service.errors import ModelUnavailable

log = logging.getLogger("fathom.models")
Quantize = Literal["none", "int8"]
RECIPE = "matmul-perchannel-lastffn-fp32-v2"  # part of the cache key: a new recipe quantises again
SMOOTHED_RECIPE = f"smooth{ALPHA}-{RECIPE}"
_FFN = re.compile(r"layer\.(\d+)/(?:intermediate|output)/dense/MatMul")


def usable_cores() -> int:
    """Cores this process may run on (a container's or taskset's limit), not the machine's count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def session_options(threads: int = 0, *, allow_spinning: bool = False) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or usable_cores()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    spinning = "1" if allow_spinning else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
    options.add_session_config_entry("session.inter_op.allow_spinning", spinning)
    return options


def open_session(
    model_file: Path,
    *,
    threads: int,
    quantize: Quantize,
    cache_dir: Path,
    smooth_with: Calibration | None = None,
    allow_spinning: bool = False,
) -> Any:
    """A CPU session on the model file, or on its int8 copy (smoothed first when `smooth_with` says how
    to encode the calibration text)."""
    path = quantized(model_file, cache_dir, smooth_with) if quantize == "int8" else model_file
    options = session_options(threads, allow_spinning=allow_spinning)
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph classes
        raise ModelUnavailable(f"ONNX Runtime cannot open {path}: {exc}") from exc


def quantized(model_file: Path, cache_dir: Path, smooth_with: Calibration | None = None) -> Path:
    """The int8 copy of `model_file`, made on first use."""
    recipe = RECIPE if smooth_with is None else SMOOTHED_RECIPE
    target = cache_dir / "int8" / f"{file_digest(model_file)}-{recipe}.onnx"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("quantising %s to int8 (once; cached as %s)", model_file, target)
    try:
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic

        # Written beside the target and renamed: a crash mid-way never leaves a half file in the cache.
        with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
            partial = Path(scratch) / "model.onnx"
            # A loaded model, not its path: given a path, the quantiser writes a scratch copy beside the
            # source, which may be read-only or shared with another process quantising it.
            model = onnx.load(str(model_file))
            if smooth_with is not None:
                inputs = [tensor.name for tensor in model.graph.input]
                model = smooth_activations(model, smooth_with.batches(inputs))
            with quiet_quantiser():
                quantize_dynamic(
                    model,
                    partial,
                    weight_type=QuantType.QInt8,
                    per_channel=True,
                    op_types_to_quantize=["MatMul"],
                    nodes_to_exclude=last_feed_forward(model),
                )
            partial.replace(target)
    except Exception as exc:  # onnx and onnxruntime.quantization raise many kinds
        raise ModelUnavailable(f"{model_file} could not be quantised to int8: {exc}") from exc
    return target


@contextmanager
def quiet_quantiser() -> Iterator[None]:
    """Keep onnxruntime.quantization's chatter out of the server's log: it logs on the root logger, one
    line per tensor it leaves alone (dozens per model) and a pre-processing hint that does not apply."""

    def not_from_onnxruntime(record: logging.LogRecord) -> bool:
        return f"{os.sep}onnxruntime{os.sep}" not in record.pathname or record.levelno >= logging.ERROR

    root = logging.getLogger()
    root.addFilter(not_from_onnxruntime)
    try:
        yield
    finally:
        root.removeFilter(not_from_onnxruntime)


def last_feed_forward(model: Any) -> list[str]:
    """The last encoder layer's feed-forward MatMuls, by the node names of Hugging Face exports
    (".../layer.N/intermediate/dense/MatMul", ".../layer.N/output/dense/MatMul"); none if unnamed."""
    layers: dict[int, list[str]] = {}
    for node in model.graph.node:
        found = _FFN.search(node.name) if node.op_type == "MatMul" else None
        if found:
            layers.setdefault(int(found[1]), []).append(node.name)
    return layers[max(layers)] if layers else []


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
