"""Artifacts through Django's storage API, addressed by their sha256."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import IO

from django.core.files import File
from django.core.files.storage import Storage, storages

CHUNK = 1024 * 1024


def artifact_storage() -> Storage:
    return storages["artifacts"]


def artifact_name(sha256: str) -> str:
    return f"sha256/{sha256[:2]}/{sha256}.onnx"


def hash_stream(stream: IO[bytes]) -> tuple[str, int]:
    """sha256 and size of a file object, read in chunks and rewound."""
    digest = hashlib.sha256()
    size = 0
    stream.seek(0)
    while chunk := stream.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    stream.seek(0)
    return digest.hexdigest(), size


def store(stream: IO[bytes], sha256: str) -> str:
    """Store the bytes once under their hash and return the storage name."""
    storage = artifact_storage()
    name = artifact_name(sha256)
    if storage.exists(name):
        return name
    stream.seek(0)
    return storage.save(name, File(stream, name=name))


@contextlib.contextmanager
def local_copy(name: str) -> Iterator[str]:
    """A local filesystem path to the artifact: the file itself for local
    storage, a temporary download for remote stores."""
    storage = artifact_storage()
    try:
        yield storage.path(name)
        return
    except NotImplementedError:
        pass
    fd, path = tempfile.mkstemp(suffix=".onnx", prefix="turnout-artifact-")
    try:
        with os.fdopen(fd, "wb") as out, storage.open(name, "rb") as src:
            shutil.copyfileobj(src, out, CHUNK)
        yield path
    finally:
        os.unlink(path)


def sha256_of_stored(name: str) -> str:
    digest = hashlib.sha256()
    with artifact_storage().open(name, "rb") as src:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def list_stored() -> list[str]:
    """Every artifact name in storage under sha256/."""
    storage = artifact_storage()
    names: list[str] = []
    try:
        prefixes, _ = storage.listdir("sha256")
    except FileNotFoundError:
        return names
    for prefix in prefixes:
        _, files = storage.listdir(f"sha256/{prefix}")
        names += [f"sha256/{prefix}/{f}" for f in files]
    return names
