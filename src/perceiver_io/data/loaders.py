"""Format-based loaders: IDX images, POS-tagged Brown files, rated sentences, plain text; splits; byte windows.

Every loader takes an explicit path, so you can point it at your own copy; without one it reads the
cache that :func:`perceiver_io.data.fetch` fills. Loaders never touch the network: call
``fetch(name)`` first (it is idempotent and cheap once the data are present).
"""

from __future__ import annotations

import ast
import gzip
import os
import random
import re
import sysconfig
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from torch.utils.data import Dataset

from perceiver_io.data.fetch import BROWN_FILE_RE, IDX_FILE_RE, MOVIE_FILE, dataset_dir

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
]

PathLike = str | os.PathLike[str]
T = TypeVar("T")

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


def _cached(name: str, cache_dir: PathLike | None) -> Path:
    d = dataset_dir(name, cache_dir)
    if not d.is_dir():
        raise FileNotFoundError(
            f"data set {name!r} is not in the cache ({d}): run `perceiver-io data fetch {name}` "
            f"(or perceiver_io.data.fetch({name!r})), or pass the path of your own copy"
        )
    return d


# --------------------------------------------------------------------------------------------
# images (IDX)

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: PathLike) -> np.ndarray:
    """Read an IDX file (plain, or gzipped if the name ends in ``.gz``) into a numpy array of its dtype and shape.

    ``*-idx3-ubyte`` image files give ``uint8 (N, rows, cols)``; ``*-idx1-ubyte`` label files ``uint8 (N,)``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"read_idx: no such file {str(path)!r}")
    raw = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"read_idx: {path} is not an IDX file (magic {raw[:4].hex()!r}, expected 0000 08..0e NN)")
    ndim = raw[3]
    offset = 4 + 4 * ndim
    if len(raw) < offset:
        raise ValueError(f"read_idx: {path} has a truncated header ({len(raw)} bytes for {ndim} dimensions)")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) - offset != expected:
        raise ValueError(f"read_idx: {path} holds {len(raw) - offset} data bytes, its header {dims} implies {expected}")
    arr = np.frombuffer(raw, dtype=dtype, offset=offset).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True) if dtype.itemsize > 1 else arr.copy()


def _idx_files(d: Path) -> dict[tuple[str, str], Path]:
    found: dict[tuple[str, str], Path] = {}
    for p in sorted(d.iterdir()):
        m = IDX_FILE_RE.match(p.name)
        if m and p.is_file():
            found.setdefault(("train" if m.group(1) == "train" else "test", m.group(2)), p)
    return found


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
        d = _cached(name, cache_dir)
    else:
        d = Path(name_or_dir)
        if not d.is_dir():
            raise FileNotFoundError(f"name_or_dir: {name!r} is neither 'mnist', 'fashion-mnist' nor a folder")
    files = _idx_files(d)
    part = "test" if split == "test" else "train"
    for kind in ("images", "labels"):
        if (part, kind) not in files:
            prefix = "t10k" if part == "test" else "train"
            raise FileNotFoundError(
                f"no {prefix}-{kind}-idx{3 if kind == 'images' else 1}-ubyte[.gz] in {d} "
                f"(found: {', '.join(sorted(p.name for p in files.values())) or 'no IDX files'})"
            )
    images = read_idx(files[(part, "images")])
    labels = read_idx(files[(part, "labels")])
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

_NO_SPACE_BEFORE = {",", ".", ";", ":", "?", "!", ")", "]", "}", "%", "''", "'", "n't", "'s", "'re", "'ll", "'ve", "'d"}
_NO_SPACE_AFTER = {"``", "(", "[", "{", "$"}
_QUOTES = {"``": '"', "''": '"'}


def _detokenize(tokens: Sequence[str]) -> str:
    """Join word tokens with spaces, attaching punctuation sensibly (``word ,`` -> ``word,``, ``( x )`` -> ``(x)``)."""
    out: list[str] = []
    glue = True  # no space before the next token
    prev = ""
    for tok in tokens:
        # Brown writes a sentence-final "." after an abbreviation ("Jr. .") and sometimes doubles ";".
        if (tok == "." and prev.endswith(".") and len(prev) > 1) or (tok in (";", ",") and tok == prev):
            continue
        prev = tok
        if out and not glue and tok not in _NO_SPACE_BEFORE:
            out.append(" ")
        out.append(_QUOTES.get(tok, tok))
        glue = tok in _NO_SPACE_AFTER
    return "".join(out)


def brown_to_text(tagged: str) -> str:
    """Plain text of one Brown corpus file: ``word/tag`` tags stripped, punctuation spacing repaired.

    Sentences of a paragraph (one per line in the file) are joined by spaces; paragraphs (blocks
    separated by blank lines) by a blank line.
    """
    paragraphs = []
    for block in re.split(r"\n\s*\n", tagged):
        sentences = []
        for line in block.splitlines():
            words = [tok.rsplit("/", 1)[0] if "/" in tok else tok for tok in line.split()]
            if words:
                sentences.append(_detokenize(words))
        if sentences:
            paragraphs.append(" ".join(sentences))
    return "\n\n".join(paragraphs)


def load_brown(path: PathLike | None = None, cache_dir: PathLike | None = None) -> list[str]:
    """The Brown corpus as a list of plain-text documents (one per file, in file-name order).

    ``path``: a folder of Brown files ``c[a-r][0-9][0-9]`` (an unpacked npm ``package/`` folder
    works too) or a single tagged file; default the cache (``perceiver-io data fetch brown``).
    """
    p = Path(path) if path is not None else _cached("brown", cache_dir)
    if p.is_file():
        files = [p]
    elif p.is_dir():
        files = sorted(f for f in p.iterdir() if BROWN_FILE_RE.match(f.name) and f.is_file())
        if not files and (p / "package").is_dir():
            files = sorted(f for f in (p / "package").iterdir() if BROWN_FILE_RE.match(f.name) and f.is_file())
        if not files:
            raise FileNotFoundError(f"load_brown: no Brown corpus files named c[a-r][0-9][0-9] in {p}")
    else:
        raise FileNotFoundError(f"load_brown: no such file or folder {str(p)!r}")
    docs = [brown_to_text(f.read_text(encoding="utf-8", errors="replace")) for f in files]
    return [d for d in docs if d]


_SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__", "_bundled", "encodings"}
_DOCTEST_LINE = re.compile(r"^\s*(>>>|\.\.\.)")


def _docstrings(source: str) -> list[str]:
    """Module, class and function docstrings (doctest lines dropped, short ones skipped), in source order."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tree = ast.parse(source)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                lines = [ln for ln in doc.splitlines() if not _DOCTEST_LINE.match(ln)]
                doc = "\n".join(lines).strip()
                if len(doc) >= _MIN_PASSAGE and " " in doc:
                    out.append(doc)
    return out


