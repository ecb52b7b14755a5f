"""Reproducible image layers: the same files always give the same bytes and the same digest.

Every entry gets a fixed time, owner and mode; entries are sorted; the compressors write no
time or name of their own. A layer is written to a temporary file while its two digests (of
the compressed blob and of the plain tar, the ``diff_id``) are computed in one pass.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import zstandard

from ..errors import ConfigurationError

#: Modification time of every entry: 1980-01-01, the earliest a zip file can record.
FIXED_MTIME = 315_532_800
COMPRESSIONS = {
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
}
_ZSTD_LEVEL = 9


@dataclass(frozen=True)
class Layer:
    """A compressed layer blob stored in ``path``."""

    path: Path
    digest: str  # of the compressed blob
    diff_id: str  # of the uncompressed tar
    size: int
    media_type: str


class _Sink(Protocol):
    def write(self, data: bytes, /) -> object: ...


class _Hashing:
    """A write-only stream that hashes and counts what passes through it."""

    def __init__(self, sink: _Sink | None) -> None:
        self.sink = sink
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        if self.sink is not None:
            self.sink.write(data)
        return len(data)

    def flush(self) -> None:
        pass

    @property
    def digest(self) -> str:
        return "sha256:" + self.sha.hexdigest()


def _directory(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    return _fixed(info)


def _fixed(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime, info.uid, info.gid, info.uname, info.gname = FIXED_MTIME, 0, 0, "", ""
    return info


def _parents(name: str) -> list[str]:
    parts = name.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def build_layer(files: Iterable[tuple[str, Path]], folder: Path, compression: str) -> Layer:
    """Pack ``files`` (path in the image, without leading slash -> file on disk) into a layer
    compressed with ``compression`` (``zstd`` or ``gzip``), written into ``folder``."""
    if compression not in COMPRESSIONS:
        raise ConfigurationError(
            f"layer compression {compression!r} is not known; use one of {sorted(COMPRESSIONS)}"
        )
    entries = sorted(files)
    target = folder / f"layer-{os.getpid()}-{id(entries)}.tar.{compression}"
    with target.open("wb") as out:
        blob = _Hashing(out)
        compressor: gzip.GzipFile | zstandard.ZstdCompressionWriter
        if compression == "gzip":
            compressor = gzip.GzipFile(filename="", mode="wb", fileobj=blob, mtime=0)
        else:
            compressor = zstandard.ZstdCompressor(level=_ZSTD_LEVEL).stream_writer(
                blob,  # type: ignore[arg-type]  # its stub asks for IO[bytes]; it only writes
                closefd=False,
            )
        plain = _Hashing(compressor)
        # typeshed's file protocol for tarfile wants read/seek/tell too; "w|" only writes
        with tarfile.open(fileobj=plain, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
            written: set[str] = set()
            for name, source in entries:
                for parent in _parents(name):
                    if parent not in written:
                        written.add(parent)
                        tar.addfile(_directory(parent))
                _add_file(tar, name, source)
        compressor.close()
    final = folder / f"{blob.digest.split(':')[1]}.tar.{compression}"
    target.replace(final)
    return Layer(final, blob.digest, plain.digest, blob.size, COMPRESSIONS[compression])


def _add_file(tar: tarfile.TarFile, name: str, source: Path) -> None:
    info = tarfile.TarInfo(name)
    status = source.lstat()
    if stat.S_ISLNK(status.st_mode):
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, os.readlink(source), 0o777
        tar.addfile(_fixed(info))
        return
    info.size = status.st_size
    info.mode = 0o755 if status.st_mode & stat.S_IXUSR else 0o644
    with source.open("rb") as stream:
        tar.addfile(_fixed(info), stream)
