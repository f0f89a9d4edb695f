import json
import warnings

import numpy as np
import pytest
import torch

from fewmm.cache import FeatureCache, embed_table
from fewmm.data.table import ItemTable
from fewmm.encoders.base import Encoder


class CountingEncoder(Encoder):
    """Text -> [len, #vowels, 1.0, seed]; counts forward calls."""

    name = "counting"
    modality = "text"
    dim = 4
    weights_id = "w1"
    preprocess_id = "p1"

    def __init__(self, seed: float = 0.0, **kw):
        super().__init__(**kw)
        self.calls = 0
        self.seed = seed

    def _prepare(self, payload):
        return payload

    def _forward(self, batch):
        self.calls += 1
        return torch.tensor([[len(s), sum(c in "aeiou" for c in s), 1.0, self.seed] for s in batch])


def table(texts=("cat", "doge", None, "zebra"), name="toy"):
    return ItemTable(name=name, ids=[f"i{i}" for i in range(len(texts))], labels=[0, 1, 0, 1],
                     class_names=["a", "b"], modalities={"text": list(texts)})


def test_hit_never_runs_encoder(tmp_path):
    cache = FeatureCache(tmp_path)
    enc = CountingEncoder()
    a = embed_table(table(), enc, cache=cache)
    assert not a.cache_hit and enc.calls == 1
    assert a.mask.tolist() == [True, True, False, True]
    assert a.features[2].abs().sum() == 0 and a.features[3].tolist() == [5, 2, 1, 0]
    b = embed_table(table(), enc, cache=cache)
    assert b.cache_hit and enc.calls == 1
    assert torch.equal(a.features, b.features) and np.array_equal(a.mask, b.mask)


def test_key_covers_weights_preprocessing_dataset_and_items(tmp_path):
    cache = FeatureCache(tmp_path)
    embed_table(table(), CountingEncoder(), cache=cache)
    for enc, tab in [
        (type("E2", (CountingEncoder,), {"weights_id": "w2"})(), table()),
        (type("E3", (CountingEncoder,), {"preprocess_id": "p2"})(), table()),
        (CountingEncoder(), table(name="other")),
        (CountingEncoder(), table(texts=("cat", "doge", None, "zebras"))),  # same name and ids, new content
    ]:
        r = embed_table(tab, enc, cache=cache)
        assert not r.cache_hit and enc.calls == 1


def test_edited_file_is_re_embedded(tmp_path):
    """Same manifest name, same relative paths, different file content: never a stale hit."""
    import os

    from fewmm.data.table import FileRef

    class FileLen(CountingEncoder):
        def _prepare(self, payload):
            return payload.path.read_text()

    f = tmp_path / "a.txt"
    f.write_text("one")
    t = ItemTable(name="m", ids=["0:a.txt"], labels=[0], class_names=["x"], modalities={"text": [FileRef(f)]})
    cache = FeatureCache(tmp_path / "c")
    enc = FileLen()
    assert embed_table(t, enc, cache=cache).features[0, 0] == 3
    f.write_text("three")
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))
    again = embed_table(t, enc, cache=cache)
    assert not again.cache_hit and again.features[0, 0] == 5


def test_same_file_through_another_relative_root_is_a_hit(tmp_path, monkeypatch):
    """A relative data root (FEWMM_DATA=../shared/data) read from another folder, or a symlinked
    one, names the same files: a cache hit. Another file under the same relative name is not."""
    import os
    from pathlib import Path

    from fewmm.data.table import FileRef

    class FileLen(CountingEncoder):
        def _prepare(self, payload):
            return Path(payload.path).read_text()

    data = tmp_path / "shared" / "data"
    data.mkdir(parents=True)
    (data / "a.txt").write_text("one")
    for clone in ("main", "fresh", "elsewhere/deeper"):
        (tmp_path / clone).mkdir(parents=True)
    os.symlink(data, tmp_path / "link")

    def tab():
        return ItemTable(name="m", ids=["0:a.txt"], labels=[0], class_names=["x"],
                         modalities={"text": [FileRef(Path("../shared/data/a.txt") if Path("../shared/data").exists()
                                                      else Path("../../shared/data/a.txt"))]})

    cache, enc = FeatureCache(tmp_path / "c"), FileLen()
    monkeypatch.chdir(tmp_path / "main")
    assert not embed_table(tab(), enc, cache=cache).cache_hit and enc.calls == 1
    monkeypatch.chdir(tmp_path / "fresh")  # same relative spelling, same file
    assert embed_table(tab(), enc, cache=cache).cache_hit
    monkeypatch.chdir(tmp_path / "elsewhere" / "deeper")  # another spelling of the same file
    assert embed_table(tab(), enc, cache=cache).cache_hit
    linked = ItemTable(name="m", ids=["0:a.txt"], labels=[0], class_names=["x"], modalities={"text": [FileRef(tmp_path / "link" / "a.txt")]})
    assert embed_table(linked, enc, cache=cache).cache_hit and enc.calls == 1
    other = tmp_path / "other" / "shared" / "data"  # the same relative name, another file (same size and mtime)
    other.mkdir(parents=True)
    (other / "a.txt").write_text("one")
    os.utime(other / "a.txt", ns=(data.joinpath("a.txt").stat().st_atime_ns, data.joinpath("a.txt").stat().st_mtime_ns))
    (tmp_path / "other" / "main").mkdir()
    monkeypatch.chdir(tmp_path / "other" / "main")
    assert not embed_table(tab(), enc, cache=cache).cache_hit and enc.calls == 2