def _comment_blocks(source: str) -> list[str]:
    """Runs of whole-line ``#`` comments, each joined into one paragraph (shebang / coding lines skipped)."""
    out: list[str] = []
    block: list[str] = []
    for line in [*source.splitlines(), ""]:
        s = line.strip()
        if s.startswith("#") and not s.startswith("#!") and not _CODING_LINE.match(s):
            text = s.lstrip("#").strip()
            if text:
                block.append(text)
            continue
        if block:
            para = " ".join(block)
            if len(para) >= _MIN_PASSAGE and " " in para and sum(c.isalpha() for c in para) > 0.6 * len(para):
                out.append(para)
            block = []
    return out


_MIN_PASSAGE = 40
_CODING_LINE = re.compile(r"^#.*coding[:=]")


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
                parts = _docstrings(source) + _comment_blocks(source)
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
    p = Path(path) if path is not None else _cached("sentiment", cache_dir)
    if p.is_dir():
        p = p / MOVIE_FILE
    if not p.is_file():
        raise FileNotFoundError(f"load_sentiment: no such file {str(p)!r}")
    items: list[tuple[str, int]] = []
    for lineno, line in enumerate(p.read_text(encoding="latin-1").splitlines(), 1):
        if not line.strip():
            continue
        fields = line.rstrip("\r\n").split("\t")
        if len(fields) < 3:
            raise ValueError(f"{p}:{lineno}: expected 'id<TAB>rating<TAB>text', got {line[:60]!r}")
        try:
            rating = float(fields[1])
        except ValueError:
            raise ValueError(f"{p}:{lineno}: rating must be a number, got {fields[1]!r}") from None
        text = "\t".join(fields[2:]).strip()
        items.append((text, int(rating > 0)))
    return items


