"""The committed gRPC stubs are what `make protos` generates from gateway/proto/grpc_predict_v2.proto."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / "gateway" / "grpc_generated"


def test_committed_stubs_match_the_proto(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "grpc_tools.protoc", "-Igateway/grpc_generated=gateway/proto"]
    command += [
        f"--python_out={tmp_path}",
        f"--grpc_python_out={tmp_path}",
        "gateway/grpc_generated/grpc_predict_v2.proto",
    ]
    subprocess.run(command, cwd=ROOT, check=True)
    fresh = tmp_path / "gateway" / "grpc_generated"
    messages = (
        (fresh / "grpc_predict_v2_pb2.py")
        .read_text()
        .replace(
            "_descriptor_pool.Default().AddSerializedFile(", "_descriptor_pool.DescriptorPool().AddSerializedFile("
        )
    )
    assert messages == (GENERATED / "grpc_predict_v2_pb2.py").read_text(), "stale stubs: run `make protos`"
    services = (fresh / "grpc_predict_v2_pb2_grpc.py").read_text()
    assert services == (GENERATED / "grpc_predict_v2_pb2_grpc.py").read_text(), "stale stubs: run `make protos`"


def test_the_messages_load_beside_tritons_own_stubs() -> None:
    # Both define inference.ModelInferRequest; ours live in a descriptor pool of their own.
    from tritonclient.grpc import service_pb2

    from gateway.grpc_generated import grpc_predict_v2_pb2 as ours

    request = ours.ModelInferRequest(model_name="m", raw_input_contents=[b"\x00\x01"])
    theirs = service_pb2.ModelInferRequest.FromString(request.SerializeToString())
    assert theirs.model_name == "m"
    assert list(theirs.raw_input_contents) == [b"\x00\x01"]
