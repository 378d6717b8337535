"""Activation smoothing before int8 quantisation (SmoothQuant, Xiao et al. 2022), on an ONNX graph.

int8 quantisation gives each token's activations one scale (service.modelkit.per_token), so a few
channels with large values (BERT-style encoders have them: MiniLM's feed-forward inputs reach 15-20x
their median channel) take most of the 8 bits. Smoothing divides each input channel j of a MatMul by
s_j and multiplies row j of its weight by s_j: the fp32 product is unchanged, but the activation's
range is evened out and part of it moves into the weights, which are quantised per channel.
s_j = max|X_j|^alpha / max|W_j|^(1-alpha), with max|X_j| measured on a few calibration batches of
ordinary text (`calibration_batches`), never on an evaluation collection.

Two guards make the few calibration sentences generalise:
- a channel's peak is read as at least the median channel's. A channel that stayed quiet on the
  calibration text got a small s_j, which magnifies it: when other text wakes it (Cranfield's
  aerodynamics, for the MiniLM embedder's feed-forward outputs) it took the token's whole int8 range.
  Simulated on 200 Cranfield and 400 CACM abstracts, the summed relative int8 error of the embedder's
  MatMuls fell from 82 and 41 (x1e-4) to 53 and 33, with the calibration text's own error unchanged (30).
  End to end, embedder cosine to fp32 (1400 Cranfield, 1500 CACM abstracts and their queries) rose
  from 0.99855 / 0.99888 to 0.99880 / 0.99905, at no cost.
- up to `outliers` channels per MatMul input whose peak is at least OUTLIER_RATIO times the median
  channel's skip int8 (LLM.int8()'s mixed-precision decomposition, Dettmers et al. 2022): zeroed on the
  smoothed path and added back by a MatMul over just those channels in fp32. BERT-style models route a
  few tokens' massive values through the same channels (MiniLM: the feed-forward inputs and the first
  layers' feed-forward outputs). Two per input on every input: embedder cosine 0.99956 / 0.99959, bench
  cross-encoder mean |int8 - fp32| logit on Cranfield queries 6-13 and 14-29 x 100 abstracts 0.062 ->
  0.038 and 0.060 -> 0.036, but 13-15% of int8's speed (bench/rerank.py 2.21x where it read 2.6x). With
  the ratio, 10 of 24 inputs: 0.045 / 0.047 at no measured cost (2.67x / 2.79x), so that is the
  default for cross-encoders; the embedder still lost 13%, so it keeps none (service.backends.embedder).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper
from tokenizers import Tokenizer

Feeds = Mapping[str, np.ndarray]

# Chosen among 0.5, 0.7, 0.8 and 0.9 on the bench cross-encoder, Cranfield queries 6-13 (the bench
# reports 1-5), calibrated on CACM text: 0.5 did not help, 0.9 helped less than 0.7-0.8. With the text
# below, on queries 14-29: mean |int8 - fp32| logit 0.160 -> 0.129, per-query Spearman min 0.972 ->
# 0.978, top-10 overlap >= 0.9 on 10 -> 16 of 16 queries. (Measured with ONNX Runtime's per-batch
# activation scales, before per-token scales replaced them; see service.modelkit.onnx_session.)
ALPHA = 0.7
_SCALE_LIMITS = (1e-2, 1e2)  # keep a dead or extreme channel from producing inf or 0 weights
# Channels per MatMul input kept out of int8 (those with the largest calibration peaks), and the name
# ending of the small fp32 MatMul that computes them. See the module docstring for the measurements.
OUTLIER_CHANNELS = 2
OUTLIER_SUFFIX = "/outliers_fp32"
OUTLIER_RATIO = 8.0  # a channel is an outlier if its peak is this many times the median channel's

# Calibration text: plain sentences on many subjects, written for this purpose (no evaluation data).
CALIBRATION_QUERIES = (
    "how do vaccines train the immune system",
    "best way to store fresh basil",
    "what causes inflation to rise",
    "when was the printing press invented",
    "symptoms of iron deficiency in adults",
    "how does a hash table handle collisions",
    "rules for offside in football",
    "tenant rights when a landlord sells the building",
)
CALIBRATION_PASSAGES = (
    "Vaccines expose the immune system to a harmless piece or copy of a pathogen, so that memory cells "
    "recognise the real infection quickly and antibodies are ready before it can spread.",
    "Basil keeps best at room temperature with its stems in a glass of water, loosely covered; in the "
    "refrigerator its leaves blacken within a day or two.",
    "Prices rise when demand outpaces what an economy can produce, when costs such as energy and wages "
    "climb, or when people expect inflation and set prices and pay accordingly.",
    "Johannes Gutenberg's movable-type press, built in Mainz around 1440, made books cheap enough to "
    "spread literacy, scholarship and religious reform across Europe within a century.",
    "Iron deficiency often shows as tiredness, pale skin, shortness of breath on exertion, brittle nails "
    "and cold hands; a blood test for ferritin confirms it.",
    "A hash table maps each key to a bucket; when two keys land in the same bucket it either chains "
    "them in a list or probes for the next free slot, and it grows when the load factor gets high.",
    "A player is offside if, when the ball is played to them, they are in the opponents' half and nearer "
    "the goal line than both the ball and the second-last defender.",
    "In many jurisdictions a lease survives the sale of the property: the new owner takes over the "
    "landlord's obligations, including the deposit, and cannot end the tenancy early without cause.",
    "The committee met on Tuesday to review the budget for 2024, approving 3.5 million for road repairs, "
    "1.2 million for the library and a 4% increase in staff salaries.",
    "Photosynthesis turns carbon dioxide and water into glucose and oxygen using light absorbed by "
    "chlorophyll; the light reactions happen in the thylakoid membranes of the chloroplast.",
    "To reset the router, hold the recessed button on the back for ten seconds until the lights flash, "
    "then reconnect using the network name and password printed on the label.",
    "The novel follows three generations of a fishing family on a northern island, told in short "
    "chapters that move back and forth between the war years and the present day.",
)


@dataclass(frozen=True, slots=True)
class Calibration:
    """How to feed the calibration text to a model: its tokenizer, and whether it reads (query, passage)
    pairs (a cross-encoder) or single texts; and how many outlier channels per MatMul input to keep in
    fp32 (`smooth_activations`' `outliers`)."""

    tokenizer: Tokenizer
    pairs: bool
    outlier_channels: int = OUTLIER_CHANNELS

    def batches(self, input_names: Sequence[str]) -> list[Feeds]:
        return calibration_batches(self.tokenizer, input_names, pairs=self.pairs)


def calibration_batches(tokenizer: Tokenizer, input_names: Sequence[str], *, pairs: bool) -> list[Feeds]:
    """Model inputs for the calibration text: (query, passage) pairs for a cross-encoder, else the
    queries and passages alone, as one batch each, padded to their longest row."""
    texts: list[Any]
    if pairs:
        texts = [(q, p) for q in CALIBRATION_QUERIES for p in CALIBRATION_PASSAGES[:4]]
        texts += [(q, p) for q, p in zip(CALIBRATION_QUERIES, CALIBRATION_PASSAGES[4:], strict=False)]
        batches = [texts[i : i + 16] for i in range(0, len(texts), 16)]
    else:
        batches = [list(CALIBRATION_QUERIES), list(CALIBRATION_PASSAGES)]
    return [_feeds(tokenizer.encode_batch(batch), input_names) for batch in batches]


def _feeds(encodings: Sequence[Any], input_names: Sequence[str]) -> Feeds:
    width = max(len(encoding.ids) for encoding in encodings)
    ids = np.zeros((len(encodings), width), dtype=np.int64)
    types = np.zeros_like(ids)
    mask = np.zeros_like(ids)
    for row, encoding in enumerate(encodings):  # a tokenizer that pads already gives its own mask
        length = len(encoding.ids)
        ids[row, :length] = encoding.ids
        types[row, :length] = encoding.type_ids
        mask[row, :length] = encoding.attention_mask
    every = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    return {name: every[name] for name in input_names if name in every}


def smooth_activations(
    model: onnx.ModelProto,
    batches: Sequence[Feeds],
    alpha: float = ALPHA,
    outliers: int = OUTLIER_CHANNELS,
) -> onnx.ModelProto:
    """A copy of `model` whose MatMuls with constant 2-D weights take smoothed inputs (same fp32 output).

    MatMuls that share an input (an attention block's query, key and value) share one scale, taken
    over all their weights, so the input is divided once. Up to `outliers` channels of each input whose
    calibration peak is OUTLIER_RATIO times the median channel's leave the int8 path: the smoothing Mul
    zeroes them, and a MatMul over just those channels (named with OUTLIER_SUFFIX, which per-token
    quantisation leaves fp32) adds them back.
    """
    smoothed = onnx.ModelProto()
    smoothed.CopyFrom(model)
    graph = smoothed.graph
    weights = {init.name: init for init in graph.initializer}
    by_input: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        if node.op_type != "MatMul" or node.input[0] in weights or node.input[1] not in weights:
            continue
        if len(weights[node.input[1]].dims) == 2:
            by_input.setdefault(node.input[0], []).append(node)
    if not by_input:
        return smoothed
    peaks = _channel_peaks(smoothed, list(by_input), batches)
    for tensor, nodes in by_input.items():
        arrays = [numpy_helper.to_array(weights[node.input[1]]) for node in nodes]
        weight_peak = np.abs(np.concatenate(arrays, axis=1)).max(axis=1)
        # A channel quiet on the calibration text may not be quiet on the next text: reading its peak as
        # at least the median channel's keeps smoothing from magnifying it (see the module docstring).
        typical = np.median(peaks[tensor])
        peak = np.maximum(peaks[tensor], typical)
        scale = np.maximum(peak, 1e-5) ** alpha / np.maximum(weight_peak, 1e-5) ** (1 - alpha)
        scale = np.clip(scale, *_SCALE_LIMITS).astype(np.float32)
        loudest = np.argsort(-peaks[tensor], kind="stable")[: min(outliers, len(scale) // 4)]
        exact = np.sort(loudest[peaks[tensor][loudest] >= OUTLIER_RATIO * typical]).astype(np.int64)
        inverse_scale = (1.0 / scale).astype(np.float32)
        inverse_scale[exact] = 0.0  # those channels take the fp32 path below instead
        inverse, divided = f"{tensor}/smoothing_scale", f"{tensor}/smoothed"
        graph.initializer.append(numpy_helper.from_array(inverse_scale, inverse))
        # Placed before the first consumer, after the producer: the node list stays in topological order.
        position = list(graph.node).index(nodes[0])
        graph.node.insert(position, helper.make_node("Mul", [tensor, inverse], [divided], name=divided))
        channels = f"{tensor}/outlier_channels"
        if exact.size:
            graph.initializer.append(numpy_helper.from_array(exact, f"{channels}/index"))
            graph.node.insert(
                position, helper.make_node("Gather", [tensor, f"{channels}/index"], [channels], axis=-1)
            )
        for node, array in zip(nodes, arrays, strict=True):
            rows = (array * scale[:, None]).astype(np.float32)
            rows[exact] = 0.0  # so the per-channel weight scales ignore them too
            scaled = f"{node.input[1]}/smoothed"
            graph.initializer.append(numpy_helper.from_array(rows, scaled))
            node.input[0], node.input[1] = divided, scaled
            if exact.size:
                _add_exact_product(graph, node, channels, array[exact].astype(np.float32))
    return without_unused_weights(smoothed)


def _add_exact_product(graph: onnx.GraphProto, node: onnx.NodeProto, channels: str, rows: np.ndarray) -> None:
    """node's output becomes its own product plus channels @ rows, computed in fp32 after it."""
    output = node.output[0]
    name = node.name or output
    node.output[0] = f"{output}/smoothed_part"
    graph.initializer.append(numpy_helper.from_array(rows, f"{name}/outlier_rows"))
    position = list(graph.node).index(node) + 1
    exact = f"{output}/outlier_part"
    graph.node.insert(position, helper.make_node("Add", [node.output[0], exact], [output]))
    graph.node.insert(
        position,
        helper.make_node("MatMul", [channels, f"{name}/outlier_rows"], [exact], name=name + OUTLIER_SUFFIX),
    )


def _channel_peaks(
    model: onnx.ModelProto, tensors: list[str], batches: Sequence[Feeds]
) -> dict[str, np.ndarray]:
    """max |x| per last-axis channel of each tensor, over the calibration batches (fp32 run)."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for tensor in tensors:
        probe.graph.output.append(helper.make_tensor_value_info(tensor, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    peaks: dict[str, np.ndarray] = {}
    for feeds in batches:
        for tensor, value in zip(tensors, session.run(tensors, dict(feeds)), strict=True):
            found = np.abs(np.asarray(value)).reshape(-1, np.asarray(value).shape[-1]).max(axis=0)
            peaks[tensor] = np.maximum(peaks[tensor], found) if tensor in peaks else found
    return peaks


def without_unused_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    used = {name for node in model.graph.node for name in node.input}
    kept = [init for init in model.graph.initializer if init.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    return model
