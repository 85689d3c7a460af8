"""The wiring of pipeline stages (registry/pipelines.py): refusals name the stage and the tensor."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

from registry.pipelines import StageDeadlineExceeded, StageFailed, StagePlan, WiringError, execute, fits_after, wire


def sig(inputs: list[tuple[str, str, list[int]]], outputs: list[tuple[str, str, list[int]]]) -> Any:
    def specs(items: list[tuple[str, str, list[int]]]) -> list[dict[str, Any]]:
        return [{"name": n, "datatype": d, "shape": s} for n, d, s in items]

    every = inputs + outputs
    return {"inputs": specs(inputs), "outputs": specs(outputs), "batch_dim": all(s and s[0] == -1 for _, _, s in every)}


TOKENS = sig([("text", "BYTES", [-1])], [("counts", "FP32", [-1, 8])])
CLASSIFY = sig([("counts", "FP32", [-1, 8])], [("scores", "FP32", [-1, 2])])
LABEL = sig([("scores", "FP32", [-1, 2])], [("label", "BYTES", [-1]), ("confidence", "FP32", [-1])])


def three() -> list[StagePlan]:
    return [StagePlan("preprocess", TOKENS), StagePlan("model", CLASSIFY), StagePlan("postprocess", LABEL)]


def refusal(stages: list[StagePlan], outputs: dict[str, str] | None = None) -> WiringError:
    with pytest.raises(WiringError) as caught:
        wire(stages, outputs)
    return caught.value


def test_a_stage_fed_the_wrong_width_is_refused_naming_stage_tensor_and_dimension() -> None:
    wide = sig([("counts", "FP32", [-1, 16])], [("scores", "FP32", [-1, 2])])
    error = refusal([StagePlan("preprocess", TOKENS), StagePlan("model", wide)])
    assert (error.stage, error.tensor) == ("model", "counts")
    assert "stage 'model' input 'counts' (FP32 [-1, 16]) cannot take 'preprocess.counts' (FP32 [-1, 8])" in str(error)
    assert "dimension 1 is 16 there, 8 here" in str(error)


def test_a_stage_fed_the_wrong_datatype_is_refused() -> None:
    doubles = sig([("counts", "FP64", [-1, 8])], [("scores", "FP32", [-1, 2])])
    error = refusal([StagePlan("preprocess", TOKENS), StagePlan("model", doubles)])
    assert (error.stage, error.tensor) == ("model", "counts")
    assert "the datatypes differ" in str(error)


def test_a_rank_mismatch_is_refused() -> None:
    flat = sig([("counts", "FP32", [-1])], [("scores", "FP32", [-1, 2])])
    assert "rank 1 there, 2 here" in str(refusal([StagePlan("preprocess", TOKENS), StagePlan("model", flat)]))


def test_an_input_without_a_same_named_output_before_it_must_be_mapped() -> None:
    renamed = sig([("features", "FP32", [-1, 8])], [("scores", "FP32", [-1, 2])])
    error = refusal([StagePlan("preprocess", TOKENS), StagePlan("model", renamed)])
    assert (error.stage, error.tensor) == ("model", "features")
    assert '"features": "preprocess.counts"' in str(error)
    mapped = wire([StagePlan("preprocess", TOKENS), StagePlan("model", renamed, {"features": "preprocess.counts"})])
    assert mapped.stages[1].inputs == {"features": "preprocess.counts"}


def test_reading_a_later_stage_or_a_missing_output_is_refused() -> None:
    stages = three()
    stages[1] = StagePlan("model", CLASSIFY, {"counts": "postprocess.confidence"})
    assert "runs later" in str(refusal(stages))
    stages[1] = StagePlan("model", CLASSIFY, {"counts": "preprocess.tokens"})
    error = refusal(stages)
    assert "stage 'preprocess' has no output 'tokens'; its outputs are counts" in str(error)
    stages[1] = StagePlan("model", CLASSIFY, {"counts": "nowhere"})
    assert "is not 'input.<name>' or '<stage>.<output>'" in str(refusal(stages))


def test_unknown_stage_inputs_and_bad_names_are_refused() -> None:
    assert "has no input 'colour'" in str(refusal([StagePlan("preprocess", TOKENS, {"colour": "input.x"})]))
    assert "reserved" in str(refusal([StagePlan("queue", TOKENS)]))
    assert "must be 1-32 lowercase" in str(refusal([StagePlan("Pre Process", TOKENS)]))
    assert "two stages are named 'preprocess'" in str(refusal([StagePlan("preprocess", TOKENS)] * 2))
    assert "at least one stage" in str(refusal([]))


def test_a_pipeline_output_must_come_from_a_stage() -> None:
    error = refusal(three(), {"label": "postprocess.nothing"})
    assert "pipeline output 'label' reads 'postprocess.nothing', which no stage produces" in str(error)
    assert "which no stage produces" in str(refusal(three(), {"text": "input.text"}))


def test_a_good_chain_serves_client_inputs_and_the_last_stages_outputs() -> None:
    wiring = wire(three())
    assert wiring.signature == {
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
        "outputs": [
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {"name": "confidence", "datatype": "FP32", "shape": [-1]},
        ],
        "batch_dim": True,
    }
    assert wiring.outputs == {"label": "postprocess.label", "confidence": "postprocess.confidence"}
    assert [dict(s.inputs) for s in wiring.stages] == [
        {"text": "input.text"},
        {"counts": "preprocess.counts"},
        {"scores": "model.scores"},
    ]


def test_outputs_may_come_from_any_stage_and_inputs_fix_dynamic_dimensions() -> None:
    wiring = wire(three(), {"label": "postprocess.label", "scores": "model.scores"})
    assert [s["name"] for s in wiring.signature["outputs"]] == ["label", "scores"]
    fixed = sig([("x", "FP32", [-1, 4])], [("y", "FP32", [-1, 4])])
    open_ = sig([("x", "FP32", [-1, -1])], [("z", "FP32", [-1, 4])])
    both = wire([StagePlan("first", fixed), StagePlan("second", open_, {"x": "input.x"})], {"z": "second.z"})
    assert both.signature["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]


def test_two_stages_that_read_one_client_input_differently_are_refused() -> None:
    four = sig([("x", "FP32", [-1, 4])], [("y", "FP32", [-1, 4])])
    five = sig([("x", "FP32", [-1, 5])], [("z", "FP32", [-1, 5])])
    error = refusal([StagePlan("first", four), StagePlan("second", five, {"x": "input.x"})])
    assert (error.stage, error.tensor) == ("second", "x")
    assert "reads the pipeline input 'x', which an earlier stage reads as FP32 [-1, 4]" in str(error)


def test_execute_runs_stages_in_order_and_reports_their_times() -> None:
    wiring = wire(three(), {"label": "postprocess.label", "scores": "model.scores"})
    seen = []

    def stage(name: str, result: list[Any]) -> Any:
        def run(feeds: dict[str, Any], deadline: float | None) -> list[Any]:
            seen.append((name, sorted(feeds)))
            return result

        return run

    runners = {
        "preprocess": stage("preprocess", [np.zeros((1, 8), np.float32)]),
        "model": stage("model", [np.array([[0.2, 0.8]], np.float32)]),
        "postprocess": stage("postprocess", [np.array(["positive"], object), np.array([0.8], np.float32)]),
    }
    outputs, timings = execute(wiring, runners, {"text": np.array(["good"], object)})
    assert seen == [("preprocess", ["text"]), ("model", ["counts"]), ("postprocess", ["scores"])]
    assert outputs[0].tolist() == ["positive"]
    assert outputs[1].tolist() == [[pytest.approx(0.2), pytest.approx(0.8)]]
    assert [t.stage for t in timings] == ["preprocess", "model", "postprocess"]


def test_execute_gives_each_stage_its_own_deadline_capped_by_the_requests() -> None:
    stages = three()
    stages[1] = StagePlan("model", CLASSIFY, timeout_ms=50)
    wiring = wire(stages)
    deadlines: dict[str, float | None] = {}

    def run(name: str, result: list[Any]) -> Any:
        def go(feeds: dict[str, Any], deadline: float | None) -> list[Any]:
            deadlines[name] = deadline
            return result

        return go

    runners = {
        "preprocess": run("preprocess", [np.zeros((1, 8), np.float32)]),
        "model": run("model", [np.zeros((1, 2), np.float32)]),
        "postprocess": run("postprocess", [np.array(["x"], object), np.zeros(1, np.float32)]),
    }
    far = time.monotonic() + 60
    execute(wiring, runners, {"text": np.array(["a"], object)}, far)
    assert deadlines["preprocess"] == far
    assert deadlines["postprocess"] == far
    assert deadlines["model"] is not None
    assert deadlines["model"] < time.monotonic() + 0.06
    with pytest.raises(StageDeadlineExceeded, match="before stage 'preprocess' could start"):
        execute(wiring, runners, {"text": np.array(["a"], object)}, time.monotonic() - 1)


def test_execute_names_the_stage_that_failed() -> None:
    wiring = wire(three())

    def broken(feeds: dict[str, Any], deadline: float | None) -> list[Any]:
        raise ValueError("bad token")

    with pytest.raises(StageFailed, match="stage 'preprocess' failed: bad token"):
        execute(wiring, {"preprocess": broken}, {"text": np.array(["a"], object)})


# --- Which versions a stage picker offers (fits_after) ------------------------------------------------------------


def test_a_picker_offers_any_version_as_the_first_stage() -> None:
    assert fits_after([], StagePlan("next", TOKENS))
    assert fits_after([], StagePlan("next", LABEL))


def test_a_picker_offers_a_version_whose_inputs_the_stage_above_gives_by_name() -> None:
    assert fits_after([StagePlan("preprocess", TOKENS)], StagePlan("next", CLASSIFY))


def test_a_picker_offers_a_version_whose_inputs_match_a_tensor_above_by_type_and_shape() -> None:
    renamed = sig([("features", "FP32", [-1, 8])], [("scores", "FP32", [-1, 2])])
    reads_text = sig([("sentence", "BYTES", [-1])], [("n", "INT64", [-1])])
    above = [StagePlan("preprocess", TOKENS), StagePlan("model", CLASSIFY)]

    assert fits_after(above, StagePlan("next", renamed))  # preprocess.counts, two stages up
    assert fits_after(above, StagePlan("next", reads_text))  # the client's input.text


def test_a_picker_leaves_out_a_version_that_nothing_above_can_feed() -> None:
    wide = sig([("counts", "FP32", [-1, 16])], [("scores", "FP32", [-1, 2])])
    doubles = sig([("counts", "FP64", [-1, 8])], [("scores", "FP32", [-1, 2])])
    above = [StagePlan("preprocess", TOKENS)]

    assert not fits_after(above, StagePlan("next", wide))
    assert not fits_after(above, StagePlan("next", doubles))
    assert not fits_after(above, StagePlan("next", LABEL))  # wants scores [-1, 2]; only counts [-1, 8] above
