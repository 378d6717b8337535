"""int8 MatMuls with one activation scale per token, as an ONNX graph rewrite.

ONNX Runtime's dynamic quantisation gives a MatMul input one scale for the whole batch: the largest
value of any token of any row of the batch sets the step for all the others. In a transformer a few
tokens ([CLS], [SEP], punctuation) carry values many times larger than the rest, so most tokens are
rounded to a handful of levels, and a document's score depends on what it was batched with. Here each
token (row of the input, viewed as [tokens, channels]) gets its own symmetric scale, max |x| / 127:
its error no longer depends on other tokens or rows.

Per MatMul input (shared by the MatMuls that read it, as query, key and value do):
    ReduceMax, ReduceMin over channels -> scale per token -> QuantizeLinear per axis (int8, zero 0)
and per MatMul:
    MatMulIntegerToFloat (int8 weights, one scale per output channel) -> Mul by the token scales.
That is one more elementwise pass on the output than ONNX Runtime's fused per-batch kernel, and the
same passes on the input (its min/max, its quantisation).

Only MatMuls whose second input is a constant 2-D fp32 weight change, except the narrow ones smoothing
adds for a few outlier channels (service.modelkit.smoothing.OUTLIER_SUFFIX), there to stay fp32. The
attention products (both inputs computed) and any Gemm (a BERT pooler and classifier: a rounding error
of the compute, and the last operations before the score) stay fp32.

MatMulIntegerToFloat is an ONNX Runtime contrib operator: the rewritten file is for ONNX Runtime.

Activations are signed int8 (symmetric, zero point 0), not uint8 with zero point 128. On x86 CPUs
without VNNI (AVX2 only, as many AMD EPYC and older Intel server CPUs are), ONNX Runtime's uint8 x int8
kernel multiplies with vpmaddubsw, whose 16-bit sums of two products saturate once activations near
255 meet weights near 127: the toy encoder of tests/unit/test_per_token.py came out with an error of
40% of its output's range on such a CPU, while VNNI CPUs were exact. Signed activations take the
int8 x int8 kernel, which does not saturate; the per-token scale was symmetric already, so nothing else
changes (the cache key's recipe version moved with it).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from service.modelkit.smoothing import OUTLIER_SUFFIX, without_unused_weights

_CONTRIB = "com.microsoft"


def quantize_per_token(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` whose MatMuls with constant 2-D weights run in int8 with per-token scales."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 13:  # per-axis QuantizeLinear and Unsqueeze's axes input
        raise ValueError(f"per-token int8 needs ONNX opset 13 or later; this model is opset {opset}")
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(model)
    graph = rewritten.graph
    weights = {init.name: init for init in graph.initializer}
    added: list[onnx.TensorProto] = []

    def constant(name: str, value: np.ndarray) -> str:
        added.append(numpy_helper.from_array(value, name))
        return name

    zero_point = constant("per_token/zero_point", np.array([0], np.int8))
    one = constant("per_token/one", np.array(1.0, np.float32))
    step = constant("per_token/inverse_127", np.array(1 / 127, np.float32))
    tiny = constant("per_token/tiny", np.array(1e-12, np.float32))
    first = constant("per_token/first", np.array([0], np.int64))
    last = constant("per_token/last", np.array([-1], np.int64))

    def reduce(op: str, source: str, target: str) -> onnx.NodeProto:
        if opset >= 18:  # axes moved from an attribute to an input
            return helper.make_node(op, [source, last], [target], keepdims=0)
        return helper.make_node(op, [source], [target], axes=[-1], keepdims=0)

    quantized_inputs: dict[str, str] = {}
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        exact = node.name.endswith(OUTLIER_SUFFIX)  # smoothing's outlier channels: fp32 by design
        weight = weights.get(node.input[1]) if node.op_type == "MatMul" and not exact else None
        if weight is None or len(weight.dims) != 2 or weight.data_type != onnx.TensorProto.FLOAT:
            nodes.append(node)
            continue
        source = node.input[0]
        channels, outputs = weight.dims
        if source not in quantized_inputs:  # rows of [tokens, channels], one scale each
            base = quantized_inputs[source] = f"{source}/per_token"
            rows = constant(f"{base}/rows", np.array([-1, channels], np.int64))
            scale, zero_points = f"{base}/scale", f"{base}/zero_points"
            nodes += [
                helper.make_node("Reshape", [source, rows], [f"{base}/2d"]),
                reduce("ReduceMax", f"{base}/2d", f"{base}/max"),
                reduce("ReduceMin", f"{base}/2d", f"{base}/min"),
                helper.make_node("Neg", [f"{base}/min"], [f"{base}/-min"]),
                helper.make_node("Max", [f"{base}/max", f"{base}/-min", tiny], [f"{base}/peak"]),
                helper.make_node("Mul", [f"{base}/peak", step], [f"{base}/scale"]),
                helper.make_node("Shape", [f"{base}/scale"], [f"{base}/count"]),
                helper.make_node("Expand", [zero_point, f"{base}/count"], [f"{base}/zero_points"]),
                helper.make_node("QuantizeLinear", [f"{base}/2d", scale, zero_points], [f"{base}/q"], axis=0),
                helper.make_node("Unsqueeze", [f"{base}/scale", last], [f"{base}/scale_column"]),
                helper.make_node("Shape", [source], [f"{base}/shape"]),
                helper.make_node("Slice", [f"{base}/shape", first, last], [f"{base}/leading"]),
            ]
        base = quantized_inputs[source]
        values = numpy_helper.to_array(weight).astype(np.float32)
        scales = (np.maximum(np.abs(values).max(axis=0), 1e-12) / 127).astype(np.float32)
        levels = np.clip(np.round(values / scales), -127, 127).astype(np.int8)
        name = node.name or node.output[0]
        product = helper.make_node(
            "MatMulIntegerToFloat",
            [
                f"{base}/q",
                constant(f"{name}/weight_int8", levels),
                one,
                constant(f"{name}/weight_scale", scales),
                zero_point,
                constant(f"{name}/weight_zero_point", np.zeros(outputs, np.int8)),
            ],
            [f"{name}/unscaled"],
            domain=_CONTRIB,
            name=f"{name}/int8",
        )
        nodes += [
            product,
            helper.make_node("Mul", [f"{name}/unscaled", f"{base}/scale_column"], [f"{name}/2d"]),
            helper.make_node(
                "Concat",
                [f"{base}/leading", constant(f"{name}/outputs", np.array([outputs], np.int64))],
                [f"{name}/shape"],
                axis=0,
            ),
            helper.make_node("Reshape", [f"{name}/2d", f"{name}/shape"], [node.output[0]]),
        ]
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(added)
    without_unused_weights(rewritten)  # the fp32 weights now quantised, and constants never used
    if not any(o.domain == _CONTRIB for o in rewritten.opset_import):
        rewritten.opset_import.append(helper.make_opsetid(_CONTRIB, 1))
    return rewritten
