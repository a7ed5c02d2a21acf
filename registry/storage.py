"""Artifact storage: a local folder (ARTIFACT_ROOT) or an S3-compatible bucket (django-storages).

An artifact is always one stored object: a file as it is, a directory as a deterministic tar
archive. Its sha256 is computed while the bytes are written, and checked again before a version
is activated or loaded, so a truncated upload or a file edited afterwards is never served.

Nothing half-written becomes visible: the local store writes to a temporary name in the same
file system and renames (atomic); an S3 PUT is atomic by itself (an object exists whole or not
at all). Either way the database row is created only after the write succeeded.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
import tempfile
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.files import File
from django.core.files.storage import Storage

from registry.models import ArtifactFormat, Choice, ModelVersion

CHUNK = 1024 * 1024
LOCAL_SCHEME = "local://"
S3_SCHEME = "s3://"


class ArtifactError(Exception):
    """The artifact of a version cannot be used."""


class ArtifactMissing(ArtifactError):
    pass


class ArtifactCorrupt(ArtifactError):
    pass


@dataclass(frozen=True)
class StoredArtifact:
    uri: str
    checksum: str
    size: int
    format: str
    name: str


def sha256_of(stream: IO[bytes]) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    while chunk := stream.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def _reset_tarinfo(info: tarfile.TarInfo) -> tarfile.TarInfo:
    # Same files, same archive, same checksum: no times, owners or permissions from the machine.
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o755 if info.isdir() else 0o644
    return info


def _pack_directory(source: Path, target: Path) -> None:
    with tarfile.open(target, "w", format=tarfile.PAX_FORMAT) as archive:
        for path in sorted(source.rglob("*")):
            if path.is_symlink():
                raise ArtifactError(f"{path} is a symlink; artifacts must hold plain files only.")
            archive.add(path, arcname=str(path.relative_to(source)), recursive=False, filter=_reset_tarinfo)


@contextmanager
def packed(source: Path) -> Iterator[tuple[Path, Choice]]:
    """The file to store for ``source`` and its format: the file itself, or a temporary tar."""
    if source.is_file():
        yield source, ArtifactFormat.FILE
        return
    if not source.is_dir():
        raise ArtifactMissing(f"No artifact at {source}.")
    with tempfile.TemporaryDirectory(prefix="patra-pack-") as tmp:
        archive = Path(tmp) / "artifact.tar"
        _pack_directory(source, archive)
        yield archive, ArtifactFormat.TAR


def _copy_hashing(src: IO[bytes], dst: IO[bytes]) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    while chunk := src.read(CHUNK):
        digest.update(chunk)
        dst.write(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


class ArtifactStore(ABC):
    """Where artifacts are kept. ``key`` is a relative folder such as ``<tenant>/<type>/<uuid>``."""

    @abstractmethod
    def put(self, source: Path, key: str) -> StoredArtifact: ...

    @abstractmethod
    def open(self, uri: str) -> IO[bytes]:
        """The stored bytes; raises ArtifactMissing."""

    @abstractmethod
    def delete(self, uri: str) -> None: ...

    def verify(self, version: ModelVersion) -> None:
        """Raise ArtifactMissing or ArtifactCorrupt unless the stored bytes hash to the checksum."""
        if not version.artifact_uri or not version.checksum:
            raise ArtifactMissing(f"{version.label} has no stored artifact.")
        with self.open(version.artifact_uri) as stream:
            checksum, _size = sha256_of(stream)
        if checksum != version.checksum:
            raise ArtifactCorrupt(
                f"{version.label}: artifact checksum mismatch (stored sha256 {checksum[:12]}…, "
                f"registered {version.checksum[:12]}…); the artifact was modified or damaged."
            )

    def fetch(self, version: ModelVersion) -> Path:
        """A verified local copy to load: a file, or the unpacked directory of a tar artifact.
        Unpacked copies are cached per version (they never change: a version is immutable)."""
        cache = Path(settings.ARTIFACT_CACHE_DIR) / str(version.id)
        done = cache / ".complete"
        if done.exists():
            return cache / "content" if version.artifact_format == ArtifactFormat.TAR else cache / version.artifact_name
        cache.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{version.id}-", dir=cache.parent))
        try:
            with self.open(version.artifact_uri) as src, (staging / "download").open("wb") as dst:
                checksum, _size = _copy_hashing(src, dst)
            if checksum != version.checksum:
                raise ArtifactCorrupt(f"{version.label}: artifact checksum mismatch; refusing to load it.")
            if version.artifact_format == ArtifactFormat.TAR:
                with tarfile.open(staging / "download") as archive:
                    archive.extractall(staging / "content", filter="data")
                (staging / "download").unlink()
            else:
                (staging / "download").rename(staging / version.artifact_name)
            (staging / ".complete").touch()
            try:
                staging.rename(cache)
            except OSError:
                # Another thread or process unpacked the same version first: use theirs.
                shutil.rmtree(staging, ignore_errors=True)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return self.fetch(version)


class LocalArtifactStore(ArtifactStore):
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, uri: str) -> Path:
        if not uri.startswith(LOCAL_SCHEME):
            raise ArtifactMissing(f"{uri} is not in the local artifact store (ARTIFACT_STORAGE=local).")
        relative = Path(uri.removeprefix(LOCAL_SCHEME))
        if relative.is_absolute() or ".." in relative.parts:
            raise ArtifactMissing(f"{uri} is not a valid artifact location.")
        return self.root / relative

    def put(self, source: Path, key: str) -> StoredArtifact:
        name = Path(source).name or "artifact"
        with packed(Path(source)) as (payload, fmt):
            stored_name = name if fmt == ArtifactFormat.FILE else f"{name}.tar"
            target = self.root / key / stored_name
            target.parent.mkdir(parents=True, exist_ok=True)
            # Same directory, so the rename below is atomic and never crosses file systems.
            tmp = target.parent / f".{stored_name}.{uuid.uuid4().hex}.part"
            try:
                with payload.open("rb") as src, tmp.open("wb") as dst:
                    checksum, size = _copy_hashing(src, dst)
                    dst.flush()
                    os.fsync(dst.fileno())
                tmp.replace(target)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        return StoredArtifact(f"{LOCAL_SCHEME}{key}/{stored_name}", checksum, size, fmt, name)

    def open(self, uri: str) -> IO[bytes]:
        path = self._path(uri)
        try:
            return path.open("rb")
        except FileNotFoundError as exc:
            raise ArtifactMissing(f"The artifact file {path} is missing.") from exc

    def delete(self, uri: str) -> None:
        path = self._path(uri)
        path.unlink(missing_ok=True)
        for parent in (path.parent, path.parent.parent):
            try:
                parent.rmdir()  # only if empty
            except OSError:
                break


class DjangoStorageArtifactStore(ArtifactStore):
    """Any Django storage; used with django-storages' S3Storage for an S3-compatible bucket."""

    def __init__(self, storage: Storage, scheme: str = S3_SCHEME) -> None:
        self.storage = storage
        self.scheme = scheme

    def _name(self, uri: str) -> str:
        if not uri.startswith(self.scheme):
            raise ArtifactMissing(f"{uri} is not in the configured artifact store ({self.scheme}).")
        return uri.removeprefix(self.scheme)

    def put(self, source: Path, key: str) -> StoredArtifact:
        name = Path(source).name or "artifact"
        with packed(Path(source)) as (payload, fmt):
            stored_name = name if fmt == ArtifactFormat.FILE else f"{name}.tar"
            with payload.open("rb") as src:
                checksum, size = sha256_of(src)
                src.seek(0)
                # A single PUT: the object appears whole or not at all.
                saved = self.storage.save(f"{key}/{stored_name}", File(src, name=stored_name))
        return StoredArtifact(f"{self.scheme}{saved}", checksum, size, fmt, name)

    def open(self, uri: str) -> IO[bytes]:
        name = self._name(uri)
        if not self.storage.exists(name):
            raise ArtifactMissing(f"The artifact {uri} is missing from storage.")
        handle = self.storage.open(name, "rb")
        return handle if hasattr(handle, "__enter__") else io.BufferedReader(handle)  # type: ignore[arg-type]

    def delete(self, uri: str) -> None:
        self.storage.delete(self._name(uri))


def _s3_storage() -> Storage:
    try:
        from storages.backends.s3 import S3Storage
    except ImportError as exc:  # pragma: no cover - django-storages is pinned in requirements.txt
        raise ImproperlyConfigured("ARTIFACT_STORAGE=s3 needs django-storages[s3] (with boto3) installed.") from exc
    options: dict[str, object] = {
        "bucket_name": settings.ARTIFACT_S3_BUCKET,
        "location": settings.ARTIFACT_S3_PREFIX,
        "file_overwrite": False,
        "default_acl": None,
    }
    if settings.ARTIFACT_S3_ENDPOINT_URL:
        options["endpoint_url"] = settings.ARTIFACT_S3_ENDPOINT_URL
    if settings.ARTIFACT_S3_REGION:
        options["region_name"] = settings.ARTIFACT_S3_REGION
    return S3Storage(**options)


def artifact_store() -> ArtifactStore:
    """The configured store, built from settings on each call (cheap) so overrides apply."""
    if settings.ARTIFACT_STORAGE == "s3":
        return DjangoStorageArtifactStore(_s3_storage())
    return LocalArtifactStore(Path(settings.ARTIFACT_ROOT))