@pytest.mark.parametrize("damage", ["truncate", "garbage", "flip_byte", "wrong_key"])
def test_damaged_file_is_detected_and_rebuilt(tmp_path, damage):
    cache = FeatureCache(tmp_path)
    enc = CountingEncoder()
    first = embed_table(table(), enc, cache=cache)
    path = first.path
    raw = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a safetensors file at all")
    elif damage == "flip_byte":
        path.write_bytes(raw[:-3] + bytes([raw[-3] ^ 0xFF]) + raw[-2:])
    else:  # a valid file written under another key (e.g. copied by hand)
        other = embed_table(table(name="elsewhere"), CountingEncoder(seed=9.0), cache=cache)
        path.write_bytes(other.path.read_bytes())
    with pytest.warns(UserWarning, match=f"{path.name}.*not usable"):
        again = embed_table(table(), enc, cache=cache)
    assert not again.cache_hit and enc.calls == 2
    assert torch.equal(again.features, first.features)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert embed_table(table(), enc, cache=cache).cache_hit


def test_metadata_is_json_not_pickle(tmp_path):
    fs = embed_table(table(), CountingEncoder(), cache=FeatureCache(tmp_path))
    from safetensors import safe_open

    with safe_open(str(fs.path), framework="pt") as f:
        meta = f.metadata()
    assert json.loads(meta["key"])["encoder"] == "counting"
    assert list(tmp_path.rglob("*.tmp")) == []


def test_no_cache_and_modality_errors(tmp_path):
    enc = CountingEncoder()
    r = embed_table(table(), enc, cache=False)
    assert r.path is None and not r.cache_hit
    t = ItemTable(name="imgs", ids=["a"], labels=[0], class_names=["x"], modalities={"image": [np.zeros((2, 2), np.uint8)]})
    with pytest.raises(ValueError, match="embeds 'text', not 'image'"):
        embed_table(t, enc, modality="image", cache=False)
    with pytest.raises(ValueError, match="no item with modality 'text'"):
        embed_table(t, enc, cache=False)


def test_tables_sharing_payloads_share_features(tmp_path):
    """Same payloads under other labels (e.g. fsdd digits vs speakers): one cache entry."""
    cache = FeatureCache(tmp_path)
    enc = CountingEncoder()
    a = table(name="toy/all")
    b = table(name="toy-speaker/all")
    b.payload_name = "toy/all"
    b.labels = np.array([1, 0, 1, 0])
    embed_table(a, enc, cache=cache)
    assert embed_table(b, enc, cache=cache).cache_hit and enc.calls == 1


class FlakyEncoder(Encoder):
    """Text -> features that depend on the whole batch (so a resume that broke batch alignment
    would show): [len, batch mean of len, position in batch, sin(len)]. Raises
    KeyboardInterrupt after ``fail_after`` batches (an interrupted extraction); counts batches."""

    name = "flaky"
    modality = "text"
    dim = 4
    weights_id = "w"
    preprocess_id = "p"

    def __init__(self, fail_after=None, **kw):
        super().__init__(batch_size=4, **kw)
        self.fail_after, self.batches, self.items = fail_after, 0, 0

    def _prepare(self, payload):
        return payload

    def _forward(self, batch):
        if self.fail_after is not None and self.batches == self.fail_after:
            raise KeyboardInterrupt
        self.batches += 1
        self.items += len(batch)
        n = torch.tensor([float(len(s)) for s in batch], dtype=torch.float64)
        return torch.stack([n, n.mean().expand(len(n)), torch.arange(len(n), dtype=torch.float64), torch.sin(n)], 1).float()


