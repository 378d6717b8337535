"""Activation smoothing before int8: the fp32 function is unchanged, and an outlier channel costs less."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer

from service.modelkit.per_token import quantize_per_token
from service.modelkit.smoothing import OUTLIER_SUFFIX, calibration_batches, smooth_activations
from tests.conftest import MODELS


def one_matmul(weight: np.ndarray) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, weight.shape[0]])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, weight.shape[1]])
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="dense/MatMul")],
        "g",
        [x],
        [y],
        [numpy_helper.from_array(weight, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(["y"], {"x": x})[0])


def int8(model: onnx.ModelProto) -> onnx.ModelProto:
    return quantize_per_token(model)


def activations(rows: int, seed: int) -> np.ndarray:
    """Like a transformer's: most channels near 1, one channel fifty times larger."""
    x = np.random.default_rng(seed).normal(size=(rows, 64)).astype(np.float32)
    x[:, 5] *= 50
    return x


def test_smoothing_keeps_the_fp32_output_and_lowers_the_int8_error() -> None:
    weight = np.random.default_rng(0).normal(size=(64, 32)).astype(np.float32) / 8
    model = one_matmul(weight)
    smoothed = smooth_activations(model, [{"x": activations(256, 1)}])
    x = activations(512, 2)  # not the calibration batch

    # Divide the input, take the loud channel aside, multiply, add it back in fp32.
    assert [node.op_type for node in smoothed.graph.node] == ["Gather", "Mul", "MatMul", "MatMul", "Add"]
    np.testing.assert_allclose(run(smoothed, x), run(model, x), rtol=1e-4, atol=1e-4)
    quantised = int8(smoothed)
    exact = [node for node in quantised.graph.node if node.name.endswith(OUTLIER_SUFFIX)]
    assert [node.op_type for node in exact] == ["MatMul"]  # left fp32 by the int8 rewrite
    (index,) = (i for i in smoothed.graph.initializer if i.name.endswith("/outlier_channels/index"))
    assert numpy_helper.to_array(index).tolist() == [5]  # the others are not 8x the median
    plain_error = np.abs(run(int8(model), x) - run(model, x)).mean()
    smoothed_error = np.abs(run(quantised, x) - run(model, x)).mean()
    assert smoothed_error < 0.5 * plain_error
    without_outliers = smooth_activations(model, [{"x": activations(256, 1)}], outliers=0)
    assert [node.op_type for node in without_outliers.graph.node] == ["Mul", "MatMul"]
    assert smoothed_error < np.abs(run(int8(without_outliers), x) - run(model, x)).mean()


def test_a_channel_quiet_on_the_calibration_text_is_not_magnified() -> None:
    # Equal weight peaks, so only the activation peaks set the scales.
    weight = np.where(np.random.default_rng(3).random((64, 32)) < 0.5, -0.25, 0.25).astype(np.float32)
    calibration = np.random.default_rng(4).normal(size=(256, 64)).astype(np.float32)
    calibration[:, 9] *= 0.001  # this text never wakes channel 9; the next text may
    smoothed = smooth_activations(one_matmul(weight), [{"x": calibration}], outliers=0)
    (divisor,) = (i for i in smoothed.graph.initializer if i.name.endswith("/smoothing_scale"))
    inverse = numpy_helper.to_array(divisor)
    assert inverse[9] <= np.median(inverse) * 1.0001  # divided like a typical channel, not multiplied up


def test_calibration_batches_feed_only_the_inputs_a_model_has() -> None:
    tokenizer = Tokenizer.from_file(str(MODELS / "cross-encoder-tiny-random" / "tokenizer.json"))
    pairs = calibration_batches(tokenizer, ["input_ids", "attention_mask", "token_type_ids"], pairs=True)
    single = calibration_batches(tokenizer, ["input_ids", "attention_mask"], pairs=False)

    assert all(set(feeds) == {"input_ids", "attention_mask", "token_type_ids"} for feeds in pairs)
    assert all(set(feeds) == {"input_ids", "attention_mask"} for feeds in single)
    # Pairs carry the passage as the second segment; the mask covers exactly the tokens.
    assert all(feeds["token_type_ids"].max() == 1 for feeds in pairs)
    for feeds in [*pairs, *single]:
        assert feeds["attention_mask"].sum() == np.count_nonzero(feeds["input_ids"])
