#!/usr/bin/env bash
# Regenerates the checked-in *_pb2.py, *_pb2.pyi and snapshots_pb2_grpc.py from the .proto files here.
# Needs grpcio-tools==1.66.2 (its protoc writes code for protobuf 5.27+ and grpcio 1.66.2+, the pins
# of drivebay[snapshotter]); run it from anywhere.
set -euo pipefail
src="$(cd "$(dirname "$0")/../../.." && pwd)"
cd "$src"
python -m grpc_tools.protoc -I . --python_out=. --pyi_out=. --grpc_python_out=. \
    drivebay/snapshotter/proto/mount.proto drivebay/snapshotter/proto/snapshots.proto
# mount.proto has no service, so its _grpc module is empty.
rm drivebay/snapshotter/proto/mount_pb2_grpc.py
# Generated code follows protoc's style, not ours; the .pyi stubs carry the types.
for f in drivebay/snapshotter/proto/*_pb2*.py drivebay/snapshotter/proto/*_pb2.pyi; do
    sed -i '1i # ruff: noqa\n# mypy: ignore-errors' "$f"
done
