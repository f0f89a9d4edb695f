import csv
import json
import subprocess
import sys

import pytest

from fewmm.bench.cli import main


def run(tmp_path, *args):
    return main([*args, "--out", str(tmp_path / "res"), "--cache-dir", str(tmp_path / "cache"), "--quiet"])


def test_flags_run_writes_reproducible_json_and_csv(tmp_path):
    rc = run(tmp_path, "--dataset", "digits", "--encoder", "pixels", "--methods", "protonet,knn",
             "--ways", "5", "--shots", "1,5", "--queries", "10", "--episodes", "50", "--seed", "3", "--name", "a")
    assert rc == 0
    doc = json.loads((tmp_path / "res" / "a.json").read_text())
    assert doc["finished"] is True and doc["seed"] == 3 and doc["episodes"] == 50
    assert doc["command"].startswith("python -m fewmm.bench --dataset digits")
    assert doc["environment"]["fewmm_version"] and "torch" in doc["environment"]["packages"]
    assert doc["encoders"]["pixels"]["weights_id"] == "none"
    rows = doc["results"]
    assert [(r["method"], r["shots"]) for r in rows] == [("protonet", 1), ("knn", 1), ("protonet", 5), ("knn", 5)]
    for r in rows:
        assert r["episodes"] == 50 and r["queries_per_episode"] == 50 and r["total_queries"] == 2500
    # measured (deterministic: raw pixels, seeded episodes; the JSON rounds to 4 decimals):
    # accuracy = correct / 2500 queries, e.g. 77.16 = 1929 / 2500
    assert [r["accuracy"] for r in rows] == [77.16, 76.56, 89.68, 92.0]
    assert [r["ci95"] for r in rows] == [2.4309, 2.5144, 1.7792, 1.5397]
    assert rows[1]["paired_ref"] == rows[3]["paired_ref"] == "protonet"
    assert (rows[1]["paired_delta"], rows[1]["paired_ci95"]) == (-0.6, 1.0401)
    assert (rows[3]["paired_delta"], rows[3]["paired_ci95"]) == (2.32, 1.4532)
    assert "paired_delta" not in rows[0] and "paired_delta" not in rows[2]
    with open(tmp_path / "res" / "a.csv") as f:
        csv_rows = list(csv.DictReader(f))
    assert len(csv_rows) == 4 and float(csv_rows[0]["accuracy"]) == pytest.approx(rows[0]["accuracy"], abs=1e-4)
    # same seed -> same numbers (features now come from the cache)
    assert run(tmp_path, "--dataset", "digits", "--encoder", "pixels", "--methods", "protonet,knn", "--shots", "1,5",
               "--queries", "10", "--episodes", "50", "--seed", "3", "--name", "b") == 0
    again = json.loads((tmp_path / "res" / "b.json").read_text())["results"]
    assert [r["accuracy"] for r in again] == [r["accuracy"] for r in rows]


