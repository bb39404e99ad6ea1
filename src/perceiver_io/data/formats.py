"""File formats, parsed from explicit paths: IDX arrays, POS-tagged Brown text, rated sentences, Python prose.

Nothing here knows about the cache or the network; :mod:`perceiver_io.data.loaders` adds that.
Parsers raise ``FileNotFoundError`` for a missing file and ``ValueError`` (naming the file) for
malformed contents.
"""

from __future__ import annotations

import ast
import gzip
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "BROWN_FILE_RE",
    "IDX_FILE_RE",
    "MOVIE_FILE",
    "brown_to_text",
    "idx_files",
    "idx_payload_size",
    "parse_sentiment",
    "python_prose",
    "read_idx",
    "read_idx_header",
]

PathLike = str | os.PathLike[str]

BROWN_FILE_RE = re.compile(r"^c[a-r]\d\d$")
"""Names of the 500 Brown corpus files: ``ca01`` … ``cr09``."""
IDX_FILE_RE = re.compile(r"^(train|t10k|test)-(images|labels)[-.]idx([13])-ubyte(\.gz)?$")
"""Names of (Fashion-)MNIST IDX files; groups: split prefix, kind, number of dimensions, ``.gz``."""
MOVIE_FILE = "movieReviewSnippets_GroundTruth.txt"
"""The movie-review sentences of Hutto & Gilbert (2014): ``id<TAB>rating<TAB>text`` lines, latin-1."""


# --------------------------------------------------------------------------------------------
# IDX

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


def read_idx_header(path: PathLike) -> tuple[tuple[int, ...], int]:
    """``(dims, item size in bytes)`` of an IDX file, plain or gzipped, reading only its header."""
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as f:
        head = f.read(4)
        if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _IDX_DTYPES:
            raise ValueError(f"{path}: not an IDX file (magic bytes {head.hex()!r})")
        ndim = head[3]
        raw = f.read(4 * ndim)
    if len(raw) != 4 * ndim:
        raise ValueError(f"{path}: truncated IDX header ({len(raw)} of {4 * ndim} dimension bytes)")
    dims = tuple(int.from_bytes(raw[4 * i : 4 * i + 4], "big") for i in range(ndim))
    return dims, np.dtype(_IDX_DTYPES[head[2]]).itemsize


def idx_payload_size(path: PathLike) -> int:
    """Bytes of an IDX file once decompressed (header included)."""
    path = Path(path)
    if not path.name.endswith(".gz"):
        return path.stat().st_size
    n = 0
    with gzip.open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            n += len(chunk)
    return n


def idx_files(names: Iterable[str]) -> dict[tuple[str, str], str]:
    """The IDX file names among ``names`` by ``(part, kind)``: part ``"train"`` / ``"test"``, kind
    ``"images"`` / ``"labels"``; the first in sorted order wins where several spellings are present."""
    found: dict[tuple[str, str], str] = {}
    for name in sorted(names):
        m = IDX_FILE_RE.match(name)
        if m:
            found.setdefault(("train" if m.group(1) == "train" else "test", m.group(2)), name)
    return found


# --------------------------------------------------------------------------------------------
# Brown corpus

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


# --------------------------------------------------------------------------------------------
# rated sentences


def parse_sentiment(path: PathLike) -> list[tuple[str, int]]:
    """``(text, label)`` per ``id<TAB>rating<TAB>text`` line of a latin-1 file; label 1 if rating > 0 else 0."""
    p = Path(path)
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
# English prose inside Python source

_MIN_PASSAGE = 40
_DOCTEST_LINE = re.compile(r"^\s*(>>>|\.\.\.)")
_CODING_LINE = re.compile(r"^#.*coding[:=]")


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


def python_prose(source: str) -> list[str]:
    """The passages of English in Python ``source``: its docstrings, then its comment blocks (>= 40 characters).

    Raises ``SyntaxError`` / ``ValueError`` for source that does not parse.
    """
    return _docstrings(source) + _comment_blocks(source)
