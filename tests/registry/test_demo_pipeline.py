"""The sentiment demo pipeline's three graphs: valid ONNX that loads with onnxruntime-extensions,
wired stage to stage by name, batching on the first dimension, and a chain that tells positive
from negative text."""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from registry import custom_ops
from registry.demo_pipeline import (
    LABELS,
    SENTIMENT_INPUTS,
    SENTIMENT_OUTPUTS,
    SENTIMENT_STAGES,
    VOCABULARY,
    build_sentiment_classifier,
    build_sentiment_postprocess,
    build_sentiment_preprocess,
)

STAGE_IDS = [stage for stage, _, _ in SENTIMENT_STAGES]
BUILDERS = [build for _, _, build in SENTIMENT_STAGES]
# Mixed on purpose: empty, punctuation only, non-ASCII letters and an emoji, capitals.
MIXED = [
    "this movie was great, I loved it",
    "",
    "Très bien! 👍",
    "terrible, boring and awful",
    "?!...",
    "GOOD",
    "naïve café, schön",
    "\ufffd",  # what the dataplane makes of invalid UTF-8
]


def session(data: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    custom_ops.enable(options)
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def stages() -> dict[str, ort.InferenceSession]:
    return {stage: session(build()) for stage, _, build in SENTIMENT_STAGES}


def run_chain(stages: dict[str, ort.InferenceSession], texts: list[str]) -> dict[str, np.ndarray]:
    """The worker's job done by hand: each stage's outputs feed the next stage's inputs of the same name."""
    values: dict[str, np.ndarray] = {"text": np.array(texts, dtype=object).reshape(len(texts))}
    for stage in STAGE_IDS:
        current = stages[stage]
        feeds = {arg.name: values[arg.name] for arg in current.get_inputs()}
        names = [arg.name for arg in current.get_outputs()]
        values.update(zip(names, current.run(names, feeds), strict=True))
    return values


def declared_dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [dim.dim_value or dim.dim_param for dim in value.type.tensor_type.shape.dim]


def test_preprocess_does_not_load_without_the_extension_library() -> None:
    with pytest.raises(Exception, match="StringLower"):
        ort.InferenceSession(build_sentiment_preprocess(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("build", BUILDERS, ids=STAGE_IDS)
def test_every_stage_passes_the_full_checker(build: Callable[[], bytes]) -> None:
    model = onnx.load_from_string(build())

    onnx.checker.check_model(model, full_check=True)

    opsets = {entry.domain: entry.version for entry in model.opset_import}
    assert opsets[""] == 17
    assert opsets.get("ai.onnx.ml", 3) == 3
    assert opsets.get("ai.onnx.contrib", 1) == 1
    assert model.ir_version <= 9


@pytest.mark.parametrize("build", BUILDERS, ids=STAGE_IDS)
def test_every_stage_gives_identical_bytes_on_every_build(build: Callable[[], bytes]) -> None:
    assert build() == build()


@pytest.mark.parametrize("build", BUILDERS, ids=STAGE_IDS)
def test_every_input_and_output_has_a_dynamic_first_dimension(build: Callable[[], bytes]) -> None:
    graph = onnx.load_from_string(build()).graph

    for value in [*graph.input, *graph.output]:
        assert declared_dims(value)[0] == "batch", value.name


def test_stages_are_wired_by_name_and_declare_the_pipeline_inputs_and_outputs(
    stages: dict[str, ort.InferenceSession],
) -> None:
    inputs = {stage: [arg.name for arg in stages[stage].get_inputs()] for stage in STAGE_IDS}
    outputs = {stage: [arg.name for arg in stages[stage].get_outputs()] for stage in STAGE_IDS}

    assert STAGE_IDS == ["preprocess", "model", "postprocess"]
    assert [name for _, name, _ in SENTIMENT_STAGES] == [
        "sentiment-preprocess",
        "sentiment-classifier",
        "sentiment-postprocess",
    ]
    assert inputs == {"preprocess": ["text"], "model": ["counts"], "postprocess": ["scores"]}
    assert outputs == {"preprocess": ["counts"], "model": ["scores"], "postprocess": ["label", "confidence"]}
    assert all(name in inputs[stage] for stage, name in SENTIMENT_INPUTS.values())
    assert all(name in outputs[stage] for stage, name in SENTIMENT_OUTPUTS.values())
    assert set(SENTIMENT_OUTPUTS) == {"label", "confidence", "scores"}


def test_vocabulary_holds_only_words_the_preprocess_can_produce() -> None:
    assert len(set(VOCABULARY)) == len(VOCABULARY)
    assert 50 <= len(VOCABULARY) <= 300
    assert all(re.fullmatch("[a-z]+", word) for word in VOCABULARY)


def test_empty_and_wordless_strings_give_zero_rows(stages: dict[str, ort.InferenceSession]) -> None:
    (counts,) = stages["preprocess"].run(None, {"text": np.array(["", "?!", "zebra xylophone"], dtype=object)})

    assert counts.shape == (3, len(VOCABULARY))
    assert not counts.any()


def test_preprocess_counts_known_words_across_case_and_punctuation(stages: dict[str, ort.InferenceSession]) -> None:
    texts = np.array(["Good, GOOD good! zebra", "not-bad;bad"], dtype=object)

    (counts,) = stages["preprocess"].run(None, {"text": texts})

    good, bad, no = VOCABULARY.index("good"), VOCABULARY.index("bad"), VOCABULARY.index("not")
    assert counts[0, good] == 3
    assert counts[0].sum() == 3  # "zebra" is not in the vocabulary
    assert counts[1, bad] == 2
    assert counts[1, no] == 1
    assert counts[1].sum() == 3


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("this movie was great, I loved it", "positive"),
        ("terrible, boring and awful", "negative"),
        ("An excellent film with a wonderful story.", "positive"),
        ("What a waste of time: dull, predictable and stupid.", "negative"),
    ],
)
def test_chain_labels_sentences_by_their_sentiment(
    stages: dict[str, ort.InferenceSession], text: str, label: str
) -> None:
    values = run_chain(stages, [text])

    assert values["label"].tolist() == [label]
    assert values["confidence"][0] > 0.9
    assert LABELS[int(values["scores"][0].argmax())] == label


def test_chain_keeps_one_row_per_string_in_a_mixed_batch(stages: dict[str, ort.InferenceSession]) -> None:
    values = run_chain(stages, MIXED)

    assert values["counts"].shape == (len(MIXED), len(VOCABULARY))
    assert values["scores"].shape == (len(MIXED), 2)
    assert values["label"].shape == (len(MIXED),)
    assert values["confidence"].shape == (len(MIXED),)
    assert values["label"][0] == "positive"
    assert values["label"][3] == "negative"
    assert values["label"][5] == "positive"
    # No sentiment word: an even split; ArgMax keeps the first of equal values.
    for row in (1, 2, 4, 6, 7):
        np.testing.assert_allclose(values["scores"][row], [0.5, 0.5])
        assert values["label"][row] == "negative"
    np.testing.assert_allclose(values["scores"].sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(values["confidence"], values["scores"].max(axis=1))


@pytest.mark.parametrize("batch", [1, 2, 64])
def test_rows_do_not_depend_on_the_rest_of_the_batch(stages: dict[str, ort.InferenceSession], batch: int) -> None:
    texts = [MIXED[i % len(MIXED)] for i in range(batch)]

    together = run_chain(stages, texts)
    alone = [run_chain(stages, [text]) for text in texts]

    assert together["label"].tolist() == [values["label"][0] for values in alone]
    np.testing.assert_allclose(together["scores"], np.concatenate([values["scores"] for values in alone]))


def test_classifier_and_postprocess_run_without_the_extension_library() -> None:
    classifier = ort.InferenceSession(build_sentiment_classifier(), providers=["CPUExecutionProvider"])
    postprocess = ort.InferenceSession(build_sentiment_postprocess(), providers=["CPUExecutionProvider"])
    counts = np.zeros((2, len(VOCABULARY)), dtype=np.float32)
    counts[1, VOCABULARY.index("great")] = 1

    (scores,) = classifier.run(None, {"counts": counts})
    label, confidence = postprocess.run(None, {"scores": scores})

    assert label.tolist() == ["negative", "positive"]
    assert confidence[1] > 0.8