# --------------------------------------------------------------------------------------------
# splits and byte windows


def split(
    items: Sequence[T], fractions: Sequence[float] = (0.9, 0.05, 0.05), seed: int = 0
) -> tuple[list[T], list[T], list[T]]:
    """Deterministic train / valid / test split of ``items`` (documents, examples), disjoint and exhaustive.

    Items are assigned by a seeded permutation (independent of Python's hash seed); each part keeps
    the original order. Split corpora by document so that held-out text is unseen.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {tuple(fractions)}")
    n = len(items)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_valid = round(n * fractions[1])
    n_test = round(n * fractions[2])
    n_train = max(n - n_valid - n_test, 0)
    parts = order[:n_train], order[n_train : n_train + n_valid], order[n_train + n_valid :]
    train, valid, test = ([items[i] for i in sorted(idx)] for idx in parts)
    return train, valid, test


class ByteWindows(Dataset):
    """Fixed-length windows of the UTF-8 bytes of a corpus, for byte-level language modelling.

    The documents are joined with ``separator`` and cut into windows of at most ``seq_len`` bytes
    starting every ``stride`` bytes (default ``seq_len``). With ``align=True`` each start moves back
    (at most ``stride // 4`` bytes, capped at 32) to just after whitespace, so windows tend to begin
    with a whole word at the cost of a few bytes of overlap; starts never fall inside a UTF-8
    character. With ``stride <= seq_len`` every byte lies in some window. Items are ``bytes``
    (``torch.uint8`` tensors with ``as_tensor=True``) of ``seq_len`` bytes; only the last may be shorter.
    Tokenising (byte + 6) is left to :class:`perceiver_io.adapters.text.BytesTokenizer`.
    """

    def __init__(
        self,
        documents: Sequence[str],
        seq_len: int,
        stride: int | None = None,
        separator: str = "\n\n",
        align: bool = True,
        as_tensor: bool = False,
    ) -> None:
        if isinstance(documents, str):
            raise TypeError("documents must be a sequence of strings, got one str (wrap it in a list)")
        if not isinstance(seq_len, int) or seq_len < 1:
            raise ValueError(f"seq_len must be a positive int, got {seq_len!r}")
        stride = seq_len if stride is None else stride
        if not isinstance(stride, int) or stride < 1:
            raise ValueError(f"stride must be a positive int, got {stride!r}")
        self.seq_len, self.stride, self.as_tensor = seq_len, stride, as_tensor
        self.data = np.frombuffer(separator.join(documents).encode("utf-8"), dtype=np.uint8)
        n = len(self.data)
        max_shift = min(stride // 4, 32) if align else 0
        starts: list[int] = [0] if n else []
        while starts and starts[-1] + seq_len < n:  # until a window reaches the end
            starts.append(self._aligned(starts[-1] + stride, max_shift))
        self.starts = np.asarray(starts, dtype=np.int64)

    def _aligned(self, s: int, max_shift: int) -> int:
        """``s`` moved back (at most ``max_shift`` bytes) to just after whitespace, and onto a character start."""
        data = self.data
        if max_shift:
            seg = data[s - max_shift : s]
            ws = np.flatnonzero((seg == 32) | (seg == 10) | (seg == 9) | (seg == 13))
            if len(ws):
                s = s - max_shift + int(ws[-1]) + 1
        while s > 0 and 0x80 <= data[s] < 0xC0:  # never start inside a multi-byte character
            s -= 1
        return s

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int) -> bytes | torch.Tensor:
        if not -len(self) <= index < len(self):
            raise IndexError(f"window index {index} out of range for {len(self)} windows")
        start = int(self.starts[index])
        chunk = self.data[start : start + self.seq_len]
        return torch.from_numpy(chunk.copy()) if self.as_tensor else chunk.tobytes()

    @property
    def num_bytes(self) -> int:
        """Total bytes of the joined corpus."""
        return len(self.data)
