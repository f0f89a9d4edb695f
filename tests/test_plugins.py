"""Plugins (issue 12, item 2): the README's "Add a method" example run as written, entry points
read from a temporary dist-info on sys.path, and clear errors for broken plugins."""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

from conftest import REPO

import fewmm.encoders as E
import fewmm.heads as H
import fewmm.methods as M
from fewmm.errors import PluginError, PluginWarning, UnknownNameError
from fewmm.plugins import import_plugin, plugins_record


def _readme_section(title: str) -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index(f"### {title}\n")
    end = text.find("\n## ", start)
    nxt = text.find("\n### ", start + 5)
    return text[start: min(x for x in (end, nxt) if x > 0)]


def test_readme_add_a_method_runs_as_written(tmp_path):
    sec = _readme_section("Add a method")
    blocks = re.findall(r"```(\w*)\n(.*?)```", sec, flags=re.S)
    code = next(b for lang, b in blocks if lang == "python")
    command = next(b for lang, b in blocks if lang == "bash")
    printed = next(b for lang, b in blocks if lang == "")
    assert len(code.strip().splitlines()) <= 20  # "a ~20-line method"
    (tmp_path / "my_methods.py").write_text(code, encoding="utf-8")
    argv = shlex.split(command.replace("\\\n", " "))
    assert argv[:3] == [".venv/bin/python", "-m", "fewmm.bench"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "FEWMM_CACHE": str(tmp_path / "cache")}
    res = subprocess.run([sys.executable] + argv[1:], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    # the table it prints is the one in the README, number for number (deterministic: seed 0, CPU)
    assert res.stdout.strip().splitlines() == printed.strip().splitlines()
    rows = list(csv.DictReader(open(tmp_path / "results" / "add-a-method.csv")))
    by = {(r["method"], r["shots"]): r for r in rows}
    assert by[("median-proto", "1")]["accuracy"] == by[("protonet", "1")]["accuracy"]  # 1 shot: median = mean
    assert float(by[("median-proto", "1")]["paired_delta"]) == 0.0
    assert float(by[("median-proto", "5")]["paired_delta"]) < 0  # measured -1.73 points, paired CI 0.42
    doc = json.loads((tmp_path / "results" / "add-a-method.json").read_text())
    plug = doc["environment"]["plugins"]["modules"]["my_methods.py"]
    assert plug["module"] == "my_methods" and len(plug["sha256"]) == 64


def test_median_proto_method_agrees_with_a_reference(tmp_path):
    """The README's method, imported in-process with import_plugin, against numpy's median."""
    code = next(b for lang, b in re.findall(r"```(\w*)\n(.*?)```", _readme_section("Add a method"), flags=re.S) if lang == "python")
    (tmp_path / "readme_median_method.py").write_text(code.replace('"median-proto"', '"readme-median-test"'), encoding="utf-8")
    import_plugin(str(tmp_path / "readme_median_method.py"))
    try:
        rng = np.random.default_rng(0)
        x = rng.normal(size=(9, 4)).astype(np.float32)
        y = np.array(["a", "b", "c"] * 3)
        q = rng.normal(size=(5, 4)).astype(np.float32)
        m = M.create("readme-median-test").fit(x, y)
        protos = np.stack([np.median(x[y == c], axis=0) for c in ["a", "b", "c"]])
        ref = -((q[:, None, :] - protos[None]) ** 2).sum(-1)
        np.testing.assert_allclose(np.asarray(m.decision_function(q)), ref, rtol=1e-4, atol=1e-4)
        assert list(m.predict(q)) == [["a", "b", "c"][i] for i in ref.argmax(1)]
    finally:
        M.METHODS.unregister("readme-median-test")


PLUGIN_MODULE = '''
import numpy as np
import torch

import fewmm.methods as M
from fewmm.encoders import Encoder
from fewmm.heads import AvgProtoHead


class FirstShot(M.FewShotMethod):
    """Prototype = the first support item of each class."""
    name = "ep-first-shot"

    def _fit(self, x, y, n_classes):
        self.prototypes_ = torch.stack([x[y == c][0] for c in range(n_classes)])

    def _logits(self, q):
        return -torch.cdist(q, self.prototypes_)


class LengthEncoder(Encoder):
    """Text -> (number of characters, number of words)."""
    name = "ep-length"
    modality = "text"
    dim = 2
    preprocess_id = "len"

    def _prepare(self, payload):
        return np.array([len(payload), len(payload.split())], dtype=np.float32)

    def _forward(self, batch):
        return torch.from_numpy(np.stack(batch))


class MyAvg(AvgProtoHead):
    pass


NOT_CALLABLE = 3
'''


@pytest.fixture
def dist_info(tmp_path, monkeypatch):
    """A temporary installed distribution with fewmm entry points, on sys.path."""
    (tmp_path / "fewmm_ep_demo.py").write_text(PLUGIN_MODULE, encoding="utf-8")
    di = tmp_path / "fewmm_ep_demo-0.3.dist-info"
    di.mkdir()
    (di / "METADATA").write_text("Metadata-Version: 2.1\nName: fewmm-ep-demo\nVersion: 0.3\n", encoding="utf-8")
    (di / "entry_points.txt").write_text(textwrap.dedent("""\
        [fewmm.methods]
        ep-first-shot = fewmm_ep_demo:FirstShot
        ep-broken = fewmm_ep_demo:NoSuchThing
        protonet = fewmm_ep_demo:FirstShot

        [fewmm.encoders]
        ep-length = fewmm_ep_demo:LengthEncoder

        [fewmm.heads]
        ep-avg = fewmm_ep_demo:MyAvg
        ep-not-callable = fewmm_ep_demo:NOT_CALLABLE
        """), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for reg, names in ((M.METHODS, ["ep-first-shot"]), (E.ENCODERS, ["ep-length"]), (H.HEADS, ["ep-avg"])):
        for n in names:
            if n in reg.names():
                reg.unregister(n)
    sys.modules.pop("fewmm_ep_demo", None)


def test_entry_points_register_methods_encoders_and_heads(dist_info):
    E.list_encoders()  # built-ins first, as every public entry does
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        for reg in (M.METHODS, E.ENCODERS, H.HEADS):
            reg.load_entry_points(reload=True)
    msgs = [str(x.message) for x in w if issubclass(x.category, PluginWarning)]
    assert any("entry point ep-broken = 'fewmm_ep_demo:NoSuchThing' (group fewmm.methods, from fewmm-ep-demo 0.3) "
               "failed to load: AttributeError" in m for m in msgs), msgs
    assert any("entry point protonet" in m and "a method named 'protonet' is already registered" in m for m in msgs), msgs
    assert len(msgs) == 3, msgs  # broken, clash, not callable

    # the method: registered under its entry-point name, beside the built-ins, and it works
    assert "ep-first-shot" in M.list_methods() and "protonet" in M.list_methods()
    x = np.array([[0.0, 0.0], [10.0, 10.0], [1.0, 1.0], [9.0, 9.0]], dtype=np.float32)
    m = M.create("ep-first-shot").fit(x, ["a", "b", "a", "b"])
    assert list(m.predict(np.array([[2.0, 2.0], [8.0, 8.0]], np.float32))) == ["a", "b"]
    assert type(M.create("protonet")).__name__ == "ProtoNet"  # the built-in wins a clash
    # the encoder: listed with its modality, and embeds
    assert "ep-length" in E.list_encoders("text")
    enc = E.create("ep-length")
    assert enc.embed(["two words", "a b c"]).tolist() == [[9.0, 2.0], [5.0, 3.0]]
    # the head
    assert "ep-avg" in H.list_heads()
    assert type(H.create("ep-avg", {"text": 2}, ["text"])).__name__ == "MyAvg"
    # a broken entry: asking for it says why
    with pytest.raises(UnknownNameError, match="ep-broken' is not available: entry point .* failed to load: AttributeError"):
        M.create("ep-broken")
    with pytest.raises(UnknownNameError, match="is a int, not a class or factory function"):
        H.create("ep-not-callable", {"text": 2}, ["text"])
    rec = plugins_record()
    assert rec["fewmm.methods"] == {"ep-first-shot": "fewmm-ep-demo 0.3 (fewmm_ep_demo:FirstShot)"}
    assert rec["fewmm.encoders"] == {"ep-length": "fewmm-ep-demo 0.3 (fewmm_ep_demo:LengthEncoder)"}


def test_entry_point_method_runs_in_the_harness(dist_info, tmp_path, capsys):
    from fewmm.bench.cli import main

    with pytest.warns(PluginWarning):  # the broken and the clashing entries of the demo distribution
        M.METHODS.load_entry_points(reload=True)
    rc = main(["--dataset", "digits", "--encoder", "pixels", "--methods", "protonet,ep-first-shot", "--shots", "1",
               "--episodes", "20", "--out", str(tmp_path / "out"), "--name", "ep", "--quiet",
               "--cache-dir", str(tmp_path / "cache")])
    assert rc == 0
    rows = list(csv.DictReader(open(tmp_path / "out" / "ep.csv")))
    # 1 shot: the first shot is the prototype, so it equals ProtoNet (same episodes, paired delta 0)
    assert [r["method"] for r in rows] == ["protonet", "ep-first-shot"]
    assert rows[0]["accuracy"] == rows[1]["accuracy"] and float(rows[1]["paired_delta"]) == 0.0


def test_plugin_flag_errors(tmp_path, capsys):
    from fewmm.bench.cli import main

    with pytest.raises(PluginError, match=r"--plugin no_such_plugin_mod: no module named 'no_such_plugin_mod'"):
        import_plugin("no_such_plugin_mod")
    with pytest.raises(PluginError, match=r"no such file"):
        import_plugin(str(tmp_path / "missing.py"))
    (tmp_path / "boom_plugin.py").write_text("x = 1\nraise RuntimeError('boom')\n", encoding="utf-8")
    with pytest.raises(PluginError, match=r"importing it failed: .*boom_plugin\.py:2: RuntimeError: boom"):
        import_plugin(str(tmp_path / "boom_plugin.py"))
    assert "boom_plugin" not in sys.modules
    assert main(["--plugin", str(tmp_path / "boom_plugin.py"), "--list"]) == 2
    assert "error: --plugin" in capsys.readouterr().err
    with pytest.raises(UnknownNameError, match="Your own: --plugin <module or file.py>"):
        M.create("no-such-method")


def test_plugin_method_in_the_adapter_cli(tmp_path, capsys):
    """``python -m fewmm.adapt fit/predict --plugin``: a saved adapter whose head is a plugin
    method is fitted, saved, and loaded again in a process that imports the plugin."""
    from PIL import Image

    from fewmm.adapt.cli import main

    code = next(b for lang, b in re.findall(r"```(\w*)\n(.*?)```", _readme_section("Add a method"), flags=re.S) if lang == "python")
    (tmp_path / "adapt_median_plugin.py").write_text(code.replace('"median-proto"', '"adapt-median-test"'), encoding="utf-8")
    rows = ["label,image"]
    for c, level in (("dark", 20), ("light", 230)):
        for i in range(3):
            Image.fromarray(np.full((8, 8), level + 5 * i, np.uint8)).save(tmp_path / f"{c}{i}.png")
            rows.append(f"{c},{c}{i}.png")
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    plug = ["--plugin", str(tmp_path / "adapt_median_plugin.py")]
    try:
        assert main(["fit", "--manifest", str(tmp_path / "train.csv"), "--out", str(tmp_path / "ad"), "--encoder", "image=pixels",
                     "--head", "adapt-median-test"] + plug) == 0
        Image.fromarray(np.full((8, 8), 240, np.uint8)).save(tmp_path / "q.png")
        capsys.readouterr()
        assert main(["predict", str(tmp_path / "ad"), str(tmp_path / "q.png"), "--format", "csv"] + plug) == 0
        assert "light" in capsys.readouterr().out
    finally:
        M.METHODS.unregister("adapt-median-test")
