"""ONNX Runtime sessions as Fathom runs them: thread settings for a shared machine, and int8 models.

Thread settings: ONNX Runtime's intra-op pool spins its threads between runs by default, so they stay
hot for the next batch. On a machine whose cores others use too (a noisy neighbour, the event loop,
tokenisation), spinning threads burn the time slices the work needs and every run waits on the slowest
thread, so `allow_spinning` is off: an idle thread sleeps. Threads are as many as the cores this
process may run on (its affinity mask, not the machine's count), unless configured.

int8: the model file rewritten once at load and cached under <data_dir>/models/int8, keyed by the
source file's SHA-256 and the recipe, so a changed model is rewritten again and an unchanged one never.
The recipe, for cross-encoders and embedders alike:
1. smooth the MatMul inputs (service.modelkit.smoothing: a few channels with large values would
   otherwise take most of each token's 8 bits), calibrated on built-in text; for a cross-encoder, up
   to two outlier channels per input stay out of int8 (a narrow fp32 MatMul adds them back);
2. quantise every MatMul with a constant weight to int8, weights per output channel and activations
   per token (service.modelkit.per_token), so a token's rounding depends on nothing else in its batch.
Measured against fp32 on the bench cross-encoder, Cranfield queries x 100 abstracts that the bench does
not report: queries 6-13, mean |int8 - fp32| logit 0.045, Spearman min 0.996, top-10 overlap >= 0.9 on
8 of 8; queries 14-29, 0.047, 0.997, 15 of 16 (0.062 / 0.995, 8 of 8 and 0.060 / 0.995, 16 of 16
before the outlier channels and the peak floor of service.modelkit.smoothing). ONNX Runtime's own
dynamic quantisation (one activation scale per batch), as shipped before, read 0.130 / 0.977 and
0.129 / 0.978 with the same smoothing. Without smoothing, per-token scales did not help (0.168 on 6-13);
smoothing only the feed-forward inputs lost half the gain (0.088) for no measured speed. On the MiniLM
embedder, 1500 CACM abstracts: cosine to fp32 mean 0.9991 (0.9939 with ONNX Runtime's quantisation),
but `fathom index` gains less over fp32 than the cross-encoder's rerank does: with short texts the
extra passes weigh more.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Literal

import onnxruntime as ort

from service.errors import ModelUnavailable
from service.modelkit.digests import cached_digest
from service.modelkit.per_token import quantize_per_token
from service.modelkit.smoothing import ALPHA, Calibration, smooth_activations

log = logging.getLogger("fathom.models")
Quantize = Literal["none", "int8"]
# Part of the cache key (with the number of outlier channels kept fp32): a new recipe quantises again.
RECIPE = f"smooth{ALPHA}-per-token-int8-v5"


def recipe(calibration: Calibration) -> str:
    return f"{RECIPE}-fp32x{calibration.outlier_channels}"


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
    calibration: Calibration | None = None,
    allow_spinning: bool = False,
    release_memory: bool = False,
) -> Any:
    """A CPU session on the model file, or on its int8 copy (`calibration` says how to feed the model
    the text that sets the smoothing scales; int8 needs it). With `release_memory` each run hands the
    memory it grew back (see ShrinkingSession)."""
    if quantize == "none":
        path = model_file
    elif calibration is None:
        raise ValueError("an int8 session needs a Calibration for its model")
    else:
        path = quantized(model_file, cache_dir, calibration)
    options = session_options(threads, allow_spinning=allow_spinning)
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph classes
        raise ModelUnavailable(f"ONNX Runtime cannot open {path}: {exc}") from exc
    return ShrinkingSession(session) if release_memory else session


class ShrinkingSession:
    """An InferenceSession whose runs give back the CPU arena memory they grew once they end.

    ONNX Runtime's arena keeps the peak of the largest run for good: one batch of 32 texts of 243
    tokens left the MiniLM embedder 540 MB larger (187 -> 729 MB) for the rest of the process; with
    shrinking it ended 33 MB above its start. The arena is kept (it reuses memory within a run): without
    it that batch ran 15.6-16.4 s against 11.3-11.5 s, where shrinking measured 11.2-18.0 s on a loaded
    2-core machine, within its noise.
    """

    def __init__(self, session: Any) -> None:
        self._session = session
        self._options = ort.RunOptions()
        self._options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")

    def run(self, output_names: Any, input_feed: Any, run_options: Any = None) -> Any:
        return self._session.run(output_names, input_feed, run_options or self._options)

    def __getattr__(self, name: str) -> Any:
        # Everything else (get_inputs, get_providers, ...) is the session's own.
        return getattr(self._session, name)


def quantized(model_file: Path, cache_dir: Path, calibration: Calibration) -> Path:
    """The int8 copy of `model_file`, made on first use."""
    target = cache_dir / "int8" / f"{cached_digest(model_file, cache_dir)}-{recipe(calibration)}.onnx"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("quantising %s to int8 (once; cached as %s)", model_file, target)
    try:
        import onnx

        # Written beside the target and renamed: a crash mid-way never leaves a half file in the cache.
        with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
            partial = Path(scratch) / "model.onnx"
            model = onnx.load(str(model_file))
            inputs = [tensor.name for tensor in model.graph.input]
            model = smooth_activations(
                model, calibration.batches(inputs), outliers=calibration.outlier_channels
            )
            onnx.save(quantize_per_token(model), str(partial))
            partial.replace(target)
    except Exception as exc:  # onnx and onnxruntime raise many kinds
        raise ModelUnavailable(f"{model_file} could not be quantised to int8: {exc}") from exc
    return target
