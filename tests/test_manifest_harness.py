"""Manifests everywhere a data set name is taken (issue 12, item 1): the bench CLI and TOML suites
(``manifest:PATH``, a ``split`` column or a seeded class-disjoint split written into the results),
the fusion bench on a tri-modal manifest (CSV -> trained heads -> table in one command), and
exported manifests with paths relative to the manifest."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from PIL import Image

import fewmm.data as D
from fewmm.bench.runner import RunSpec, load_suite, parse_dataset
from fewmm.errors import DataError, FewmmError

WORDS = "zero one two three four five six seven eight nine".split()
SPEAKERS = ["jackson", "nicolas", "theo", "yweweler", "george", "lucas"]


def make_trimodal(folder, data_root, n=10, split_column=False):
    """10 digit classes x n items: scikit-learn digits as PNG (missing for every 4th item), FSDD
    recordings of the digit copied in (missing for every 5th), inline text for every 3rd item,
    and a class_text column. With ``split_column``: digits 0-5 base, 6-7 val, 8-9 novel."""
    from sklearn.datasets import load_digits

    (folder / "img").mkdir(parents=True, exist_ok=True)
    (folder / "snd").mkdir(exist_ok=True)
    d = load_digits()
    rows = []
    for c in range(10):
        imgs = np.flatnonzero(d.target == c)[:n]
        for i in range(n):
            r = {"label": WORDS[c], "image": "", "audio": "", "text": "",
                 "class_text": f"the handwritten and spoken digit {WORDS[c]}"}
            if i % 4 != 3:
                Image.fromarray((d.images[imgs[i]] * 255 / 16).astype(np.uint8)).save(folder / "img" / f"{c}_{i}.png")
                r["image"] = f"img/{c}_{i}.png"
            if i % 5 != 4:
                src = data_root / "fsdd" / "recordings" / f"{c}_{SPEAKERS[i % 6]}_{i // 6}.wav"
                shutil.copy(src, folder / "snd" / src.name)
                r["audio"] = f"snd/{src.name}"
            if i % 3 == 0:
                r["text"] = f"a note about {WORDS[c]}" if i % 2 == 0 else f"item {i}: someone wrote {WORDS[c]}"
            if split_column:
                r["split"] = "base" if c < 6 else "val" if c < 8 else "test"  # 'test' is an alias of novel
            rows.append(r)
    with open(folder / "m.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return folder / "m.csv"


@pytest.fixture(scope="module")
def trimodal(tmp_path_factory, data_root):
    return make_trimodal(tmp_path_factory.mktemp("trimodal"), data_root)


# ------------------------------------------------------------------------------ splits


def test_seeded_class_split_is_disjoint_recorded_and_reproducible(trimodal):
    full = D.load("manifest", path=trimodal)
    assert len(full) == 100 and full.n_classes == 10 and "splits" not in full.info
    parts = {s: D.load("manifest", path=trimodal, split=s) for s in ("base", "val", "novel")}
    # by hand: class names sorted, permuted with default_rng(0); 6 base, 2 val, 2 novel
    perm = np.random.default_rng(0).permutation(10)
    names = sorted(WORDS)
    want = {"base": sorted(names[i] for i in perm[:6]), "val": sorted(names[i] for i in perm[6:8]),
            "novel": sorted(names[i] for i in perm[8:])}
    for s, t in parts.items():
        got = sorted({t.class_names[c] for c in t.labels})
        assert got == want[s], s
        assert len(t) == 10 * len(want[s])
        assert t.info["splits"]["source"] == "seeded" and t.info["splits"]["seed"] == 0
        assert t.info["splits"]["class_names"][s] == want[s]
        assert t.name == f"manifest/m/{s}-seed0"
    # another seed, other fractions
    t = D.load("manifest", path=trimodal, split="novel", split_seed=3, split_fractions=(0.4, 0.2, 0.4))
    perm3 = np.random.default_rng(3).permutation(10)
    assert sorted({t.class_names[c] for c in t.labels}) == sorted(names[i] for i in perm3[6:])
    with pytest.raises(DataError, match="must be three numbers >= 0 summing to 1"):
        D.load("manifest", path=trimodal, split="novel", split_fractions=(0.5, 0.5, 0.5))
    with pytest.raises(DataError, match="unknown split 'test'; expected one of all, base, val, novel"):
        D.load("manifest", path=trimodal, split="test")


def test_split_column_values_and_class_disjointness_are_checked(tmp_path):
    (tmp_path / "m.csv").write_text(
        "label,text,split\na,x1,train\na,x2,validation\nb,x3,novel\nc,x4,base\nc,x5,test\nd,x6,later\n", encoding="utf-8")
    with pytest.raises(DataError) as ei:
        D.load_manifest(tmp_path / "m.csv")
    msg = str(ei.value)
    assert "line 7 (data row 6), column 'split': 'later' is not a split; expected one of base, train" in msg
    assert "class(es) 'c' have novel rows and also base or val rows" in msg
    (tmp_path / "ok.csv").write_text("label,text,split\na,x1,train\na,x2,validation\nb,x3,novel\nc,x4,val\n", encoding="utf-8")
    rec = D.class_splits(D.load_manifest(tmp_path / "ok.csv"))
    assert rec["source"] == "split column"
    assert rec["class_names"] == {"base": ["a"], "val": ["c"], "novel": ["b"]}
    assert rec["val_items"] == [1]  # the validation row of base class 'a': a held-out base item
    base = D.load("manifest", path=tmp_path / "ok.csv", split="base")
    assert base.ids == ["1:text-" + __import__("hashlib").sha1(b"x1").hexdigest()[:12]]


# ----------------------------------------------------------------------- the bench CLI


def test_dataset_specs_name_manifests(tmp_path):
    (tmp_path / "my.csv").write_text("label,text\na,x\nb,y\n", encoding="utf-8")
    assert parse_dataset("omniglot:evaluation") == ("omniglot", "evaluation")
    assert parse_dataset(f"manifest:{tmp_path}/my.csv") == ("manifest", f"{tmp_path}/my.csv")
    assert parse_dataset(f"{tmp_path}/my.csv:novel") == ("manifest", f"{tmp_path}/my.csv:novel")
    r = RunSpec(*parse_dataset(f"{tmp_path}/my.csv"))
    assert (r.dataset, r.split, r.options, r.label, r.base) == ("manifest", "all", {"path": f"{tmp_path}/my.csv"}, "my", None)
    r = RunSpec(*parse_dataset(f"manifest:{tmp_path}/my.csv:novel"))
    assert (r.split, r.base) == ("novel", f"manifest:{tmp_path}/my.csv:base")
    with pytest.raises(FewmmError, match="manifest .*nope.csv not found"):
        RunSpec(*parse_dataset(f"manifest:{tmp_path}/nope.csv"))
    with pytest.raises(FewmmError, match=r"manifest .*my.csv: 'bogus' is not a split; expected one of all, base, val, novel"):
        RunSpec(*parse_dataset(f"manifest:{tmp_path}/my.csv:bogus"))  # was: "manifest ...my.csv:bogus not found"


def test_bench_cli_on_a_manifest_with_a_split_column(tmp_path, data_root):
    from fewmm.bench.cli import main

    path = make_trimodal(tmp_path / "data", data_root, split_column=True)
    out = tmp_path / "out"
    rc = main(["--dataset", f"manifest:{path}", "--encoder", "pixels", "--methods", "protonet,simpleshot", "--ways", "2",
               "--shots", "1,5", "--queries", "2", "--episodes", "40", "--out", str(out), "--name", "m", "--quiet", "--cache-dir", str(tmp_path / "c")])
    assert rc == 0
    doc = json.loads((out / "m.json").read_text())
    rows = doc["results"]
    # the novel split: digits 8 and 9 (split 'test'), the items that have an image (every 4th lacks one)
    assert {r["split"] for r in rows} == {"novel"} and {r["dataset"] for r in rows} == {"m"}
    assert {r["n_classes"] for r in rows} == {2} and {r["n_items"] for r in rows} == {2 * 8}
    ds = doc["datasets"]["m:novel"]
    assert ds["info"]["splits"]["class_names"] == {"base": sorted(WORDS[:6]), "val": ["seven", "six"], "novel": ["eight", "nine"]}
    assert ds["info"]["splits"]["source"] == "split column" and ds["base"] == f"manifest:{path}:base"
    ss = [r for r in rows if r["method"] == "simpleshot"]
    assert all(r["notes"] == f"base statistics from manifest:{path}:base" for r in ss)
    assert sorted((r["ways"], r["shots"], r["episodes"]) for r in rows) == [(2, 1, 40)] * 2 + [(2, 5, 40)] * 2


def test_a_class_without_the_encoders_modality_is_named_and_the_banner_counts_the_episode_pool(tmp_path, trimodal, capsys):
    """Audio removed from every 'seven' item: an audio encoder leaves 'seven' out of the episodes.
    The run says so ([note], naming the class), and the banner counts the items and classes the
    episodes draw from (72 audio items of 9 classes, not the whole table)."""
    from fewmm.bench.cli import main

    rows = list(csv.DictReader(open(trimodal, encoding="utf-8")))
    rows = [r for r in rows if r["label"] != "seven" or r["image"] or r["text"]]  # keep items that still have a modality
    for r in rows:
        if r["label"] == "seven":
            r["audio"] = ""
    m = trimodal.parent / "no_seven_audio.csv"
    with open(m, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    rc = main(["--dataset", f"manifest:{m}", "--encoder", "logmel-stats", "--methods", "protonet", "--ways", "2", "--shots", "1",
               "--queries", "2", "--episodes", "4", "--out", str(tmp_path), "--name", "x", "--cache-dir", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert rc == 0, err
    n_audio = sum(bool(r["audio"]) for r in rows)
    assert n_audio == 72  # 8 of 10 items per class have audio, 9 classes
    assert (f"[note] no_seven_audio x logmel-stats: class(es) ['seven'] have no audio item: left out of its episodes "
            f"({n_audio} of {len(rows)} items have audio)") in err
    assert f"block 1: no_seven_audio x logmel-stats ({n_audio} items, 9 classes, 2 queries)" in err


def test_toml_suite_with_a_manifest_relative_to_the_suite(tmp_path, data_root):
    from fewmm.bench.runner import run_suite

    path = make_trimodal(tmp_path / "data", data_root)
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "mine.toml").write_text(
        'name = "mine"\nmethods = ["protonet", "knn"]\nways = [2]\nshots = [1]\nqueries = 3\nepisodes = 30\n\n'
        '[[run]]\ndataset = "manifest:../data/m.csv:novel"\nencoders = ["logmel-stats"]\n'
        'options = { split_seed = 1 }\n\n'
        '[[run]]\ndataset = "manifest"\nlabel = "digits-text"\nencoders = ["pixels"]\noptions = { path = "../data/m.csv" }\n',
        encoding="utf-8")
    suite = load_suite(tmp_path / "suites" / "mine.toml")
    r0, r1 = suite.runs
    assert r0.options == {"path": str(path), "split_seed": 1} and r0.split == "novel" and r0.base == f"manifest:{path}:base"
    assert r1.options == {"path": str(path)} and r1.split == "all" and r1.label == "digits-text"
    rep = run_suite(suite, out_dir=tmp_path / "out", stem="mine", cache_dir=tmp_path / "c", quiet=True)
    perm = np.random.default_rng(1).permutation(10)
    novel = sorted(sorted(WORDS)[i] for i in perm[8:])
    doc = json.loads(rep.json_path.read_text())
    assert doc["datasets"]["m:novel"]["info"]["splits"]["class_names"]["novel"] == novel
    audio_rows = [r for r in rep.rows if r["encoder"] == "logmel-stats"]
    assert {r["n_items"] for r in audio_rows} == {2 * 8} and {r["split"] for r in audio_rows} == {"novel"}
    pix = [r for r in rep.rows if r["encoder"] == "pixels"]
    assert {r["n_items"] for r in pix} == {80} and {r["n_classes"] for r in pix} == {10}  # every row with an image


def test_readme_manifest_suite_loads(tmp_path, trimodal):
    """The README's TOML suite, as written, next to a my_data/items.csv: it names the manifest."""
    import re

    from conftest import REPO

    text = (REPO / "README.md").read_text(encoding="utf-8")
    sec = text[text.index("### Your own data: manifests"):text.index("## The benchmark harness")]
    toml = re.search(r"```toml\n(.*?)```", sec, flags=re.S).group(1)
    (tmp_path / "my_data").mkdir()
    shutil.copy(trimodal, tmp_path / "my_data" / "items.csv")
    for sub in ("img", "snd"):
        shutil.copytree(trimodal.parent / sub, tmp_path / "my_data" / sub)
    (tmp_path / "my_suite.toml").write_text(toml, encoding="utf-8")
    suite = load_suite(tmp_path / "my_suite.toml")
    (r,) = suite.runs
    assert (r.dataset, r.split, r.label, r.encoders) == ("manifest", "all", "items", ["efficientnet-lite2"])
    assert r.options == {"path": str(tmp_path / "my_data" / "items.csv"), "split_seed": 0}
    assert suite.methods == ["protonet", "simpleshot", "linear-probe"] and suite.shots == [1, 5]