def test_interrupted_extraction_keeps_its_chunks_and_resumes_bit_for_bit(tmp_path):
    texts = [("x" * (i % 13 + 1)) + str(i) for i in range(50)]
    texts[7] = None  # an item without the modality: parts count only the items to encode
    t = ItemTable(name="flaky", ids=[f"i{i}" for i in range(50)], labels=[i % 2 for i in range(50)],
                  class_names=["a", "b"], modalities={"text": texts})
    ref = embed_table(t, FlakyEncoder(), cache=FeatureCache(tmp_path / "ref"))
    cache = FeatureCache(tmp_path / "c")
    # 49 items, batches of 4, a part every 8 items; interrupted in batch 7 (items 24-27)
    with pytest.raises(KeyboardInterrupt):
        embed_table(t, FlakyEncoder(fail_after=6), cache=cache, chunk_items=8)
    parts = sorted(p.name for p in cache.root.rglob("*.parts/*.safetensors"))
    assert parts == ["000000000-000000008.safetensors", "000000008-000000016.safetensors",
                     "000000016-000000024.safetensors"]  # 24 items encoded before the interruption, all kept
    assert not list(cache.root.rglob("flaky-text-*.safetensors"))  # no complete entry yet
    # a second interruption after 2 more batches keeps those too (saved on the interruption, mid-chunk)
    with pytest.raises(KeyboardInterrupt):
        embed_table(t, FlakyEncoder(fail_after=1), cache=cache, chunk_items=8)
    assert sorted(p.name for p in cache.root.rglob("*.parts/*.safetensors"))[-1] == "000000024-000000028.safetensors"
    enc = FlakyEncoder()
    res = embed_table(t, enc, cache=cache, chunk_items=8)
    assert enc.items == 49 - 28 and enc.batches == 6 and res.resumed_items == 28  # only the rest was encoded
    assert torch.equal(res.features, ref.features) and np.array_equal(res.mask, ref.mask)  # bit for bit
    assert not list(cache.root.rglob("*.parts"))  # parts removed once the entry is complete
    assert embed_table(t, FlakyEncoder(fail_after=0), cache=cache).cache_hit  # a verified complete entry


