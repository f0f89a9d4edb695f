"""Tests of fewmm.data.load_manifest: mixed modalities, and one error listing every problem."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

import fewmm.data as D
from fewmm.errors import DataError


def _png(path, value=0, size=(5, 7)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size, value, np.uint8)).save(path)


def _wav(path, sr=8000, n=400):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.linspace(-0.5, 0.5, n), sr, subtype="PCM_16")


@pytest.fixture
def files(tmp_path):
    _png(tmp_path / "img" / "a.png", 10)
    _png(tmp_path / "img" / "b.png", 200)
    _wav(tmp_path / "snd" / "a.wav")
    _wav(tmp_path / "snd" / "c.wav", sr=16000)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "b.txt").write_text("a note from a file", encoding="utf-8")
    return tmp_path


def test_mixed_modalities_csv(files):
    absolute_png = files / "img" / "b.png"
    (files / "m.csv").write_text(
        "label,image,audio,text,source\n"
        "cat,img/a.png,snd/a.wav,a small cat,x\n"
        f"dog,{absolute_png},,notes/b.txt,y\n"
        "dog,,snd/c.wav,,z\n"
        "bird,,,just text,w\n",
        encoding="utf-8",
    )
    t = D.load_manifest(files / "m.csv")
    assert t.name == "manifest/m" and len(t) == 4
    assert t.class_names == ["bird", "cat", "dog"]
    assert t.labels.tolist() == [1, 2, 2, 0]
    assert t.mask("image").tolist() == [True, True, False, False]
    assert t.mask("audio").tolist() == [True, False, True, False]
    assert t.mask("text").tolist() == [True, True, False, True]
    assert t.modalities["text"][1] == "a note from a file"
    assert t.modalities["text"][3] == "just text"
    assert t.modalities["image"][1].path == absolute_png
    assert D.read_image(t.modalities["image"][0]).tolist() == np.full((5, 7), 10).tolist()
    assert D.read_audio(t.modalities["audio"][2]).sample_rate == 16000
    assert t.meta["source"].tolist() == ["x", "y", "z", "w"]
    assert t.meta["row"].tolist() == [1, 2, 3, 4]
    assert t.ids[0] == "1:img/a.png" and t.ids[2] == "3:snd/c.wav" and t.ids[3].startswith("4:text-")
    assert D.load_manifest(files / "m.csv").ids == t.ids  # stable
    assert len(t.info["manifest_sha256"]) == 64
    # also through fewmm.data.load
    assert D.load("manifest", path=files / "m.csv").ids == t.ids


def test_jsonl_manifest(files):
    lines = [
        {"label": "cat", "image": "img/a.png"},
        {"label": 3, "audio": "snd/a.wav", "id": "clip-a"},
        {"label": "cat", "text": "meow"},
    ]
    (files / "m.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n\n", encoding="utf-8")
    t = D.load_manifest(files / "m.jsonl", name="mine")
    assert t.name == "mine" and t.class_names == ["3", "cat"]
    assert t.ids[1] == "clip-a"
    assert t.mask("image").tolist() == [True, False, False]
    assert t.mask("audio").tolist() == [False, True, False]
    assert t.mask("text").tolist() == [False, False, True]


def test_all_problems_in_one_error(files):
    (files / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    (files / "bad.wav").write_bytes(b"RIFF....WAVEnot really a wav")
    (files / "m.csv").write_text(
        "label,image,audio\n"
        "cat,img/a.png,\n"          # line 2: fine
        ",img/a.png,\n"              # line 3: empty label
        "dog,,\n"                    # line 4: no modality
        "dog,img/missing.png,\n"     # line 5: missing file
        "dog,img/a.svg,\n"           # line 6: unknown image extension
        "dog,bad.png,\n"             # line 7: corrupt png
        "dog,,bad.wav\n"             # line 8: corrupt wav
        "dog,,snd/a.mp4\n",          # line 9: unknown audio extension
        encoding="utf-8",
    )
    with pytest.raises(DataError) as ei:
        D.load_manifest(files / "m.csv")
    msg = str(ei.value)
    assert "7 problems" in msg and "header as line 1" in msg
    expected = [
        "line 3 (data row 2), column 'label': empty label",
        "line 4 (data row 3): no modality given",
        "line 5 (data row 4), column 'image': img/missing.png: file not found",
        "line 6 (data row 5), column 'image': img/a.svg: unknown image file extension '.svg'",
        "line 7 (data row 6), column 'image': bad.png: not a readable image",
        "line 8 (data row 7), column 'audio': bad.wav: not a readable audio file",
        "line 9 (data row 8), column 'audio': snd/a.mp4: unknown audio file extension '.mp4'",
    ]
    for e in expected:
        assert e in msg, f"missing {e!r} in:\n{msg}"
    assert "line 2 " not in msg


def test_missing_label_and_modality_columns(tmp_path):
    (tmp_path / "m.csv").write_text("name,path\ncat,a.png\n", encoding="utf-8")
    with pytest.raises(DataError) as ei:
        D.load_manifest(tmp_path / "m.csv")
    msg = str(ei.value)
    assert "2 problems" in msg
    assert "no 'label' column" in msg and "no modality column" in msg


def test_bad_jsonl_line_and_duplicate_ids(files):
    (files / "m.jsonl").write_text(
        '{"label": "a", "text": "x", "id": "k"}\n{oops\n{"label": "b", "text": "y", "id": "k"}\n',
        encoding="utf-8",
    )
    with pytest.raises(DataError) as ei:
        D.load_manifest(files / "m.jsonl")
    msg = str(ei.value)
    assert "line 2: not valid JSON" in msg
    assert "line 3 (data row 2), column 'id': duplicate id 'k'" in msg


def test_manifest_not_found(tmp_path):
    with pytest.raises(DataError, match="manifest not found"):
        D.load_manifest(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="needs path="):
        D.load("manifest")


def test_duplicate_rows_and_missing_txt_paths_are_reported(tmp_path):
    import pytest

    from fewmm.data import load_manifest
    from fewmm.errors import DataError

    m = tmp_path / "m.csv"
    m.write_text("label,text\na,hello there\na,hello there\nb,notes/missing.txt\n")
    with pytest.raises(DataError) as e:
        load_manifest(m)
    msg = str(e.value)
    assert "line 3 (data row 2): duplicate of data row 1" in msg
    assert "notes/missing.txt: looks like a .txt path but no such file" in msg


def test_jsonl_numeric_labels_are_one_class_and_bools_rejected(files):
    m = files / "m.jsonl"
    m.write_text('{"label": 1, "text": "one apple"}\n{"label": 1.0, "text": "one pear"}\n{"label": 2, "text": "two figs"}\n')
    t = D.load_manifest(m)
    assert t.class_names == ["1", "2"] and t.labels.tolist() == [0, 0, 1]
    m.write_text('{"label": true, "text": "yes"}\n{"label": 1.5, "text": "one and a half"}\n')
    with pytest.raises(DataError) as e:
        D.load_manifest(m)
    assert "line 1, column 'label': true is not a label" in str(e.value) and "line 2, column 'label': 1.5" in str(e.value)


@pytest.mark.parametrize("header, dup, cols", [
    ("label,class_text,text,class_text", "'class_text'", "[2, 4]"),
    ("label,label,text", "'label'", "[1, 2]"),
])
def test_a_repeated_header_column_is_refused(tmp_path, header, dup, cols):
    """QA finding 3: csv rows as dicts kept the LAST of two same-named columns, silently."""
    p = tmp_path / "m.csv"
    p.write_text(header + "\n" + "\n".join(",".join(f"v{i}{j}" for j in range(len(header.split(",")))) for i in range(4)) + "\n")
    with pytest.raises(DataError) as e:
        D.load_manifest(p)
    assert str(e.value) == (f"{p}: the header names column(s) {dup} more than once (columns {cols}); each column must "
                            "appear once: rename or remove the extra one")


def test_a_repeated_jsonl_key_is_reported_with_its_line(tmp_path):
    """The JSONL form of QA finding 3: json.loads keeps the last of two same keys, silently."""
    p = tmp_path / "m.jsonl"
    p.write_text('{"label": "a", "text": "x"}\n{"label": "a", "label": "b", "text": "y"}\n{"label": "b", "text": "z"}\n')
    with pytest.raises(DataError, match=r"line 2: the key\(s\) 'label' appear more than once in the object; each key "
                                        "must appear once"):
        D.load_manifest(p)
