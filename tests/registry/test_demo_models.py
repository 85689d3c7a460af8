"""The demo models: deterministic bytes, the shapes the benchmark expects, and a classifier
that has actually learned something."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto
from sklearn.datasets import load_iris

from registry.demo_models import build_identity, build_iris_classifier, build_mlp, build_mlp_large, build_mlp_small


def session(data: bytes) -> ort.InferenceSession:
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"])


def declared_shape(value: onnx.ValueInfoProto) -> list[int | str]:
    return [dim.dim_value or dim.dim_param for dim in value.type.tensor_type.shape.dim]


@pytest.mark.parametrize(
    "build",
    [
        build_mlp_small,
        build_mlp_large,
        build_iris_classifier,
        lambda: build_mlp(3, [5], 2, seed=7, input_name="x", output_name="y", opset=13),
        lambda: build_identity(TensorProto.STRING, [None, 2]),
    ],
    ids=["mlp_small", "mlp_large", "iris", "mlp_custom", "identity"],
)
def test_builders_give_equal_bytes_for_equal_arguments(build: Callable[[], bytes]) -> None:
    first, second = build(), build()

    assert first == second


def test_mlp_seed_changes_the_weights_but_not_the_shapes() -> None:
    base, other = build_mlp(3, [5], 2, seed=0), build_mlp(3, [5], 2, seed=1)

    assert base != other
    assert len(base) == len(other)


@pytest.mark.parametrize(
    ("build", "input_dim", "output_dim", "parameters"),
    [
        (build_mlp_small, 64, 10, 64 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10),
        (build_mlp_large, 512, 1000, 512 * 2048 + 2 * 2048 * 2048 + 2048 * 1000 + 3 * 2048 + 1000),
    ],
    ids=["mlp_small", "mlp_large"],
)
def test_benchmark_mlps_have_their_shapes_and_run_in_onnxruntime(
    build: Callable[[], bytes], input_dim: int, output_dim: int, parameters: int
) -> None:
    data = build()
    model = onnx.load_from_string(data)

    outputs = session(data).run(None, {"input": np.ones((5, input_dim), dtype=np.float32)})

    assert declared_shape(model.graph.input[0]) == ["batch", input_dim]
    assert declared_shape(model.graph.output[0]) == ["batch", output_dim]
    assert sum(int(np.prod(tensor.dims)) for tensor in model.graph.initializer) == parameters
    assert model.producer_name == "turnout-demo"
    assert outputs[0].shape == (5, output_dim)
    assert outputs[0].dtype == np.float32
    assert np.isfinite(outputs[0]).all()


def test_mlp_names_its_input_and_output_as_asked() -> None:
    data = build_mlp(3, [], 2, input_name="features", output_name="scores")

    outputs = session(data).run(["scores"], {"features": np.zeros((1, 3), dtype=np.float32)})

    assert outputs[0].shape == (1, 2)


def test_iris_classifier_predicts_the_training_labels() -> None:
    features, labels = load_iris(return_X_y=True)

    predicted, probabilities = session(build_iris_classifier()).run(
        ["label", "probabilities"], {"input": features.astype(np.float32)}
    )

    assert (predicted == labels).mean() > 0.9
    assert probabilities.shape == (150, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_identity_passes_every_value_through() -> None:
    values = np.array([[1, 2, 3]], dtype=np.int16)

    (output,) = session(build_identity(TensorProto.INT16, [None, 3])).run(None, {"input": values})

    np.testing.assert_array_equal(output, values)
