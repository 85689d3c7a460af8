"""The ONNX graphs of the `sentiment` demo pipeline, built here at run time. No Django imports.

The pipeline is three stages, each its own registered model, run back to back on one batch:

    pipeline input  text    (BYTES [N])
      -> preprocess  "sentiment-preprocess":  text   -> counts (FP32 [N, V])
      -> model       "sentiment-classifier":  counts -> scores (FP32 [N, 2], softmax of negative, positive)
      -> postprocess "sentiment-postprocess": scores -> label (BYTES [N]), confidence (FP32 [N])
    pipeline outputs label = postprocess.label, confidence = postprocess.confidence, scores = model.scores

Every stage batches on its first dimension and keeps one row per input string, so requests can
be concatenated along dimension 0. The preprocess stage uses the string operators of
onnxruntime-extensions (domain ai.onnx.contrib): a session loads it only after
`options.register_custom_ops_library(onnxruntime_extensions.get_library_path())`.

The classifier is a lexicon, not a trained model: each word carries a hand-set weight, a text's
score is the sum over its words, and the probabilities are (sigmoid(-score), sigmoid(score)).
Negation is not understood ("not good" scores as "good"), and a text without sentiment words
ties at 0.5 and is labelled "negative" (ArgMax keeps the first of equal values).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from registry.demo_models import PRODUCER, PRODUCER_VERSION

CUSTOM_OPS_DOMAIN = "ai.onnx.contrib"
OPSET = 17
ML_OPSET = 3
CUSTOM_OPS_OPSET = 1

LABELS = ("negative", "positive")

# Word -> weight toward "positive". Strong words count twice a mild one: one "great" gives 0.88,
# one "good" 0.73.
_LEXICON: dict[str, float] = {
    **dict.fromkeys(
        (
            "great", "excellent", "amazing", "wonderful", "fantastic", "superb", "brilliant", "outstanding",
            "perfect", "love", "loved", "loves", "lovely", "awesome", "masterpiece", "best", "delightful",
            "beautiful", "magnificent", "terrific",
        ),
        2.0,
    ),
    **dict.fromkeys(
        (
            "good", "nice", "fine", "enjoyed", "enjoy", "enjoyable", "like", "liked", "pleasant", "fun",
            "funny", "happy", "glad", "recommend", "recommended", "better", "well", "solid", "charming",
            "interesting", "entertaining", "worth", "favorite", "favourite", "impressive", "clever", "fresh",
            "satisfying", "smart", "sweet", "touching", "moving", "thanks", "helpful",
        ),
        1.0,
    ),
    **dict.fromkeys(
        (
            "bad", "poor", "boring", "dull", "slow", "weak", "disappointing", "disappointed", "mediocre",
            "silly", "annoying", "bland", "confusing", "messy", "sad", "unfortunately", "worse", "overrated",
            "predictable", "forgettable", "tedious", "waste", "wasted", "unhappy", "broken", "problem",
            "lacking", "flat", "cheap", "hate",
        ),
        -1.0,
    ),
    **dict.fromkeys(
        (
            "terrible", "awful", "horrible", "worst", "hated", "hates", "disgusting", "dreadful", "pathetic",
            "garbage", "trash", "atrocious", "unwatchable", "painful", "stupid", "useless", "rubbish",
            "nonsense", "appalling", "miserable",
        ),
        -2.0,
    ),
    **dict.fromkeys(
        (
            "the", "a", "an", "and", "or", "but", "if", "of", "to", "in", "on", "at", "for", "with", "about",
            "from", "by", "as", "is", "was", "are", "were", "be", "been", "being", "it", "this", "that",
            "these", "those", "i", "you", "he", "she", "we", "they", "me", "my", "your", "our", "their",
            "have", "has", "had", "do", "does", "did", "not", "no", "so", "very", "really", "too", "just",
            "quite", "movie", "film", "book", "story", "plot", "actor", "acting", "music", "food",
            "service", "product", "time", "day", "place", "people", "thing", "one", "all", "some", "more",
            "much", "there", "here", "what", "how",
        ),
        0.0,
    ),
}  # fmt: skip

VOCABULARY: tuple[str, ...] = tuple(_LEXICON)

# Runs of anything but a-z and the lowercase Latin-1 letters (StringLower has folded the capitals),
# so "café" stays one unknown word instead of leaving "caf". Letters of other scripts split words;
# their fragments are hardly ever vocabulary words. Not \P{L}: StringRegexReplace compiles its pattern on every
# run, and the Unicode class costs 1.4 ms a run against 50 us for this one (measured, batch 1).
_NON_LETTERS = "[^a-zß-öø-ÿ]+"


def build_sentiment_preprocess() -> bytes:
    """text (BYTES [N]) -> counts (FP32 [N, V]): per string, how often each VOCABULARY word occurs.

    Lowercase, replace each run of non-letters with a space, split on spaces; the words become
    (row, word id) pairs and are added into a dense [N, V + 1] tensor whose last column collects
    the unknown words and is then cut off.
    """
    width = len(VOCABULARY) + 1  # the extra column is the unknown word's
    nodes = [
        helper.make_node("StringLower", ["text"], ["lower"], name="lower", domain=CUSTOM_OPS_DOMAIN),
        helper.make_node(
            "StringRegexReplace",
            ["lower", "non_letters", "space"],
            ["spaced"],
            name="non_letters_to_space",
            domain=CUSTOM_OPS_DOMAIN,
            global_replace=1,
        ),
        # StringSplit returns (row, position) per word, which keeps strings without words as zero rows.
        helper.make_node(
            "StringSplit",
            ["spaced", "space", "skip_empty"],
            ["word_positions", "words", "split_shape"],
            name="split",
            domain=CUSTOM_OPS_DOMAIN,
        ),
        helper.make_node(
            "LabelEncoder",
            ["words"],
            ["word_ids"],
            name="word_ids",
            domain="ai.onnx.ml",
            keys_strings=list(VOCABULARY),
            values_int64s=list(range(len(VOCABULARY))),
            default_int64=len(VOCABULARY),
        ),
        helper.make_node("Gather", ["word_positions", "zero"], ["word_rows"], name="word_rows", axis=1),
        helper.make_node("Mul", ["word_rows", "width"], ["row_starts"], name="row_starts"),
        helper.make_node("Add", ["row_starts", "word_ids"], ["flat_ids"], name="flat_ids"),
        helper.make_node("Shape", ["flat_ids"], ["word_count"], name="word_count"),
        helper.make_node(
            "ConstantOfShape",
            ["word_count"],
            ["ones"],
            name="ones",
            value=numpy_helper.from_array(np.ones(1, np.float32)),
        ),
        helper.make_node("Shape", ["text"], ["batch"], name="batch"),
        helper.make_node("Mul", ["batch", "width_1d"], ["flat_size"], name="flat_size"),
        helper.make_node(
            "ConstantOfShape",
            ["flat_size"],
            ["flat_zeros"],
            name="flat_zeros",
            value=numpy_helper.from_array(np.zeros(1, np.float32)),
        ),
        helper.make_node(
            "ScatterElements",
            ["flat_zeros", "flat_ids", "ones"],
            ["flat_counts"],
            name="add_words",
            axis=0,
            reduction="add",
        ),
        helper.make_node("Concat", ["batch", "width_1d"], ["dense_shape"], name="dense_shape", axis=0),
        helper.make_node("Reshape", ["flat_counts", "dense_shape"], ["dense_counts"], name="dense_counts"),
        helper.make_node(
            "Slice", ["dense_counts", "zero_1d", "vocabulary_size_1d", "one_1d"], ["counts"], name="drop_unknown"
        ),
    ]
    initializers = [
        numpy_helper.from_array(np.array(_NON_LETTERS, dtype=object), "non_letters"),
        numpy_helper.from_array(np.array(" ", dtype=object), "space"),
        numpy_helper.from_array(np.array(True), "skip_empty"),
        numpy_helper.from_array(np.array(0, np.int64), "zero"),
        numpy_helper.from_array(np.array(width, np.int64), "width"),
        numpy_helper.from_array(np.array([width], np.int64), "width_1d"),
        numpy_helper.from_array(np.array([0], np.int64), "zero_1d"),
        numpy_helper.from_array(np.array([1], np.int64), "one_1d"),
        numpy_helper.from_array(np.array([len(VOCABULARY)], np.int64), "vocabulary_size_1d"),
    ]
    graph = helper.make_graph(
        nodes,
        "sentiment_preprocess",
        [helper.make_tensor_value_info("text", TensorProto.STRING, ["batch"])],
        [helper.make_tensor_value_info("counts", TensorProto.FLOAT, ["batch", len(VOCABULARY)])],
        initializers,
        # onnx cannot infer the custom operators' outputs, and its shape inference for LabelEncoder
        # crashes the process (onnx 1.23, SIGSEGV in check_model(full_check=True)) on an untyped input.
        value_info=[
            helper.make_tensor_value_info("lower", TensorProto.STRING, ["batch"]),
            helper.make_tensor_value_info("spaced", TensorProto.STRING, ["batch"]),
            helper.make_tensor_value_info("word_positions", TensorProto.INT64, ["words", 2]),
            helper.make_tensor_value_info("words", TensorProto.STRING, ["words"]),
            helper.make_tensor_value_info("split_shape", TensorProto.INT64, [2]),
        ],
    )
    return _serialize(graph, ml=True, custom_ops=True)


def build_sentiment_classifier() -> bytes:
    """counts (FP32 [N, V]) -> scores (FP32 [N, 2]): softmax probabilities of (negative, positive)."""
    weights = np.array([_LEXICON[word] for word in VOCABULARY], np.float32)
    # Logits (-score / 2, score / 2) make the positive probability sigmoid(score).
    logits = np.stack([-weights / 2, weights / 2], axis=1)
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["counts", "lexicon", "bias"], ["logits"], name="lexicon"),
            helper.make_node("Softmax", ["logits"], ["scores"], name="softmax", axis=1),
        ],
        "sentiment_classifier",
        [helper.make_tensor_value_info("counts", TensorProto.FLOAT, ["batch", len(VOCABULARY)])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", len(LABELS)])],
        [numpy_helper.from_array(logits, "lexicon"), numpy_helper.from_array(np.zeros(2, np.float32), "bias")],
    )
    return _serialize(graph)


def build_sentiment_postprocess() -> bytes:
    """scores (FP32 [N, 2]) -> label (BYTES [N], the likelier of LABELS) and confidence (FP32 [N], its probability)."""
    graph = helper.make_graph(
        [
            helper.make_node("ArgMax", ["scores"], ["label_ids"], name="argmax", axis=1, keepdims=0),
            helper.make_node(
                "LabelEncoder",
                ["label_ids"],
                ["label"],
                name="label",
                domain="ai.onnx.ml",
                keys_int64s=list(range(len(LABELS))),
                values_strings=list(LABELS),
            ),
            helper.make_node("ReduceMax", ["scores"], ["confidence"], name="confidence", axes=[1], keepdims=0),
        ],
        "sentiment_postprocess",
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", len(LABELS)])],
        [
            helper.make_tensor_value_info("label", TensorProto.STRING, ["batch"]),
            helper.make_tensor_value_info("confidence", TensorProto.FLOAT, ["batch"]),
        ],
    )
    return _serialize(graph, ml=True)


SENTIMENT_PIPELINE = "sentiment"
# (stage, model name, builder), in the order the worker runs them.
SENTIMENT_STAGES: tuple[tuple[str, str, Callable[[], bytes]], ...] = (
    ("preprocess", "sentiment-preprocess", build_sentiment_preprocess),
    ("model", "sentiment-classifier", build_sentiment_classifier),
    ("postprocess", "sentiment-postprocess", build_sentiment_postprocess),
)
# Pipeline input name -> (stage, that stage's input); pipeline output name -> (stage, that stage's output).
# Between stages, each output feeds the next stage's input of the same name.
SENTIMENT_INPUTS: dict[str, tuple[str, str]] = {"text": ("preprocess", "text")}
SENTIMENT_OUTPUTS: dict[str, tuple[str, str]] = {
    "label": ("postprocess", "label"),
    "confidence": ("postprocess", "confidence"),
    "scores": ("model", "scores"),
}


def _serialize(graph: onnx.GraphProto, *, ml: bool = False, custom_ops: bool = False) -> bytes:
    opsets = [helper.make_opsetid("", OPSET)]
    if ml:
        opsets.append(helper.make_opsetid("ai.onnx.ml", ML_OPSET))
    if custom_ops:
        opsets.append(helper.make_opsetid(CUSTOM_OPS_DOMAIN, CUSTOM_OPS_OPSET))
    model = helper.make_model(
        graph,
        opset_imports=opsets,
        producer_name=PRODUCER,
        producer_version=PRODUCER_VERSION,
        # onnx does not know the custom domain; the IR version follows from the standard ones.
        ir_version=helper.find_min_ir_version_for(opsets, ignore_unknown=True),
    )
    return model.SerializeToString(deterministic=True)
