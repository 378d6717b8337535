"""int8 MatMuls with per-token activation scales: close to fp32, and a row's result does not depend on
what else is in its batch."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from service.modelkit.per_token import quantize_per_token

RNG = np.random.default_rng(7)
WEIGHT = (RNG.normal(size=(16, 8)) / 4).astype(np.float32)
HEAD = (RNG.normal(size=(8, 2)) / 4).astype(np.float32)


def encoder_like(opset: int) -> onnx.ModelProto:
    """x [batch, tokens, 16] -> dense (MatMul, constant weight) -> attention-like product of two computed
    tensors (MatMul) -> a Gemm head on the first token: only the dense MatMul has a weight to quantise."""
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"], name="dense/MatMul"),
        helper.make_node("Transpose", ["h"], ["ht"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["h", "ht"], ["scores"], name="self/MatMul"),
        helper.make_node("MatMul", ["scores", "h"], ["mixed"], name="self/MatMul_1"),
        helper.make_node("Gather", ["mixed", "zero"], ["first"], axis=1),
        helper.make_node("Gemm", ["first", "head"], ["y"], name="classifier/Gemm"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, None, 16])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2]),
            helper.make_tensor_value_info("h", TensorProto.FLOAT, [None, None, 8]),
        ],
        [
            numpy_helper.from_array(WEIGHT, "w"),
            numpy_helper.from_array(HEAD, "head"),
            numpy_helper.from_array(np.array(0, np.int64), "zero"),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(["h"], {"x": x})[0])


@pytest.mark.parametrize("opset", [17, 18])  # 18 moved ReduceMax's axes from attribute to input
def test_only_weighted_matmuls_turn_int8_and_stay_close_to_fp32(opset: int) -> None:
    model = encoder_like(opset)
    rewritten = quantize_per_token(model)
    ops = {node.name: node.op_type for node in rewritten.graph.node if node.name}
    assert ops["dense/MatMul/int8"] == "MatMulIntegerToFloat"
    assert ops["self/MatMul"] == ops["self/MatMul_1"] == "MatMul"  # two computed inputs: fp32
    assert ops["classifier/Gemm"] == "Gemm"
    assert "w" not in {init.name for init in rewritten.graph.initializer}  # the fp32 weight is gone

    x = RNG.normal(size=(3, 5, 16)).astype(np.float32)
    exact, approximate = run(model, x), run(rewritten, x)
    assert approximate.shape == exact.shape
    # Two int8 roundings per product: well under 2% of the output's spread.
    assert np.abs(approximate - exact).max() < 0.02 * np.abs(exact).max()


def test_a_rows_result_does_not_depend_on_its_batch() -> None:
    rewritten = quantize_per_token(encoder_like(17))
    row = RNG.normal(size=(1, 5, 16)).astype(np.float32)
    loud = 1000 * RNG.normal(size=(1, 5, 16)).astype(np.float32)  # would set a per-batch scale
    alone = run(rewritten, row)[0]
    batched = run(rewritten, np.concatenate([loud, row]))[1]
    np.testing.assert_array_equal(alone, batched)


def test_an_old_opset_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="opset 13 or later"):
        quantize_per_token(encoder_like(12))
