"""Loaders: data sets by name (read from the cache, verified against its manifest) or from a path of your own.

Every loader takes an explicit path, so you can point it at your own copy; without one it reads the
cache that :func:`perceiver_io.data.fetch` fills. Loaders never touch the network: call
``fetch(name)`` first (it is idempotent and cheap once the data are present).

Before reading cached files a loader checks each against the manifest (size and sha256; a file is
hashed once per process while it is unchanged) and raises
:class:`~perceiver_io.data.cache.IntegrityError` naming a damaged or missing file and telling you
to run ``perceiver-io data fetch NAME``. A folder you pass is checked the same way when it holds
a manifest (``load_brown(fetch("brown"))``) and read as it is otherwise. The parsers themselves
live in :mod:`perceiver_io.data.formats`, splits and byte windows in :mod:`perceiver_io.data.splits`.
"""

from __future__ import annotations

import os
import re
import sysconfig
from pathlib import Path

import numpy as np
import torch

from perceiver_io.data.cache import Manifest, cached_folder, loader_manifest, verify_files
from perceiver_io.data.formats import (
    BROWN_FILE_RE,
    MOVIE_FILE,
    brown_to_text,
    idx_files,
    parse_sentiment,
    python_prose,
    read_idx,
)
from perceiver_io.data.splits import ByteWindows, split

__all__ = [
    "FASHION_MNIST_CLASSES",
    "MNIST_CLASSES",
    "ByteWindows",
    "brown_to_text",
    "class_names",
    "load_brown",
    "load_image_classification",
    "load_sentiment",
    "load_stdlib_text",
    "load_text_corpus",
    "read_idx",
    "split",
]  # ByteWindows, brown_to_text, read_idx and split are re-exported from splits / formats

PathLike = str | os.PathLike[str]

MNIST_CLASSES = tuple(str(i) for i in range(10))
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
NUM_VALID_IMAGES = 5_000


# --------------------------------------------------------------------------------------------
# checking against the manifest


def _listing(d: Path, name: str | None) -> tuple[list[str], Manifest | None]:
    """Sorted names of the files of folder ``d`` and its manifest: the names the manifest lists if it has
    one (required when ``d`` is the cache folder of data set ``name``), else the regular files present."""
    manifest = loader_manifest(d, name)
    if manifest is None:
        return sorted(p.name for p in d.iterdir() if p.is_file()), None
    return sorted(manifest.files), manifest


def _verified(d: Path, manifest: Manifest | None, names: list[str]) -> list[Path]:
    """Paths of ``names`` in ``d``, each checked against ``manifest`` first (if there is one)."""
    if manifest is not None:
        verify_files(d, manifest, names)
    return [d / n for n in names]


def _check_file(p: Path, name: str | None = None) -> None:
    """Check file ``p`` against its folder's manifest: always for the cache of data set ``name``,
    else if the folder has a manifest listing ``p``."""
    manifest = loader_manifest(p.parent, name)
    if manifest is not None and (name is not None or p.name in manifest.files):
        verify_files(p.parent, manifest, [p.name])


# --------------------------------------------------------------------------------------------
# images (IDX)


