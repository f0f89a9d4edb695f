"""fewmm.Adapter and `python -m fewmm.adapt`: fit / predict / explain / save / load, refusing
damaged or mismatched adapters, and a real-data accuracy floor (FSDD speakers, 5 shots)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from fewmm import Adapter, AdapterError
from fewmm.errors import DataError
from fewmm.heads import create as create_head

REPO = Path(__file__).resolve().parents[1]
ENC = {"image": "pixels", "audio": "logmel-stats"}
SR = 16000


def image(c: int, seed: int) -> np.ndarray:
    """28x28 uint8: class 0 horizontal stripes, 1 vertical stripes, 2 a centred square; plus noise."""
    r = np.random.default_rng(seed)
    x = np.zeros((28, 28), np.float32)
    if c == 0:
        x[::4] = 1
    elif c == 1:
        x[:, ::4] = 1
    else:
        x[8:20, 8:20] = 1
    x = np.clip(x + 0.25 * r.standard_normal(x.shape), 0, 1)
    return (255 * x).astype(np.uint8)


def tone(c: int, seed: int) -> np.ndarray:
    """0.5 s sine at 300 / 900 / 2700 Hz (by class) plus noise, float32 at 16 kHz."""
    r = np.random.default_rng(1000 + seed)
    t = np.arange(SR // 2) / SR
    return (0.5 * np.sin(2 * np.pi * (300 * 3**c) * t) + 0.05 * r.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """3 classes x 6 items, each with a PNG and a WAV; plus train / test manifests."""
    d = tmp_path_factory.mktemp("adapter_items")
    rows = []
    for c, name in enumerate(["ant", "bee", "cat"]):
        for i in range(6):
            img, wav = d / f"{name}{i}.png", d / f"{name}{i}.wav"
            Image.fromarray(image(c, 10 * c + i)).save(img)
            sf.write(wav, tone(c, 10 * c + i), SR)
            rows.append((name, img, wav))
    train = d / "train.csv"
    test = d / "test.csv"
    train.write_text("label,image,audio\n" + "".join(f"{n},{i.name},{w.name}\n" for n, i, w in rows if int(i.stem[-1]) < 3))
    # test rows: half image only, half audio only
    test.write_text("label,image,audio\n" + "".join(
        f"{n},{i.name if int(i.stem[-1]) % 2 else ''},{'' if int(i.stem[-1]) % 2 else w.name}\n" for n, i, w in rows if int(i.stem[-1]) >= 3))
    (d / "a folder").mkdir()
    return {"dir": d / "a folder", "rows": rows, "train": train, "test": test}


def train_items(files):
    items = [{"image": i, "audio": w} for n, i, w in files["rows"] if int(i.stem[-1]) < 3]
    labels = [n for n, i, w in files["rows"] if int(i.stem[-1]) < 3]
    return items, labels


def query_items(files):
    return [{"image": i} if int(i.stem[-1]) % 2 else {"audio": w} for n, i, w in files["rows"] if int(i.stem[-1]) >= 3]


def test_fit_predict_explain_shapes_and_contract(files):
    items, labels = train_items(files)
    ad = Adapter(encoders=ENC)
    assert ad.fit(items, labels) is ad
    assert list(ad.classes_) == ["ant", "bee", "cat"] and ad.modalities_ == ("image", "audio") and ad.n_support_ == 9
    q = query_items(files)
    proba, w = ad.predict_proba(q), ad.explain(q)
    assert proba.shape == (9, 3) and proba.dtype == np.float32 and np.allclose(proba.sum(1), 1, atol=1e-5)
    assert w.shape == (9, 2) and ad.weight_names_ == ("image", "audio")
    # an item with only one modality puts all its weight there
    has_img = np.array(["image" in it for it in q])
    assert np.allclose(w[has_img], [1, 0]) and np.allclose(w[~has_img], [0, 1])
    truth = [n for n, i, _ in files["rows"] if int(i.stem[-1]) >= 3]
    assert (ad.predict(q) == np.array(truth)).mean() == 1.0  # well separated toy classes
    assert ad.get_params()["head"] == "avg-proto"


def test_a_class_without_items_of_a_modality_is_warned_about_at_fit(files):
    """'bee' has no training image: an image-only item can never be predicted as 'bee' (the head
    still gives probabilities summing to 1 over ant and cat), so fit says so, naming the class and
    the modality; full coverage gives no warning."""
    import warnings

    items, labels = train_items(files)
    items = [{"audio": it["audio"]} if lab == "bee" else it for it, lab in zip(items, labels)]
    with pytest.warns(UserWarning, match=r"class\(es\) \['bee'\] have no training item with image: an item that has only "
                                         r"image can never be predicted as them"):
        Adapter(encoders=ENC).fit(items, labels)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Adapter(encoders=ENC).fit(*train_items(files))


def test_item_kinds_paths_arrays_pil_waveforms(files):
    items, labels = train_items(files)
    ad = Adapter(encoders=ENC).fit(items, labels)
    n, img, wav = files["rows"][4]  # an "ant" item not in training
    arr = np.asarray(Image.open(img))
    wave, sr = sf.read(wav, dtype="float32")
    ref = ad.predict_proba([{"image": img}, {"audio": wav}])
    # the same payloads as a path string, array, PIL image, (waveform, sr) tuple
    same = ad.predict_proba([str(img), arr, Image.open(img), (wave, sr)])
    assert np.allclose(same[0], ref[0]) and np.allclose(same[1], ref[0]) and np.allclose(same[2], ref[0])
    assert np.allclose(same[3], ref[1], atol=1e-6)
    # a manifest as items (labels from it), and the score
    assert ad.score(files["test"]) == 1.0


def test_bad_items_are_all_listed(files, tmp_path):
    items, labels = train_items(files)
    ad = Adapter(encoders=ENC).fit(items, labels)
    bad_png = tmp_path / "broken.png"
    bad_png.write_bytes(b"not a png")
    with pytest.raises(DataError) as e:
        ad.predict([tmp_path / "missing.wav", str(tmp_path / "x.docx"), 3.5])
    msg = str(e.value)
    assert "3 bad items" in msg and "missing.wav: file not found" in msg and "x.docx: looks like a file path" in msg and "float" in msg
    with pytest.raises(DataError, match=r"(?s)1 unreadable item.*broken.png \(image\): not a readable image"):
        ad.predict([bad_png, files["rows"][0][1]])
    with pytest.raises(DataError, match="none of the adapter's modalities"):
        ad.predict(["just some text"])
    with pytest.raises(DataError, match="one label per item"):
        Adapter(encoders=ENC).fit(items, labels[:-1])
    with pytest.raises(DataError, match="at least 2 classes"):
        Adapter(encoders=ENC).fit(items, ["ant"] * len(items))
    with pytest.raises(DataError, match="wrap a single item"):
        ad.predict(str(files["rows"][0][1]))
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        Adapter().predict(["x.png"])


@pytest.mark.parametrize("kind", ["avg-proto", "concat", "linear-probe", "trained-gmu"])
def test_save_load_round_trip_identical(files, tmp_path, kind):
    items, labels = train_items(files)
    q = query_items(files)
    if kind == "linear-probe":
        items = [it["audio"] for it in items]
        q = [w for _, i, w in files["rows"]]
        ad = Adapter(encoders={"audio": "logmel-stats"}, head="linear-probe", head_params={"C": 0.5})
    elif kind == "trained-gmu":  # a head object with parameters (as train_head returns it)
        head = create_head("gmu", {"image": 784, "audio": 128}, ("image", "audio"), seed=3, hidden=16)
        ad = Adapter(encoders=ENC, head=head)
    else:
        ad = Adapter(encoders=ENC, head=kind)
    ad.fit(items, labels)
    p0, w0 = ad.predict_with_weights(q)
    ad.save(tmp_path / "ad")
    assert sorted(os.listdir(tmp_path / "ad")) == ["adapter.json", "adapter.safetensors"]
    cfg = json.loads((tmp_path / "ad" / "adapter.json").read_text())
    assert cfg["format_version"] == 1 and cfg["classes"] == ["ant", "bee", "cat"]
    assert cfg["encoders"]["audio"]["name"] == "logmel-stats"
    back = Adapter.load(tmp_path / "ad")
    p1, w1 = back.predict_with_weights(q)
    assert np.array_equal(p0, p1) and np.array_equal(w0, w1)
    assert list(back.classes_) == list(ad.classes_)


def test_int_labels_survive_save_load(files, tmp_path):
    items, labels = train_items(files)
    y = [{"ant": 3, "bee": 7, "cat": 11}[s] for s in labels]
    Adapter(encoders=ENC).fit(items, y).save(tmp_path / "a")
    back = Adapter.load(tmp_path / "a")
    assert back.classes_.dtype.kind == "i" and list(back.classes_) == [3, 7, 11]


def test_fresh_process_predicts_the_same(files, tmp_path):
    items, labels = train_items(files)
    ad = Adapter(encoders=ENC).fit(items, labels)
    q = [str(p) for _, p, _ in files["rows"]] + [str(w) for _, _, w in files["rows"]]
    before = ad.predict_proba(q)
    ad.save(tmp_path / "ad")
    code = (
        "import json, sys; from fewmm import Adapter; "
        "ad = Adapter.load(sys.argv[1]); print(json.dumps(ad.predict_proba(json.loads(sys.argv[2])).tolist()))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "ad"), json.dumps(q)], capture_output=True, text=True,
                         cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr
    after = np.array(json.loads(out.stdout), dtype=np.float32)
    assert np.array_equal(before, after)


def test_load_refuses_damaged_and_mismatched(files, tmp_path):
    items, labels = train_items(files)
    src = Adapter(encoders=ENC).fit(items, labels).save(tmp_path / "good")

    def copy(name):
        import shutil

        d = tmp_path / name
        shutil.copytree(src, d)
        return d

    d = copy("tampered")
    raw = bytearray((d / "adapter.safetensors").read_bytes())
    raw[-5] ^= 0x01
    (d / "adapter.safetensors").write_bytes(bytes(raw))
    with pytest.raises(AdapterError, match="sha256 differs"):
        Adapter.load(d)

    d = copy("truncated")
    raw = (d / "adapter.safetensors").read_bytes()
    (d / "adapter.safetensors").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(AdapterError, match="truncated"):
        Adapter.load(d)

    d = copy("missing")
    (d / "adapter.safetensors").unlink()
    with pytest.raises(AdapterError, match="missing"):
        Adapter.load(d)

    d = copy("newer")
    cfg = json.loads((d / "adapter.json").read_text())
    cfg["format_version"] = 99
    (d / "adapter.json").write_text(json.dumps(cfg))
    with pytest.raises(AdapterError, match="newer fewmm"):
        Adapter.load(d)

    d = copy("weights")
    cfg = json.loads((d / "adapter.json").read_text())
    cfg["encoders"]["image"]["weights_id"] = "0123abcd" * 8
    (d / "adapter.json").write_text(json.dumps(cfg))
    with pytest.raises(AdapterError, match="image encoder 'pixels' installed here has weights_id"):
        Adapter.load(d)

    d = copy("badjson")
    (d / "adapter.json").write_text('{"format": "fewmm-adapter", "format_ver')
    with pytest.raises(AdapterError, match="not a readable adapter config"):
        Adapter.load(d)

    with pytest.raises(AdapterError, match="no adapter here"):
        Adapter.load(tmp_path / "nothing")


def test_hub_mixin_local_folder(files, tmp_path):
    items, labels = train_items(files)
    ad = Adapter(encoders=ENC).fit(items, labels)
    ad.save_pretrained(tmp_path / "hub")
    assert (tmp_path / "hub" / "adapter.json").is_file()
    back = Adapter.from_pretrained(str(tmp_path / "hub"))
    q = query_items(files)
    assert np.array_equal(ad.predict_proba(q), back.predict_proba(q))


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "fewmm.adapt", *map(str, args)], capture_output=True, text=True, cwd=REPO,
                          timeout=300)


def test_cli_fit_predict_eval(files, tmp_path):
    out = tmp_path / "cli_ad"
    r = run_cli("fit", "--manifest", files["train"], "--out", out, "--encoder", "image=pixels", "--encoder", "audio=logmel-stats")
    assert r.returncode == 0, r.stderr
    assert "9 items of 3 classes" in r.stdout
    img = files["rows"][5][1]
    r = run_cli("predict", out, "--format", "json", img)  # files after an option
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert rows[0]["label"] == "ant" and set(rows[0]["probabilities"]) == {"ant", "bee", "cat"}
    assert rows[0]["modality_weights"] == {"image": 1.0, "audio": 0.0}
    r = run_cli("predict", out, "--format", "csv", "--manifest", files["test"])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0].split(",") == ["item", "label", "probability", "p:ant", "p:bee", "p:cat", "w:image", "w:audio"] and len(lines) == 10
    r = run_cli("eval", out, "--manifest", files["test"], "--json", tmp_path / "ev.json", "--confusion-png", tmp_path / "cm.png")
    assert r.returncode == 0, r.stderr
    ev = json.loads((tmp_path / "ev.json").read_text())
    assert ev["accuracy_percent"] == 100.0 and ev["n_items"] == 9 and ev["confusion_matrix"] == [[3, 0, 0], [0, 3, 0], [0, 0, 3]]
    assert 0 < ev["ci95_low_percent"] < 100 and (tmp_path / "cm.png").stat().st_size > 1000
    # bad files: non-zero exit, each listed, no traceback
    r = run_cli("predict", out, tmp_path / "nope.wav", tmp_path / "x.xyz")
    assert r.returncode == 2 and "nope.wav: file not found" in r.stderr and "x.xyz" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("predict", tmp_path / "not_an_adapter", img)
    assert r.returncode == 2 and "no adapter here" in r.stderr


@pytest.mark.needs_data
def test_fsdd_speakers_five_shots_real_data(data_root, tmp_path):
    """FSDD speaker ID (6 speakers), 5 training clips per speaker, 20 test clips per speaker
    (seed 0), log-mel statistics + linear probe: the README walkthrough. Deterministic (seeded
    manifests, fixed features, scikit-learn's Newton-Cholesky to a tight tolerance): measured 82.50%
    (99/120; 95% Wilson CI 74.7-88.3; chance 16.7), asserted exactly."""
    from fewmm.data import load
    from fewmm.data.__main__ import export_fewshot

    table = load("fsdd", root=data_root, label="speaker")
    tr, te, n_tr, n_te = export_fewshot(table, shots=5, test=20, seed=0, out=tmp_path)
    assert (n_tr, n_te) == (30, 120)
    ad = Adapter(encoders={"audio": "logmel-stats"}, head="linear-probe").fit(tr)
    acc = 100 * ad.score(te)
    assert round(acc * 120 / 100) == 99 and acc == pytest.approx(82.5), acc


@pytest.mark.parametrize("head", ["avg-proto", "gmu"])
def test_single_query_fast_path_equals_batch(files, head):
    """One item at a time goes through the traced scorer; it equals the batched eager head."""
    items, labels = train_items(files)
    h = head if head == "avg-proto" else create_head("gmu", {"image": 784, "audio": 128}, ("image", "audio"), seed=1, hidden=16)
    ad = Adapter(encoders=ENC, head=h).fit(items, labels)
    q = query_items(files) + [{"image": i, "audio": w} for _, i, w in files["rows"][:3]]
    p_batch, w_batch = ad.predict_with_weights(q)
    singles = [ad.predict_with_weights([it]) for it in q]
    assert isinstance(ad._fast, torch.jit.ScriptFunction)  # the traced path ran
    assert singles[0][0].shape == (1, 3) and singles[0][1].shape == (1, 2)
    np.testing.assert_allclose(np.concatenate([p for p, _ in singles]), p_batch, rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.concatenate([w for _, w in singles]), w_batch, rtol=0, atol=1e-6)


def test_bad_arguments_and_labels_are_refused(files, tmp_path):
    items, labels = train_items(files)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        Adapter(encoders=ENC, batch_size=-1).fit(items, labels)
    with pytest.raises(ValueError, match="not a torch device"):
        Adapter(encoders=ENC, device="bogus").fit(items, labels)
    with pytest.raises(ValueError, match="encoders must be a dict"):
        Adapter(encoders="pixels").fit(items, labels)
    with pytest.raises(ValueError, match="encoders is an empty dict: name at least one modality -> encoder"):
        Adapter(encoders={}).fit(items, labels)
    with pytest.raises(DataError, match=r"encoders name \['audio'\], but no training item has audio"):
        Adapter(encoders=ENC).fit([it["image"] for it in items], labels)
    with pytest.raises(DataError, match="labels mix types"):
        Adapter(encoders=ENC).fit(items, ["a", 1, "b"] * 3)
    with pytest.raises(DataError, match="bool"):
        Adapter(encoders=ENC).fit(items, [True, False, True] * 3)
    with pytest.raises(ValueError, match="temperature must be a finite number"):
        Adapter(encoders=ENC, head_params={"temperature": float("inf")}).fit(items, labels)
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['bogus'\] for 'avg-proto' \(known: temperature\)"):
        Adapter(encoders=ENC, head_params={"bogus": 1}).fit(items, labels)
    with pytest.raises(ValueError, match="'mahalanobis-text' scores \\[raw item \\| joint item-text\\] features"):
        Adapter(encoders={"audio": "logmel-stats"}, head="mahalanobis-text").fit(items, labels)  # never plain prototypes
    ad = Adapter(encoders=ENC).fit(items, labels)
    with pytest.raises(DataError, match="is a directory"):
        ad.predict([str(files["dir"])])
    with pytest.raises(DataError, match=r"score labels: classes \['zebra'\] are missing from the support set"):
        ad.score(items[:1], ["zebra"])
    with pytest.raises(DataError, match="wrap a single image in a list"):
        ad.predict(np.zeros((28, 28), np.uint8))
    (tmp_path / "afile").write_text("x")
    with pytest.raises(AdapterError, match="exists and is not a folder"):
        ad.save(tmp_path / "afile")


def test_load_refuses_edited_config(files, tmp_path):
    import shutil

    items, labels = train_items(files)
    src = Adapter(encoders=ENC).fit(items, labels).save(tmp_path / "good")
    for key, value, msg in (("classes", ["bee", "ant", "cat"], "'classes' must be a sorted list"),
                            ("classes", ["ant", "bee", "cat", "dog"], "every one of the 4 classes"),
                            ("classes", "abc", "'classes' must be"),
                            ("encoders", ["pixels"], "'encoders' must be"),
                            ("head", "avg-proto", "'head' must be"),
                            ("format_version", True, "'format_version' must be an integer")):
        d = tmp_path / f"edit-{key}-{len(str(value))}"
        shutil.copytree(src, d)
        cfg = json.loads((d / "adapter.json").read_text())
        cfg[key] = value
        (d / "adapter.json").write_text(json.dumps(cfg))
        with pytest.raises(AdapterError, match=msg):
            Adapter.load(d)
    d = tmp_path / "escape"
    shutil.copytree(src, d)
    cfg = json.loads((d / "adapter.json").read_text())
    cfg["tensors"]["file"] = "../good/adapter.safetensors"
    (d / "adapter.json").write_text(json.dumps(cfg))
    with pytest.raises(AdapterError, match="a file name inside the adapter folder"):
        Adapter.load(d)


def test_cli_refuses_bad_outputs_before_working(files, tmp_path):
    out = tmp_path / "ad"
    assert run_cli("fit", "--manifest", files["train"], "--out", out, "--encoder", "image=pixels", "--encoder", "audio=logmel-stats").returncode == 0
    wav = files["rows"][0][2]
    before = wav.read_bytes()
    r = run_cli("predict", out, wav, "--output", wav)
    assert r.returncode == 2 and "refusing" in r.stderr and wav.read_bytes() == before
    r = run_cli("eval", out, "--manifest", files["test"], "--json", tmp_path / "missing" / "e.json")
    assert r.returncode == 2 and "does not exist" in r.stderr and "accuracy" not in r.stdout
    r = run_cli("fit", "--manifest", files["rows"][0][1], "--out", tmp_path / "x")
    assert r.returncode == 2 and "expected a manifest file" in r.stderr