def test_a_corrupted_part_is_dropped_with_a_warning_and_reencoded(tmp_path):
    texts = [f"item{i}" for i in range(20)]
    t = ItemTable(name="flaky", ids=[f"i{i}" for i in range(20)], labels=[i % 2 for i in range(20)],
                  class_names=["a", "b"], modalities={"text": texts})
    ref = embed_table(t, FlakyEncoder(), cache=False)
    cache = FeatureCache(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        embed_table(t, FlakyEncoder(fail_after=4), cache=cache, chunk_items=4)
    parts = sorted(cache.root.rglob("*.parts/*.safetensors"))
    assert len(parts) == 4
    raw = bytearray(parts[1].read_bytes())
    raw[-3] ^= 0xFF  # flip a byte of the tensor data
    parts[1].write_bytes(bytes(raw))
    enc = FlakyEncoder()
    with pytest.warns(UserWarning, match=r"000000004-000000008.safetensors is not usable: its data checksum does not match"):
        res = embed_table(t, enc, cache=cache, chunk_items=4)
    assert enc.items == 16  # items 4.. encoded again; parts after the bad one dropped too
    assert torch.equal(res.features, ref.features)


SLOW_PLUGIN = '''
import os
import time
from pathlib import Path

import numpy as np
import torch

import fewmm.encoders as E
from fewmm.encoders import Encoder


@E.register("slow-len", "test encoder: text -> (characters, words); SLOW_LEN_SLEEP seconds per item")
class SlowLen(Encoder):
    name = "slow-len"
    modality = "text"
    dim = 2
    weights_id = "none"
    preprocess_id = "len"

    def __init__(self, **kw):
        kw["batch_size"] = 1
        super().__init__(**kw)
        self.n = 0

    def _prepare(self, payload):
        return np.array([len(payload), len(payload.split())], dtype=np.float32)

    def _forward(self, batch):
        time.sleep(float(os.environ.get("SLOW_LEN_SLEEP", "0")))
        self.n += 1
        if self.n == 5 and os.environ.get("SLOW_LEN_MARK"):
            Path(os.environ["SLOW_LEN_MARK"]).write_text("5 items")  # the test sends SIGTERM now
        return torch.from_numpy(np.stack(batch))
'''


def test_sigterm_during_encoding_keeps_the_parts_and_the_rerun_resumes(tmp_path):
    """``kill`` (SIGTERM) of ``python -m fewmm.bench`` mid-encoding: one line, exit 130, the items
    encoded so far kept as cache parts (as with Ctrl-C), and the rerun encodes only the rest."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from conftest import REPO

    (tmp_path / "slow.py").write_text(SLOW_PLUGIN, encoding="utf-8")
    rows = ["label,text"] + [f"{'ab'[i % 2]},{'word ' * (i % 7 + 1)}x{i}" for i in range(40)]
    (tmp_path / "items.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    cmd = [sys.executable, "-m", "fewmm.bench", "--plugin", str(tmp_path / "slow.py"), "--dataset",
           f"manifest:{tmp_path / 'items.csv'}", "--encoder", "slow-len", "--methods", "protonet", "--ways", "2",
           "--shots", "1", "--queries", "2", "--episodes", "5", "--out", str(tmp_path / "out"), "--name", "r",
           "--cache-dir", str(tmp_path / "c"), "--quiet"]  # --quiet last (dropped for the rerun)
    env = {**os.environ, "PYTHONPATH": str(REPO), "SLOW_LEN_SLEEP": "0.5", "SLOW_LEN_MARK": str(tmp_path / "mark")}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while not (tmp_path / "mark").exists() and proc.poll() is None and time.time() - t0 < 120:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted (signal SIGTERM)" in err
    parts = sorted((tmp_path / "c").rglob("*.parts/*.safetensors"))
    assert parts, err  # without the handler SIGTERM killed the process and nothing was saved
    n_saved = int(parts[-1].stem.split("-")[1])
    assert 5 <= n_saved < 40  # the 5 items before the mark, and maybe one or two more, not all 40
    assert f"{n_saved} item(s) of manifest/items x slow-len encoded so far are saved in the feature cache" in err
    env["SLOW_LEN_SLEEP"] = "0"
    done = subprocess.run(cmd[:-1], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"(resumed: {n_saved} items from an interrupted run's cache parts)" in done.stdout + done.stderr
    assert not list((tmp_path / "c").rglob("*.parts/*.safetensors"))


def test_interrupted_message_says_nothing_of_the_cache_when_nothing_was_saved(tmp_path):
    import signal

    from fewmm.clihelp import interrupted_message, sigterm_as_interrupt

    msg = interrupted_message(KeyboardInterrupt(), "rows kept")
    assert msg == "interrupted (Ctrl-C); rows kept"
    # interrupted before its first batch (of 4): no part, no claim; after it: the 4 items saved
    t = ItemTable(name="flaky", ids=[f"i{i}" for i in range(6)], labels=[0, 1] * 3, class_names=["a", "b"],
                  modalities={"text": list("uvwxyz")})
    with pytest.raises(KeyboardInterrupt) as ei:
        embed_table(t, FlakyEncoder(fail_after=0), cache=FeatureCache(tmp_path))
    assert interrupted_message(ei.value, "rows kept") == "interrupted (Ctrl-C); rows kept"
    with pytest.raises(KeyboardInterrupt) as ei:
        embed_table(t, FlakyEncoder(fail_after=1), cache=FeatureCache(tmp_path), chunk_items=100)
    assert "; 4 item(s) of flaky x flaky encoded so far are saved in the feature cache" in interrupted_message(ei.value)
    before = signal.getsignal(signal.SIGTERM)
    with sigterm_as_interrupt():
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before  # restored: nothing is installed on import or left behind


@pytest.mark.parametrize("module", ["fewmm.bench.cli", "fewmm.bench.backbone", "fewmm.bench.transfer", "fewmm.adapt.cli",
                                    "fewmm.bench.fusion"])
def test_every_cli_turns_sigterm_into_a_clean_interrupt(module, monkeypatch, capsys):
    """SIGTERM to the process while a CLI works: one 'interrupted (signal SIGTERM)' line, exit 130,
    the handler gone afterwards. (The work is replaced by a stand-in that signals itself, only when
    the handler is in place, so a missing handler fails the test instead of killing pytest.)"""
    import importlib
    import os
    import signal
    import time

    mod = importlib.import_module(module)
    before = signal.getsignal(signal.SIGTERM)

    def work(*a, **k):
        if signal.getsignal(signal.SIGTERM) in (before, signal.SIG_DFL, signal.SIG_IGN):
            return 99  # no handler: do not signal
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        return 0

    if module == "fewmm.bench.fusion":
        monkeypatch.setattr(mod, "run", work)
        monkeypatch.setattr(mod, "import_plugins", lambda *a: None)
        argv = ["--task", "digits-av"]
    else:
        monkeypatch.setattr(mod, "_main", work)
        argv = []
    assert mod.main(argv) == 130
    err = capsys.readouterr().err
    assert err.startswith("interrupted (signal SIGTERM); ") and err.count("\n") == 1 and "feature cache" not in err
    assert signal.getsignal(signal.SIGTERM) is before