def load_image_classification(
    name_or_dir: PathLike = "mnist", split: str = "train", cache_dir: PathLike | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``uint8 (N, H, W)`` and labels ``int64 (N,)`` of an IDX image-classification data set.

    ``name_or_dir``: ``"mnist"`` / ``"fashion-mnist"`` (read from the cache) or a folder holding
    ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
    ``t10k-labels-idx1-ubyte`` (``.gz`` or not, ``-`` or ``.`` before ``idx``). ``split``:
    ``"train"`` (the official training set less its last 5,000 images), ``"valid"`` (those last
    5,000) or ``"test"`` (the official test set). Deterministic.
    """
    if split not in ("train", "valid", "test"):
        raise ValueError(f"split must be 'train', 'valid' or 'test', got {split!r}")
    name = str(name_or_dir)
    if name in ("mnist", "fashion-mnist") and not Path(name).exists():
        d, dataset = cached_folder(name, cache_dir), name
    else:
        d, dataset = Path(name_or_dir), None
        if not d.is_dir():
            raise FileNotFoundError(f"name_or_dir: {name!r} is neither 'mnist', 'fashion-mnist' nor a folder")
    names, manifest = _listing(d, dataset)
    files = idx_files(names)
    part = "test" if split == "test" else "train"
    for kind in ("images", "labels"):
        if (part, kind) not in files:
            prefix = "t10k" if part == "test" else "train"
            raise FileNotFoundError(
                f"no {prefix}-{kind}-idx{3 if kind == 'images' else 1}-ubyte[.gz] in {d} "
                f"(found: {', '.join(sorted(files.values())) or 'no IDX files'})"
            )
    image_file, label_file = _verified(d, manifest, [files[(part, "images")], files[(part, "labels")]])
    images = read_idx(image_file)
    labels = read_idx(label_file)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"{d}: images {images.shape} and labels {labels.shape} do not match: need (N, H, W), (N,)")
    if part == "train":
        if len(images) <= NUM_VALID_IMAGES:
            raise ValueError(f"{d}: {len(images)} training images, need more than {NUM_VALID_IMAGES} for a valid split")
        cut = slice(None, -NUM_VALID_IMAGES) if split == "train" else slice(-NUM_VALID_IMAGES, None)
        images, labels = images[cut], labels[cut]
    return torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels.astype(np.int64))


def class_names(name: str) -> tuple[str, ...]:
    """Class names of ``"mnist"`` or ``"fashion-mnist"`` in label order."""
    table = {"mnist": MNIST_CLASSES, "fashion-mnist": FASHION_MNIST_CLASSES}
    if name not in table:
        raise ValueError(f"class_names: unknown data set {name!r}; known: {', '.join(table)}")
    return table[name]


# --------------------------------------------------------------------------------------------
# text corpora


def load_brown(path: PathLike | None = None, cache_dir: PathLike | None = None) -> list[str]:
    """The Brown corpus as a list of plain-text documents (one per file, in file-name order).

    ``path``: a folder of Brown files ``c[a-r][0-9][0-9]`` (an unpacked npm ``package/`` folder
    works too) or a single tagged file; default the cache (``perceiver-io data fetch brown``).
    """
    p = Path(path) if path is not None else cached_folder("brown", cache_dir)
    if p.is_file():
        _check_file(p)
        files = [p]
    elif p.is_dir():
        names, manifest = _listing(p, "brown" if path is None else None)
        names = [n for n in names if BROWN_FILE_RE.match(n)]
        if not names and manifest is None and (p / "package").is_dir():
            p = p / "package"
            names, manifest = _listing(p, None)
            names = [n for n in names if BROWN_FILE_RE.match(n)]
        if not names:
            raise FileNotFoundError(f"load_brown: no Brown corpus files named c[a-r][0-9][0-9] in {p}")
        files = _verified(p, manifest, names)
    else:
        raise FileNotFoundError(f"load_brown: no such file or folder {str(p)!r}")
    docs = [brown_to_text(f.read_text(encoding="utf-8", errors="replace")) for f in files]
    return [d for d in docs if d]


_SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__", "_bundled", "encodings"}


def load_stdlib_text(max_bytes: int | None = 8_000_000, root: PathLike | None = None) -> list[str]:
    """English prose of the Python standard library: one document per module, its passages joined by blank lines.

    Passages are the module, class and function docstrings (doctest lines dropped) followed by the
    runs of whole-line ``#`` comments (each joined into one paragraph); passages under 40 characters
    are skipped. These read far more like English than code does, and every Python has them.
    Modules are taken in path order (tests, ``site-packages`` and ``encodings`` skipped) until
    ``max_bytes`` of UTF-8 text (``None`` = all: about 2.7 MB from CPython 3.11, some 5 s to parse).
    ``root`` defaults to this Python's stdlib folder.
    """
    base = Path(root) if root is not None else Path(sysconfig.get_paths()["stdlib"])
    if not base.is_dir():
        raise FileNotFoundError(f"load_stdlib_text: no such folder {str(base)!r}")
    docs: list[str] = []
    total = 0
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
        for fname in sorted(filenames):
            if not fname.endswith(".py"):
                continue
            try:
                source = (Path(dirpath) / fname).read_text(encoding="utf-8")
                parts = python_prose(source)
            except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
                continue
            if not parts:
                continue
            doc = "\n\n".join(parts)
            docs.append(doc)
            total += len(doc.encode("utf-8"))
            if max_bytes is not None and total >= max_bytes:
                return docs
    if not docs:
        raise FileNotFoundError(f"load_stdlib_text: found no docstrings in {base}")
    return docs


def load_text_corpus(
    name_or_path: PathLike = "brown", cache_dir: PathLike | None = None, max_bytes: int | None = None
) -> list[str]:
    """Documents of a text corpus: ``"brown"``, ``"stdlib"``, a folder of ``.txt`` files or one text file.

    A folder gives one document per ``.txt`` file (recursively, in path order); a single file is
    cut into documents at blank lines (paragraphs). ``max_bytes`` caps the total (stdlib default 8 MB).
    """
    name = str(name_or_path)
    if name == "brown" and not Path(name).exists():
        docs = load_brown(cache_dir=cache_dir)
    elif name == "stdlib" and not Path(name).exists():
        return load_stdlib_text(max_bytes=max_bytes if max_bytes is not None else 8_000_000)
    else:
        p = Path(name_or_path)
        if p.is_dir():
            files = sorted(f for f in p.rglob("*.txt") if f.is_file())
            if not files:
                raise FileNotFoundError(f"load_text_corpus: no .txt files in {p}")
            docs = [f.read_text(encoding="utf-8", errors="replace").strip() for f in files]
        elif p.is_file():
            text = p.read_text(encoding="utf-8", errors="replace")
            docs = [para.strip() for para in re.split(r"\n\s*\n", text)]
        else:
            raise FileNotFoundError(
                f"load_text_corpus: {name!r} is neither 'brown', 'stdlib' nor an existing file or folder"
            )
        docs = [d for d in docs if d]
    if max_bytes is not None:
        kept, total = [], 0
        for d in docs:
            if total >= max_bytes:
                break
            kept.append(d)
            total += len(d.encode("utf-8"))
        docs = kept
    return docs


# --------------------------------------------------------------------------------------------
# sentiment


def load_sentiment(path: PathLike | None = None, cache_dir: PathLike | None = None) -> list[tuple[str, int]]:
    """Movie-review sentences as ``(text, label)``, label 1 if the mean rating is > 0 else 0.

    ``path``: a file of tab-separated ``id  rating  text`` lines (latin-1, as
    ``movieReviewSnippets_GroundTruth.txt``) or a folder holding that file; default the cache.
    The 37 sentences rated exactly 0 count as negative.
    """
    p = Path(path) if path is not None else cached_folder("sentiment", cache_dir)
    if p.is_dir():
        p = p / MOVIE_FILE
    _check_file(p, "sentiment" if path is None else None)
    return parse_sentiment(p)