def test_config_file_equals_flags(tmp_path):
    cfg = tmp_path / "s.toml"
    cfg.write_text('name = "s"\nmethods = ["protonet"]\nways = [5]\nshots = [1]\nqueries = 10\nepisodes = 40\nseed = 1\n'
                   '[[run]]\ndataset = "digits"\nencoders = ["pixels"]\n')
    assert run(tmp_path, "--config", str(cfg), "--name", "c") == 0
    assert run(tmp_path, "--dataset", "digits", "--encoder", "pixels", "--methods", "protonet", "--shots", "1",
               "--queries", "10", "--episodes", "40", "--seed", "1", "--name", "f") == 0
    c = json.loads((tmp_path / "res" / "c.json").read_text())["results"]
    f = json.loads((tmp_path / "res" / "f.json").read_text())["results"]
    assert c[0]["accuracy"] == f[0]["accuracy"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dataset", "omniglott"], "unknown data set 'omniglott'. Did you mean 'omniglot'"),
        (["--dataset", "digits", "--encoder", "effnet"], "unknown encoder 'effnet'"),
        (["--dataset", "digits", "--methods", "protonet,maml9"], "unknown method 'maml9'"),
        (["--dataset", "digits", "--methods", "protonet,tip-adapter", "--text-encoder", "pixels"],
         "text encoder 'pixels' (--text-encoder / text_encoder) embeds image, not text"),
        (["--dataset", "digits", "--methods", "protonet,lp++", "--text-encoder", "minilm"], "unknown encoder 'minilm'"),
        (["--dataset", "digits", "--encoder", "pixels", "--shots", "1", "--queries", "400", "--episodes", "2"],
         "need 401 items per class"),
        (["--dataset", "digits", "--encoder", "minilm-l6"], "embeds text, but data set 'digits/all' has only ['image']"),
        (["--dataset", "digits", "--shots", "0"], "--shots must be positive"),
        (["--dataset", "digits", "--seed", "-1"], "--seed must be >= 0"),
        (["--dataset", "digits", "--ways", "1"], "--ways must be >= 2"),
        (["--dataset", "digits", "--shots", "1,1"], "--shots lists 1 more than once"),
        (["--dataset", "digits", "--methods", "protonet,knn,protonet"], "--methods lists protonet more than once"),
        (["--dataset", "digits,digits"], "--dataset lists digits more than once"),
        (["--config", "/nonexistent.toml"], "does not exist"),
    ],
)
def test_bad_input_exits_2_with_message(tmp_path, capsys, args, message):
    assert run(tmp_path, *args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_missing_data_set_is_one_clear_error(tmp_path, capsys):
    rc = main(["--dataset", "omniglot:evaluation", "--data-root", str(tmp_path / "nothing"), "--out", str(tmp_path)])
    assert rc == 2
    err = capsys.readouterr().err
    assert "omniglot" in err and str(tmp_path / "nothing") in err and "FEWMM_DATA" in err


def test_module_entry_point_lists_names():
    out = subprocess.run([sys.executable, "-m", "fewmm.bench", "--list"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0
    assert "omniglot" in out.stdout and "protonet" in out.stdout and "efficientnet-lite2" in out.stdout
    text_line = next(ln for ln in out.stdout.splitlines() if ln.strip().startswith("class text"))
    assert all(m in text_line for m in ("zero-shot", "tip-adapter", "tip-adapter-f", "clip-adapter", "cross-modal-lp", "lp++",
                                        "zs-lp"))


def test_unwritable_out_fails_before_any_work(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["--dataset", "digits", "--encoder", "pixels", "--episodes", "2", "--out", str(afile), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "cannot create the results folder" in err and "Traceback" not in err


@pytest.mark.parametrize("name", ["../escape", "sub/x", ".."])
def test_a_path_as_name_is_refused_naming_name_not_out(tmp_path, capsys, name):
    assert main(["--dataset", "digits", "--encoder", "pixels", "--episodes", "2", "--out", str(tmp_path), "--name", name,
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"--name {name!r}: expected a file stem such as my-run, not a path; choose the folder with --out" in err
    assert not any(tmp_path.iterdir()) and not (tmp_path.parent / "escape.json").exists()


def _fail_on_call(monkeypatch, n):
    """Make the runner's n-th evaluation (1-based) fail, as a method crashing mid-suite would."""
    from fewmm.bench import runner
    from fewmm.errors import FewmmError

    real, calls = runner.evaluate_episodes, []

    def flaky(*a, **k):
        calls.append(1)
        if len(calls) == n:
            raise FewmmError("method crashed (test)")
        return real(*a, **k)

    monkeypatch.setattr(runner, "evaluate_episodes", flaky)


def test_rows_measured_before_a_failure_are_kept(tmp_path, monkeypatch):
    _fail_on_call(monkeypatch, 2)
    rc = run(tmp_path, "--dataset", "digits", "--encoder", "pixels", "--methods", "protonet", "--shots", "1,5",
             "--queries", "10", "--episodes", "5", "--name", "partial")
    assert rc == 2
    doc = json.loads((tmp_path / "res" / "partial.json").read_text())
    assert doc["finished"] is False and [r["shots"] for r in doc["results"]] == [1]


def test_a_run_failing_before_any_row_writes_nothing(tmp_path, monkeypatch, capsys):
    _fail_on_call(monkeypatch, 1)
    assert run(tmp_path, "--dataset", "digits", "--encoder", "pixels", "--methods", "protonet", "--shots", "1",
               "--episodes", "5", "--name", "empty") == 2
    assert "method crashed (test)" in capsys.readouterr().err
    assert not (tmp_path / "res").exists()  # no empty empty.json / empty.csv, not even the folder
    (tmp_path / "res").mkdir()
    _fail_on_call(monkeypatch, 1)
    assert run(tmp_path, "--dataset", "digits", "--encoder", "pixels", "--methods", "protonet", "--shots", "1",
               "--episodes", "5", "--name", "empty") == 2
    assert list((tmp_path / "res").iterdir()) == []  # an existing folder: nothing written, no leftover temp file


def test_infeasible_cells_are_skipped_with_a_note_and_the_suite_goes_on(tmp_path, capsys):
    # digits: 10 classes of 174-183 items. 20-way needs 20 classes; 200-shot 10-query needs 210 items per class.
    assert main(["--dataset", "digits", "--encoder", "pixels", "--methods", "protonet", "--ways", "5,20",
                 "--shots", "1,200", "--queries", "10", "--episodes", "20", "--out", str(tmp_path / "res"),
                 "--cache-dir", str(tmp_path / "cache"), "--name", "inf"]) == 0
    doc = json.loads((tmp_path / "res" / "inf.json").read_text())
    assert doc["finished"] is True
    assert [(r["ways"], r["shots"]) for r in doc["results"]] == [(5, 1)]
    skipped = {(s["ways"], s["shots"]): s["reason"] for s in doc["skipped"]}
    assert set(skipped) == {(5, 200), (20, 1), (20, 200)}
    assert "20-way episodes need 20 classes with >= 11 items, only 10 have" in skipped[(20, 1)]
    assert "200-shot 10-query episodes need 210 items per class, but '0' (class 0) has 178" in skipped[(5, 200)]
    err = capsys.readouterr().err
    assert "[skip] digits x pixels 20-way 1-shot: 20-way episodes need 20 classes" in err
    from fewmm.bench.report import markdown_table

    assert "Skipped cells (infeasible): digits x pixels 5-way 200-shot" in markdown_table(doc)


def test_all_cells_infeasible_fails_before_encoding_and_writes_nothing(tmp_path, capsys):
    assert run(tmp_path, "--dataset", "digits", "--encoder", "pixels", "--ways", "30", "--episodes", "5") == 2
    err = capsys.readouterr().err
    assert "nothing to measure: infeasible: 30-way episodes need 30 classes with >= 16 items, only 10 have" in err
    assert "Traceback" not in err
    assert not (tmp_path / "res").exists()
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.safetensors"))  # nothing encoded


def test_banner_and_block_progress_lines(tmp_path, capsys):
    assert main(["--dataset", "digits", "--encoder", "pixels", "--methods", "protonet,knn", "--shots", "1",
                 "--episodes", "10", "--out", str(tmp_path / "res"), "--cache-dir", str(tmp_path / "cache"),
                 "--name", "b"]) == 0
    err = capsys.readouterr().err
    assert "fewmm bench: suite 'bench', 1 block(s) (data set x encoder), 1 cell(s) x 2 method(s) [protonet, knn]" in err
    assert "5-way, 1-shot, 10 episodes per cell, seed 0, device cpu" in err
    assert "block 1: digits x pixels (1797 items, 10 classes, 15 queries)" in err
    assert f"results: {tmp_path / 'res' / 'b.json'}" in err
    assert "[block 1/1] digits x pixels: 1 cell(s)" in err
    # not a terminal: plain progress lines, no carriage-return redraws
    assert "pixels digits/all: 1797/1797 item (100%)" in err and "\r" not in err


@pytest.mark.parametrize("toml, message", [
    ('wayz = [3]\n[[run]]\ndataset = "digits"\n', "unknown top-level keys ['wayz']"),
    ('episodes = 3.7\n[[run]]\ndataset = "digits"\n', "episodes must be an integer"),
    ('ways = [5.5]\n[[run]]\ndataset = "digits"\n', "ways must be a list of positive integers"),
    ('[[run]]\ndataset = 5\n', "must have dataset"),
    ('[[run]]\ndataset = "esc50"\nbase = ["task:esc50-text"]\n',
     "[[run]] 'esc50': base must be a string (e.g. base = \"task:esc50-text\" or \"omniglot:background\"), got list"),
    ('[[run]]\ndataset = "digits"\nlabel = 3\n', "[[run]] 'digits': label must be a string"),
])
def test_bad_config_values(tmp_path, capsys, toml, message):
    cfg = tmp_path / "c.toml"
    cfg.write_text(toml)
    assert run(tmp_path, "--config", str(cfg)) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_fusion_cli_rejects_bad_numbers_and_report_bad_json(tmp_path, capsys):
    from fewmm.bench import fusion, report

    for args, msg in ((["--shots", "abc"], "--shots: expected comma-separated integers"), (["--threads", "0"], "--threads must be >= 1"),
                      (["--episodes", "0"], "--episodes must be >= 1"), (["--shots", "1,0"], "--shots must be >= 1")):
        with pytest.raises(SystemExit):
            fusion.main(["--task", "digits-av", *args])
        assert msg in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text('{"rows": [')
    assert report.main([str(bad)]) == 2
    assert "not a readable results JSON" in capsys.readouterr().err
    bad.write_text('{"rows": 3}')
    assert report.main([str(bad)]) == 2
    assert "not a fewmm results file" in capsys.readouterr().err


def _row(m, acc, ci, ref=None, d=None, dci=None, paired=None):
    r = {"dataset": "d", "split": "all", "encoder": "e", "method": m, "ways": 5, "shots": 1, "queries": 15,
         "episodes": 600, "accuracy": acc, "ci95": ci}
    if ref:
        r.update(paired_ref=ref, paired_delta=d, paired_ci95=dci)
    if paired is not None:
        r["paired"] = paired
    return r


def test_report_bolds_a_lead_only_outside_the_paired_ci():
    from fewmm.bench.report import leaders, markdown_table

    # every pair stored: lead 1.0 vs paired CI 0.5 -> a alone; vs 1.2 -> a and b tied
    cell = {"a": _row("a", 80.0, 1.0, paired={"b": [1.0, 0.5]}), "b": _row("b", 79.0, 1.0, paired={"a": [-1.0, 0.5]})}
    assert leaders(cell) == (["a"], True)
    cell["a"]["paired"]["b"][1] = cell["b"]["paired"]["a"][1] = 1.2
    assert leaders(cell) == (["a", "b"], True)
    # only differences to the reference r stored: a-b bounded by 0.3 + 0.3 = 0.6 (< ci_a + ci_b = 2.0)
    cell = {"r": _row("r", 70.0, 1.0), "a": _row("a", 80.0, 1.0, "r", 10.0, 0.3), "b": _row("b", 79.5, 1.0, "r", 9.5, 0.3)}
    assert leaders(cell) == (["a", "b"], False)  # lead 0.5 <= 0.6: not shown as a clear lead
    cell["b"]["accuracy"] = 79.3
    assert leaders(cell) == (["a"], False)  # lead 0.7 > 0.6 >= the true paired CI
    doc = {"results": list(cell.values()), "seed": 0, "finished": True}
    table = markdown_table(doc)
    assert "| d | e | 5-1 (15) | 70.00 ± 1.00 | **80.00 ± 1.00** | 79.30 ± 1.00 |" in table
    assert "paired differences to r only" in table


def test_report_marks_an_unfinished_file():
    from fewmm.bench.report import markdown_table

    rows = [_row("r", 70.0, 1.0), _row("a", 80.0, 1.0, "r", 10.0, 0.3), {**_row("r", 71.0, 1.0), "shots": 5}]
    table = markdown_table({"results": rows, "seed": 0, "finished": False})
    assert table.startswith("**Unfinished run**")
    assert "| d | e | 5-5 (15) | 71.00 ± 1.00 | *not run* |" in table
    assert "Unfinished" not in markdown_table({"results": rows, "seed": 0, "finished": True})


def test_encoders_of_another_modality_are_skipped_pairwise_with_a_note(tmp_path, capsys, data_root):
    """digits (image) and a small audio manifest of FSDD recordings x pixels and logmel-stats: the two
    pairs that fit run, the two that do not are skipped with a note on screen and in the results
    (the run used to stop at the first mismatch)."""
    from fewmm.bench.report import markdown_table

    rec = data_root / "fsdd" / "recordings"
    (tmp_path / "snd.csv").write_text("label,audio\n" + "".join(f"{d},{rec / f'{d}_jackson_{i}.wav'}\n"
                                                               for d in range(5) for i in range(4)), encoding="utf-8")
    assert main(["--dataset", f"digits,manifest:{tmp_path / 'snd.csv'}", "--encoder", "pixels,logmel-stats",
                 "--methods", "protonet", "--ways", "5", "--shots", "1", "--queries", "3", "--episodes", "5",
                 "--out", str(tmp_path / "res"), "--cache-dir", str(tmp_path / "cache"), "--name", "mix"]) == 0
    doc = json.loads((tmp_path / "res" / "mix.json").read_text())
    assert doc["finished"] is True
    assert sorted((r["dataset"], r["encoder"]) for r in doc["results"]) == [("digits", "pixels"), ("snd", "logmel-stats")]
    reasons = {(s["dataset"], s["encoder"]): s["reason"] for s in doc["skipped"]}
    assert set(reasons) == {("digits", "logmel-stats"), ("snd", "pixels")}
    assert reasons[("snd", "pixels")] == ("modality mismatch: encoder 'pixels' embeds image, but data set 'manifest/snd' "
                                          "has only ['audio']")
    err = capsys.readouterr().err
    assert "[skip] digits x logmel-stats: encoder 'logmel-stats' embeds audio, but data set 'digits/all' has only ['image']" in err
    assert "Skipped (encoder of another modality): digits x logmel-stats, snd x pixels." in markdown_table(doc)