def test_unknown_dataset_message_mentions_manifests(tmp_path, capsys):
    from fewmm.bench.cli import main

    with pytest.raises(FewmmError, match="manifest"):
        D.load("my_data")
    assert main(["--dataset", "my_data", "--out", str(tmp_path), "--quiet"]) == 2
    assert "Your own data: manifest:PATH (a CSV/JSONL manifest" in capsys.readouterr().err


# ------------------------------------------------------------------------ fusion bench


def test_fusion_bench_trains_heads_on_a_trimodal_manifest_in_one_command(tmp_path, trimodal, capsys):
    """CSV -> embedded modalities (pixels, log-mel statistics, MiniLM text + class text) -> trained
    heads on the base classes -> novel-class table, missing modalities and all."""
    from fewmm.bench.fusion import main

    out = tmp_path / "out"
    rc = main(["--task", f"manifest:{trimodal}", "--encoder", "image=pixels", "--encoder", "audio=logmel-stats",
               "--split-fractions", "0.4,0.2,0.4", "--ways", "3", "--shots", "1,5", "--episodes", "40", "--steps", "10",
               "--heads", "gmu,temperature", "--checkpoints", "", "--out", str(out), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    doc = json.loads((out / "fusion-manifest-m.json").read_text())
    fold = doc["folds"]["default"]
    assert fold["modalities"] == ["image", "audio", "text"]
    info = fold["info"]
    assert info["items_per_modality"] == {"image": 80, "audio": 80, "text": 40}
    assert info["splits"]["source"] == "seeded" and info["splits"]["fractions"] == [0.4, 0.2, 0.4]
    assert info["class_text"]["texts"]["seven"] == ["the handwritten and spoken digit seven"]
    assert doc["corruption"] == "noise:0" and doc["corrupt_modality"] == "audio"
    conds = {r["condition"] for r in doc["results"]}
    assert conds == {"clean", "audio-corrupt50", "image-missing50", "audio-missing50", "text-missing50"}
    heads = {r["head"] for r in doc["results"]}
    assert heads == {"single:image", "single:audio", "single:text", "avg-proto", "concat", "gmu", "temperature"}
    assert any("no proj[<m>] control for image, audio, text" in n for n in doc["notes"])
    clean = {(r["head"], r["shots"]): r for r in doc["results"] if r["condition"] == "clean"}
    # 3-way, novel classes eight, five, two, zero (seeded split); chance 33.3%. Raw pixels are exact on any CPU:
    # the measured values. Images carry the digit, so the fixed average is far above chance too: measured
    # 63.33 / 81.17 (1 / 5 shots); floors 10 points below (MiniLM's float sums may differ across machines).
    assert info["splits"]["class_names"]["novel"] == ["eight", "five", "two", "zero"]
    assert (clean[("single:image", 1)]["accuracy"], clean[("single:image", 5)]["accuracy"]) == (64.6667, 82.0)
    assert clean[("avg-proto", 1)]["accuracy"] > 53 and clean[("avg-proto", 5)]["accuracy"] > 71
    assert clean[("avg-proto", 1)]["queries"] == 5  # 10 items per novel class - 5 shots
    assert (out / "fusion-manifest-m.csv").is_file()


def test_fusion_bench_without_corruption_trains_the_single_modality_controls(tmp_path, trimodal, capsys):
    """--corruption none on a manifest where every item has both modalities: the proj[<m>]
    controls are trained (they once crashed on the missing corrupted table, after every head had
    trained, losing the run) and the results are written, with no corrupted condition."""
    from fewmm.bench.fusion import main

    rows = list(csv.DictReader(open(trimodal, encoding="utf-8")))
    both = [{"label": r["label"], "image": r["image"], "audio": r["audio"]} for r in rows if r["image"] and r["audio"]]
    m = trimodal.parent / "both.csv"
    with open(m, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["label", "image", "audio"])
        w.writeheader()
        w.writerows(both)
    out = tmp_path / "out"
    rc = main(["--task", f"manifest:{m}", "--encoder", "image=pixels", "--encoder", "audio=logmel-stats", "--class-text", "none",
               "--split-fractions", "0.4,0.2,0.4", "--ways", "2", "--shots", "1", "--episodes", "5", "--steps", "2",
               "--heads", "gmu", "--trainers", "protonet", "--corruption", "none", "--checkpoints", "", "--out", str(out), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    doc = json.loads((out / "fusion-manifest-both.json").read_text())
    heads = {r["head"] for r in doc["results"]}
    assert {"proj[image]", "proj[audio]", "gmu"} <= heads
    assert not any("corrupt" in r["condition"] for r in doc["results"])


def test_fusion_manifest_errors_name_the_split(tmp_path, trimodal):
    from fewmm.bench.fusion import main

    import io
    import contextlib

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(["--task", f"manifest:{trimodal}", "--encoder", "image=pixels", "--encoder", "audio=logmel-stats",
                   "--ways", "5", "--episodes", "5", "--steps", "2", "--checkpoints", "", "--out", str(tmp_path), "--quiet"])
    assert rc == 2
    assert "the base split has 6 classes" not in err.getvalue()
    assert "the novel split has 2 classes, fewer than --ways 5" in err.getvalue()
    with contextlib.redirect_stderr(err):
        assert main(["--task", "nope-task", "--out", str(tmp_path)]) == 2
    assert "unknown task; expected one of digits-av, esc50-text, or manifest:PATH" in err.getvalue()


# ------------------------------------------------------------------- backbone from scratch


def test_backbone_bench_trains_on_a_manifest(tmp_path, trimodal):
    """``--task manifest:PATH``: audio-conv4 on the audio items (the default when there is audio) and
    conv4 on the images, trained on the base classes and tested on the novel ones, same episodes
    for the trained, the random-init and the frozen backbones."""
    from fewmm.bench.backbone import main

    common = ["--task", f"manifest:{trimodal}", "--way", "3", "--shot", "2", "--query", "2", "--episodes", "4",
              "--eval-every", "2", "--val-episodes", "5", "--test-episodes", "20", "--split-fractions", "0.4,0.2,0.4",
              "--out", str(tmp_path), "--quiet", "--threads", "1"]
    assert main(common) == 0
    doc = json.loads((tmp_path / "manifest-m-protonet.json").read_text())
    proto = doc["protocol"]
    assert proto["modality"] == "audio" and proto["splits"]["class_names"]["novel"] == ["eight", "five", "two", "zero"]
    # 8 audio items in every class (every 5th row lacks audio); the validation classes 'nine' and 'seven'
    assert proto["items_per_class"] == {"train": 8, "val": 8, "test": 8} and proto["classes"]["val"] == ["nine", "seven"]
    assert {(r["method"], r["ways"], r["shots"], r["queries"]) for r in doc["results"]} == {
        (m, 4, k, q) for m in ("protonet-audio-conv4", "audio-conv4-random-init", "frozen logmel-stats")
        for k, q in ((1, 7), (5, 3))}
    # the image run from a --config file, whose manifest path is relative to the config file
    import os

    (tmp_path / "cfg").mkdir()
    rel = os.path.relpath(trimodal, tmp_path / "cfg")
    (tmp_path / "cfg" / "img.toml").write_text(f'task = "manifest:{rel}"\nbackbone = "conv4"\nbaselines = ["pixels"]\n',
                                               encoding="utf-8")
    assert main(["--config", str(tmp_path / "cfg" / "img.toml")] + common[2:] + ["--name", "img"]) == 0
    doc = json.loads((tmp_path / "img.json").read_text())
    assert doc["protocol"]["manifest"] == str(trimodal)
    assert doc["protocol"]["modality"] == "image" and doc["experiment"] == "image backbone from scratch"
    assert {r["method"] for r in doc["results"]} == {"protonet-conv4", "conv4-random-init", "frozen pixels"}


# ------------------------------------------------------------------------------ export


def test_exported_manifests_use_relative_paths_and_move_with_their_folder(tmp_path, data_root):
    from fewmm.data.__main__ import export_fewshot

    src = make_trimodal(tmp_path / "proj" / "data", data_root)
    table = D.load_manifest(src)
    train, test, n_tr, n_te = export_fewshot(table, shots=2, test=3, seed=0, out=tmp_path / "proj" / "split")
    assert (n_tr, n_te) == (20, 30)
    rows = list(csv.DictReader(open(train, encoding="utf-8")))
    paths = [r[m] for r in rows for m in ("image", "audio") if r[m]]
    assert paths and all(p.startswith("../data/") for p in paths), paths[:3]
    shutil.move(str(tmp_path / "proj"), str(tmp_path / "moved"))
    moved = D.load_manifest(tmp_path / "moved" / "split" / "train.csv")
    files = [str(p) for m in ("image", "audio") for p in moved.modalities[m] if p is not None]
    assert files and all(f.startswith(str(tmp_path / "moved" / "data")) for f in files)


# ------------------------------------------------- CLI argument checks (adversarial review, fix2)


@pytest.mark.parametrize("module", ["fewmm.bench.fusion", "fewmm.bench.backbone"])
@pytest.mark.parametrize("flag", ["--seed", "--split-seed"])
def test_negative_seed_is_refused_at_parsing_naming_the_flag(module, flag, capsys):
    import importlib

    with pytest.raises(SystemExit) as e:
        importlib.import_module(module).main([flag, "-1"])
    assert e.value.code == 2
    assert f"argument {flag}: must be >= 0 (numpy seeds are non-negative), got -1" in capsys.readouterr().err


@pytest.mark.parametrize("template, msg", [
    ("a {lab}", "the only field a template may use is {label}, it has {lab}"),
    ("{label} {}", "it has {}"),
    ("{label} {0}", "it has {0}"),
    ("a {label", "is not a valid template (expected '}' before end of string)"),
    ("a } {label}", "is not a valid template (Single '}' encountered"),
    ("{label:d}", "cannot be filled with a class name (Unknown format code 'd'"),
])
def test_fusion_class_text_template_is_checked_up_front(template, msg, capsys):
    from fewmm.bench.fusion import main

    with pytest.raises(SystemExit):
        main(["--task", "nope-task", "--class-text", template])
    err = capsys.readouterr().err
    assert f"--class-text {template!r}" in err and msg in err and "Traceback" not in err


def test_class_text_template_check_accepts_good_templates_and_names_class_text():
    from fewmm.tasks import TaskError
    from fewmm.tasks.manifest import check_label_template

    assert check_label_template("a photo of a {label} {{sic}}") == "a photo of a {label} {{sic}}"
    assert check_label_template("{label!r}") == "{label!r}"
    with pytest.raises(TaskError, match=r"class_text 'x \{y\}'"):
        check_label_template("x {y}")


@pytest.mark.parametrize("args, msg", [(["--shots", "1,1"], "--shots lists 1 more than once"),
                                       (["--heads", "gmu,concat,gmu"], "--heads lists gmu more than once")])
def test_fusion_duplicate_list_values_are_refused(args, msg, capsys):
    from fewmm.bench.fusion import main

    with pytest.raises(SystemExit):
        main(["--task", "nope-task", *args])
    assert msg in capsys.readouterr().err


def test_backbone_negative_seed_from_config_is_refused(tmp_path, capsys):
    from fewmm.bench.backbone import main

    cfg = tmp_path / "neg.toml"
    cfg.write_text("seed = -1\n", encoding="utf-8")  # a --config value bypasses argparse's type
    with pytest.raises(SystemExit):
        main(["--config", str(cfg)])
    assert "--seed must be an integer >= 0, got -1" in capsys.readouterr().err


def _image_manifest(folder, n_classes, n=6):
    """``folder/items.csv``: n images of each of the first n_classes scikit-learn digits."""
    from sklearn.datasets import load_digits

    d = load_digits()
    (folder / "img").mkdir(parents=True)
    lines = ["label,image"]
    for c in range(n_classes):
        for i, j in enumerate(np.flatnonzero(d.target == c)[:n]):
            Image.fromarray((d.images[j] * 255 / 16).astype(np.uint8)).save(folder / "img" / f"{c}_{i}.png")
            lines.append(f"{WORDS[c]},img/{c}_{i}.png")
    (folder / "items.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder / "items.csv"


def test_two_manifests_with_the_same_stem_keep_apart(tmp_path):
    """a/items.csv (3 classes) and b/items.csv (4 classes) in one suite: each row and each
    'datasets' entry names its own file (the name was the stem 'items' for both)."""
    from fewmm.bench.runner import Suite, path_tag, run_suite

    pa, pb = _image_manifest(tmp_path / "a", 3), _image_manifest(tmp_path / "b", 4)
    suite = Suite("two", [RunSpec(*parse_dataset(f"manifest:{p}"), encoders=["pixels"]) for p in (pa, pb)],
                  ["protonet"], [2], [1], queries=2, episodes=5)
    rep = run_suite(suite, out_dir=tmp_path / "out", stem="two", cache_dir=tmp_path / "c", quiet=True)
    doc = json.loads(rep.json_path.read_text())
    names = {p: f"items-{path_tag(p)}" for p in (pa, pb)}
    assert len(set(names.values())) == 2
    assert set(doc["datasets"]) == {f"{names[pa]}:all", f"{names[pb]}:all"}
    for p, k in ((pa, 3), (pb, 4)):
        ds = doc["datasets"][f"{names[p]}:all"]
        assert ds["options"]["path"] == str(p) and ds["n_classes"] == k and ds["n_items"] == 6 * k
        (row,) = [r for r in doc["results"] if r["dataset"] == names[p]]
        assert row["n_classes"] == k and row["n_items"] == 6 * k
    # one manifest alone keeps its plain name
    one = Suite("one", [RunSpec(*parse_dataset(f"manifest:{pa}"), encoders=["pixels"])], ["protonet"], [2], [1],
                queries=2, episodes=5)
    rep = run_suite(one, out_dir=tmp_path / "out", stem="one", cache_dir=tmp_path / "c", quiet=True)
    assert {r["dataset"] for r in rep.rows} == {"items"}


def test_fusion_checks_ways_and_shots_before_any_encoding(tmp_path, trimodal, monkeypatch, capsys):
    """--ways/--shots that the splits cannot serve fail from the labels alone, with the same message,
    before any encoder runs (it used to encode every modality first)."""
    import fewmm.tasks.manifest as TM
    from fewmm.bench.fusion import main

    def no_encoding(*a, **k):
        raise AssertionError("encoded before the episode sizes were checked")

    monkeypatch.setattr(TM, "embed_table", no_encoding)
    base = ["--task", f"manifest:{trimodal}", "--encoder", "image=pixels", "--encoder", "audio=logmel-stats",
            "--episodes", "5", "--steps", "2", "--checkpoints", "", "--out", str(tmp_path), "--quiet"]
    assert main(base + ["--ways", "5"]) == 2
    assert "the novel split has 2 classes, fewer than --ways 5" in capsys.readouterr().err
    # 10 items per class: 9 shots + 1 query fit, 10 shots do not (novel classes of the seeded 0.4/0.2/0.4 split)
    assert main(base + ["--ways", "2", "--split-fractions", "0.4,0.2,0.4", "--shots", "10"]) == 2
    assert "10-shot episodes with 1 queries need 11 items per novel class" in capsys.readouterr().err
    assert not (tmp_path / "fusion-manifest-m.json").exists()


def test_fusion_interrupt_keeps_rows_and_says_so_and_the_rerun_resumes_heads(tmp_path, trimodal, monkeypatch, capsys):
    """Ctrl-C (or SIGTERM, which raises the same KeyboardInterrupt under the CLI) during evaluation:
    one line, exit 130, the rows measured so far written with finished: false; the rerun says that
    each head's training resumed from its checkpoint. --patience and the head's display name too."""
    import fewmm.heads as H
    from fewmm.bench.fusion import main

    args = ["--task", f"manifest:{trimodal}", "--encoder", "image=pixels", "--encoder", "audio=logmel-stats",
            "--class-text", "none", "--split-fractions", "0.4,0.2,0.4", "--ways", "3", "--shots", "1", "--episodes", "5",
            "--steps", "6", "--patience", "0", "--heads", "temperature-ps", "--no-controls",
            "--checkpoints", str(tmp_path / "ck"), "--out", str(tmp_path / "out")]
    real, calls = H.evaluate_head, []

    def interrupting(*a, **k):
        if len(a[2]) == 5:  # a test episode set (--episodes 5; the reference is chosen on 200 validation episodes)
            calls.append(1)
            if len(calls) == 7:  # 6 heads scored by evaluate_head per (condition, shot): the clean cell is done, the next one is not
                raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(H, "evaluate_head", interrupting)
    assert main(args) == 130
    cap = capsys.readouterr()
    err = [ln for ln in cap.err.splitlines() if ln.startswith("interrupted")]
    assert "Traceback" not in cap.err and len(err) == 1
    js = tmp_path / "out" / "fusion-manifest-m.json"
    # the clean cell: 3 single-modality heads, 2 fixed fusions, temperature-ps with each default trainer
    # (protonet, fomaml, anil; the two MAML-family rows adapt per episode, not through evaluate_head)
    assert err[0].startswith(f"interrupted (Ctrl-C); the 8 row(s) measured so far are in {js} and ")
    assert f"head checkpoints in {tmp_path / 'ck'}" in err[0]
    doc = json.loads(js.read_text())
    assert doc["finished"] is False and len(doc["results"]) == 8 and {r["condition"] for r in doc["results"]} == {"clean"}
    assert sorted(r["trainer"] or "" for r in doc["results"] if r["head"] == "temperature-ps") == ["anil", "fomaml", "protonet"]
    assert "train temperature-ps" in cap.out + cap.err  # the progress bar names the head as listed, not 'temperature'
    assert "up to 6 steps each" in cap.out + cap.err
    tr = doc["training"]["default/temperature-ps"]
    assert tr["config"]["patience"] is None and tr["steps"] == 6 and tr["resumed_from_step"] is None
    monkeypatch.setattr(H, "evaluate_head", real)
    assert main(args) == 0
    cap = capsys.readouterr()
    said = cap.out + cap.err
    assert f"resuming from checkpoint {tmp_path / 'ck'}" in said and "at step 6 of 6" in said
    assert f"wrote {js} and {js.with_suffix('.csv')}" in said
    doc = json.loads(js.read_text())
    assert doc["finished"] is True and doc["training"]["default/temperature-ps"]["resumed_from_step"] == 6


def test_fusion_help_says_steps_is_a_maximum():
    from fewmm.bench.fusion import build_parser

    h = " ".join(build_parser().format_help().split())
    assert "maximum training steps per head" in h and "--patience PATIENCE" in h and "(default: 4)" in h


@pytest.mark.parametrize("n_classes, n_novel", [(7, 1), (8, 2), (22, 4), (23, 5)])
def test_readme_novel_class_counts_of_the_seeded_split(tmp_path, n_classes, n_novel):
    """The README: 5-way on ':novel' of a seeded 60/20/20 split needs 23 classes, 2-way needs 8."""
    from fewmm.data.manifest import class_splits

    names = [f"c{i:02d}" for i in range(n_classes)]
    (tmp_path / "m.csv").write_text("label,text\n" + "".join(f"{c},x {c}\n{c},y {c}\n" for c in names), encoding="utf-8")
    assert len(class_splits(D.load("manifest", path=tmp_path / "m.csv"), 0)["novel"]) == n_novel


# --- bad base splits and class texts of the class-text methods: refused in phase 1, before anything is encoded ---

def _text_manifest(path, classes, split=None, class_text=None, n=3):
    """A text manifest: ``n`` rows per class; ``split[c]`` the split column value, ``class_text[c]``
    the class text (default: the class name with spaces)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        cols = ["label", "text", "class_text"] + (["split"] if split else [])
        w = csv.writer(f)
        w.writerow(cols)
        for c in classes:
            k = n[c] if isinstance(n, dict) else n
            for i in range(k):
                w.writerow([c, f"item {i} of {c}", (class_text or {}).get(c, c.replace("_", " "))]
                           + ([split[c]] if split else []))
    return path


@pytest.fixture
def no_encoding(monkeypatch):
    """Any encoding fails the test: these errors must come before it."""
    import fewmm.bench.runner as R

    def boom(*a, **k):
        raise AssertionError("encoded before the check")
    monkeypatch.setattr(R, "embed_table", boom)


def _bench(tmp_path, capsys, *args):
    from fewmm.bench.cli import main

    rc = main(["--out", str(tmp_path / "out"), "--episodes", "5", "--queries", "1", "--ways", "2", "--shots", "1",
               "--encoder", "minilm-l6", *args])
    err = capsys.readouterr().err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # no half-written results
    return rc, err


ABCD = ["alpha", "beta", "gamma", "delta"]


def test_a_base_sharing_class_names_with_the_evaluated_classes_is_refused(tmp_path, capsys, no_encoding):
    """QA finding 1: the bridge (and meta-training, SimpleShot's statistics) would learn the test classes."""
    m = _text_manifest(tmp_path / "m.csv", ABCD, split={"alpha": "base", "beta": "base", "gamma": "novel", "delta": "novel"})
    rc, err = _bench(tmp_path, capsys, "--dataset", f"manifest:{m}", "--base", f"manifest:{m}:all",
                     "--methods", "protonet,zero-shot,simpleshot")
    assert rc == 2 and "Traceback" not in err
    assert (f"error: m: the base manifest:{m}:all shares 2 class(es) with the evaluated classes: 'delta', 'gamma'; "
            "the class-text bridge of zero-shot; SimpleShot's base statistics would learn the test classes. "
            "Name a base with none of the evaluated classes with --base") in err
    # a whole other manifest whose base rows hold an evaluated class (and a meta-trained method)
    o = _text_manifest(tmp_path / "o.csv", ["alpha", "gamma", "zeta"], split={"alpha": "base", "gamma": "base", "zeta": "novel"})
    rc, err = _bench(tmp_path, capsys, "--dataset", f"manifest:{m}", "--base", f"manifest:{o}:base",
                     "--methods", "protonet,protonet-head")
    assert rc == 2 and "shares 1 class(es) with the evaluated classes: 'gamma'; meta-training of protonet-head" in err
    # protonet alone: the base is still loaded and its overlap still refused (it is named for nothing else)
    rc, err = _bench(tmp_path, capsys, "--dataset", f"manifest:{m}", "--base", f"manifest:{o}:base", "--methods", "protonet")
    assert rc == 2 and "shares 1 class(es)" in err


def test_the_bridge_base_needs_two_classes_of_two_items_checked_before_encoding(tmp_path, capsys, no_encoding):
    """QA finding 5b/5c: was found after encoding, with class ids."""
    one = _text_manifest(tmp_path / "one.csv", ABCD[:3], split={"alpha": "base", "beta": "novel", "gamma": "novel"})
    rc, err = _bench(tmp_path, capsys, "--dataset", f"manifest:{one}", "--methods", "protonet,zero-shot")
    assert rc == 2 and "Traceback" not in err
    assert (f"error: one: the bridge of the class-text methods (zero-shot) trains on the base classes and needs at least 2, "
            f"but the base manifest:{one}:base has 1 ('alpha') with text items: name a base split with more "
            "classes/items with --base") in err and "split column" in err
    single = _text_manifest(tmp_path / "single.csv", ABCD, n={"alpha": 1, "beta": 3, "gamma": 3, "delta": 3},
                            split={"alpha": "base", "beta": "base", "gamma": "novel", "delta": "novel"})
    rc, err = _bench(tmp_path, capsys, "--dataset", f"manifest:{single}", "--methods", "protonet,zero-shot")
    assert rc == 2 and "needs at least 2 items per base class, but in the base manifest:" in err
    assert "the class(es) 'alpha' have a single item" in err


def test_a_base_of_another_modality_is_refused_before_encoding(tmp_path, capsys, no_encoding, data_root):
    """QA finding 5d: a text base for an image encoder was a raw ValueError from embed_table after encoding."""
    t = _text_manifest(tmp_path / "t.csv", ["x", "y"])
    rc, err = _bench(tmp_path, capsys, "--dataset", "digits", "--encoder", "pixels", "--base", f"manifest:{t}",
                     "--methods", "protonet,simpleshot", "--data-root", str(data_root))
    assert rc == 2 and "Traceback" not in err
    assert f"its base manifest:{t} (manifest/t) has only ['text'] items, but encoder 'pixels' embeds image" in err


def test_two_classes_with_one_class_text_are_named_before_encoding(tmp_path, capsys, no_encoding):
    """QA finding 5a: was "manifest-manifest/sametext: class texts must be distinct" after the first method's rows."""
    m = _text_manifest(tmp_path / "same.csv", ABCD, class_text={"beta": "alpha", "delta": "alpha"},
                       split={"alpha": "base", "beta": "base", "gamma": "novel", "delta": "novel"})
    rc, err = _bench(tmp_path, capsys, "--dataset", f"manifest:{m}", "--methods", "protonet,zero-shot")
    assert rc == 2 and "Traceback" not in err
    assert ("data set 'same' (manifest/same/novel): the class-text methods need a distinct class text per class, but "
            "classes share one: 'alpha', 'beta', 'delta' all have 'alpha'. Give each class its own text") in err


def test_an_infeasible_cell_of_a_class_split_says_only_the_novel_classes_count(tmp_path, capsys, no_encoding):
    """QA finding 11: "3-way episodes need 3 classes ..., only 2 have" on a 4-class data set, without saying why."""
    m = _text_manifest(tmp_path / "plain.csv", ABCD)  # no split column: a seeded 2 / 2 class-disjoint split
    rc, err = _bench(tmp_path, capsys, "--dataset", f"manifest:{m}", "--methods", "protonet,zero-shot", "--ways", "3")
    assert rc == 2 and "Traceback" not in err
    assert ("nothing to measure: infeasible: 3-way episodes need 3 classes with >= 2 items, only 2 have (only the 2 "
            "novel classes are drawn from; the base classes of the seeded class-disjoint split are left out)") in err


def test_base_equal_to_the_evaluated_data_names_the_bridge(tmp_path, capsys, no_encoding):
    """QA finding 11: with only class-text methods the message talked about meta-trained methods and SimpleShot."""
    m = _text_manifest(tmp_path / "plain.csv", ABCD)
    rc, err = _bench(tmp_path, capsys, "--dataset", f"manifest:{m}", "--base", f"manifest:{m}", "--methods", "protonet,zero-shot")
    assert rc == 2 and "Traceback" not in err
    assert (f"--base manifest:{m} is the evaluated data set itself, so whatever learns on the base would learn the test "
            "classes (the class-text bridge of zero-shot): name a class-disjoint split") in err
    assert "SimpleShot" not in err and "meta-trained" not in err
