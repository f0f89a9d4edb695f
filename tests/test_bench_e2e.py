"""End-to-end tests of the commands that write the README's tables and figures (issue 17, item 4):
the fusion benchmark (a small run on a synthetic two-modality task: its rows, paired deltas and
weights equal a direct computation), ``plot_fusion``, ``report``, ``speed_report``, and
``python -m fewmm.data`` with its exit codes.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import fewmm.heads as H
import fewmm.tasks as T
from fewmm.bench import fusion, plot_fusion, report, speed_report
from fewmm.episodes import sample_episodes
from fewmm.heads.synthetic import make_synthetic
from fewmm.metrics import mean_ci, paired_difference

REPO = Path(__file__).resolve().parents[1]


def synthetic_task(**_):
    """15 classes x 20 items, image + audio; base 0-4, validation 5-9, novel 10-14; the corrupted
    copy has every item's audio replaced by noise (the benchmark swaps a seeded half)."""
    clean, _ = make_synthetic(n_classes=15, per_class=20, corrupt_modality=None, seed=0)
    noisy, flags = make_synthetic(n_classes=15, per_class=20, corrupt_modality="audio", corrupt_fraction=1.0, seed=0)
    assert flags.all() and torch.equal(noisy.features["image"], clean.features["image"])
    return T.Task("digits-av", clean, np.arange(5), np.arange(5, 10), np.arange(10, 15), fold="A", corrupted=noisy)


fusion_heads: dict = {}  # trainer -> the trained head the fusion bench evaluated (filled by fusion_run)


@pytest.fixture(scope="module")
def fusion_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("fusion")
    mp = pytest.MonkeyPatch()
    mp.setattr(T, "build", lambda name, **kw: synthetic_task())
    original = fusion.evaluate_meta_trained

    def capture(head, trainer, *a, **kw):
        fusion_heads[trainer] = head
        return original(head, trainer, *a, **kw)

    mp.setattr(fusion, "evaluate_meta_trained", capture)
    n = torch.get_num_threads()
    try:
        rc = fusion.main(["--task", "digits-av", "--folds", "A", "--shots", "1,5", "--queries", "5", "--episodes", "30",
                          "--steps", "10", "--heads", "temperature", "--trainers", "protonet,fomaml", "--no-controls", "--checkpoints", "", "--out", str(out),
                          "--name", "fus", "--quiet"])
    finally:
        mp.undo()
        torch.set_num_threads(n)
    assert rc == 0
    return out / "fus.json"


def test_fusion_rows_deltas_and_weights_equal_a_direct_computation(fusion_run):
    doc = json.loads(fusion_run.read_text())
    assert doc["finished"] is True and doc["task"] == "digits-av" and doc["corrupt_modality"] == "audio"
    rows = doc["results"]
    conditions = ["clean", "audio-corrupt50", "image-missing50", "audio-missing50"]
    heads = ["single:image", "single:audio", "avg-proto", "concat", "temperature", "temperature"]
    trainers = [None, None, None, None, "protonet", "fomaml"]
    assert [(r["condition"], r["shots"], r["head"], r["trainer"]) for r in rows] == [
        (c, k, h, t) for c in conditions for k in (1, 5) for h, t in zip(heads, trainers)]
    tr = doc["training"]["A/temperature"]
    assert tr["trainer"] == "protonet" and doc["training"]["A/temperature@fomaml"]["trainer_config"]["name"] == "fomaml"
    assert 1 <= tr["steps"] <= 10 and tr["config"]["steps"] == 10 and tr["config"]["n_query"] == 5
    with open(fusion_run.with_suffix(".csv")) as f:
        assert len(list(csv.DictReader(f))) == len(rows)

    task = synthetic_task()
    clean = task.features
    cf, cmask = T.apply_corruption(clean, task.corrupted, "audio", 0.5, seed=0)
    feats = {"clean": (clean, None), "audio-corrupt50": (cf, cmask),
             "image-missing50": (T.apply_missing(clean, "image", 0.5, seed=0), None),
             "audio-missing50": (T.apply_missing(clean, "audio", 0.5, seed=0), None)}
    by = {(r["condition"], r["shots"], r["head"]): r for r in rows}
    for cond, (f, corrupted_items) in feats.items():
        for k in (1, 5):
            ep = task.episodes("novel", 5, k, 5, 30, seed=0)
            accs, ws = {}, {}
            for h in heads[:4]:
                accs[h], ws[h] = H.evaluate_head(H.create(h, clean, seed=0), f, ep, return_weights=True)
            # the reference: the fixed fusion best on 200 VALIDATION episodes (classes 5..9, same condition,
            # seed + 1), never on these test episodes
            fv = {"clean": clean, "audio-corrupt50": cf, "image-missing50": feats["image-missing50"][0],
                  "audio-missing50": feats["audio-missing50"][0]}[cond]
            vq = int(min(15, np.bincount(fv.labels)[5:10].min() - k))
            vep = sample_episodes(fv.labels, 5, k, vq, 200, seed=1, classes=np.arange(5, 10))
            vacc = {h: H.evaluate_head(H.create(h, clean, seed=0), fv, vep).mean() for h in ("avg-proto", "concat")}
            ref = max(("avg-proto", "concat"), key=lambda h: vacc[h])
            assert doc["reference_choice"]["A"][f"{cond}/{k}"]["reference"] == ref
            q = ep.query.reshape(-1)
            for h in heads[:4]:
                r = by[(cond, k, h)]
                est = mean_ci(accs[h])
                assert (r["accuracy"], r["ci95"], r["episodes"], r["queries"]) == (round(est.mean, 4), round(est.ci95, 4), 30, 5)
                assert r["kind"] == ("single" if h.startswith("single") else "fixed")
                w = ws[h].reshape(-1, 2)
                if corrupted_items is None:
                    np.testing.assert_allclose(r["mean_weights_clean_items"], w.mean(0), rtol=1e-6)
                    assert r["mean_weights_corrupted_items"] is None
                else:
                    bad = corrupted_items[q]
                    assert 0 < bad.sum() < bad.size
                    np.testing.assert_allclose(r["mean_weights_clean_items"], w[~bad].mean(0), rtol=1e-6)
                    np.testing.assert_allclose(r["mean_weights_corrupted_items"], w[bad].mean(0), rtol=1e-6)
                if h == ref:
                    assert "paired_delta" not in r
                else:
                    d = paired_difference(accs[h], accs[ref])
                    assert (r["paired_ref"], r["paired_delta"], r["paired_ci95"]) == (ref, round(d.mean, 4), round(d.ci95, 4))
            # the trained head: same episodes, so its paired delta is its accuracy minus the reference's
            t, tf = [r for r in rows if (r["condition"], r["shots"], r["head"]) == (cond, k, "temperature")]
            assert t["kind"] == "adaptive" and t["paired_ref"] == ref
            assert t["paired_delta"] == pytest.approx(t["accuracy"] - by[(cond, k, ref)]["accuracy"], abs=2e-4)
            assert t["train_steps"] == tr["steps"] and t["best_val_acc"] == tr["best_val_acc"]
            # the fomaml-trained head, adapted per episode, on the same episodes: its accuracy equals a
            # direct evaluation, and the trainer difference is paired
            acc_f = fusion.evaluate_meta_trained(fusion_heads["fomaml"], "fomaml", f, ep, "cpu")
            assert tf["accuracy"] == round(mean_ci(acc_f).mean, 4) and tf["paired_ref"] == ref
            assert tf["paired_trainers"]["protonet"][0] == pytest.approx(tf["accuracy"] - t["accuracy"], abs=2e-4)


def test_plot_fusion_writes_a_png(fusion_run, tmp_path, capsys):
    png = tmp_path / "fig.png"
    assert plot_fusion.main([str(fusion_run), "--out", str(png)]) == 0
    assert capsys.readouterr().out.strip() == str(png)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000  # a real figure, not an empty canvas


def test_report_fusion_table_copies_the_json(fusion_run, tmp_path, capsys):
    doc = json.loads(fusion_run.read_text())
    assert report.main([str(fusion_run)]) == 0
    table = capsys.readouterr().out
    lines = {ln.split(" | ")[0] + " | " + ln.split(" | ")[1]: ln for ln in table.splitlines() if ln.startswith("| ") and " | " in ln}
    for r in doc["results"]:
        line = lines[f"| {r['condition']} | {report.head_label(r)}"]
        cell = f"{r['accuracy']:.2f} ± {r['ci95']:.2f}"
        assert (f"{cell} ({r['paired_delta']:+.2f} ± {r['paired_ci95']:.2f})" if "paired_delta" in r else f"*{cell}* (ref)") in line
    assert f"over {doc['episodes']} episodes" in table and doc["command"] in table
    # --readme rewrites only the tagged block, and says so; a second run leaves it unchanged
    readme = tmp_path / "R.md"
    readme.write_text("before\n<!-- results:fus -->\nold\n<!-- /results:fus -->\nafter\n")
    assert report.main([str(fusion_run), "--readme", str(readme)]) == 0
    assert f"updated {readme}" in capsys.readouterr().err
    assert readme.read_text() == f"before\n<!-- results:fus -->\n{table[:-1]}<!-- /results:fus -->\nafter\n"
    assert report.main([str(fusion_run), "--readme", str(readme)]) == 0
    assert "unchanged:" in capsys.readouterr().err


def test_report_default_table(tmp_path, capsys):
    """The default benchmark's JSON (committed in results/) gives the README's table: every row's
    accuracy appears, the best of each row in bold."""
    src = REPO / "results" / "default.json"
    doc = json.loads(src.read_text())
    assert report.main([str(src)]) == 0
    table = capsys.readouterr().out
    for r in doc["results"]:
        assert f"{r['accuracy']:.2f} ± {r['ci95']:.2f}" in table
    n_rows = len({(r["dataset"], r["split"], r["encoder"], r["ways"], r["shots"]) for r in doc["results"]})
    assert sum(ln.startswith("| ") for ln in table.splitlines()) == n_rows + 1
    assert table.count("**") >= 2 * n_rows  # one bold cell per row (ties: each best one)


def test_speed_report_copies_every_number(tmp_path, capsys):
    res = REPO / "results"
    args = ["--throughput", str(res / "episode_throughput.json"), "--maml", str(res / "maml_speed.json"),
            "--latency", str(res / "adapter_latency.json"), "--train-speed", str(res / "protonet_train_speed.json"),
            "--maml-memory", str(res / "maml_conv4_memory.json"), "--extraction", str(res / "extraction_speed.json")]
    assert speed_report.main(args) == 0
    md = capsys.readouterr().out
    tp = json.loads((res / "episode_throughput.json").read_text())
    assert f"| {tp['fewmm']['episodes_per_s']:.0f} | {100 * tp['fewmm']['acc_mean']:.2f} |" in md
    st = tp["stable_ratios"]["fewmm_time_over_gather_time"]  # median of the interleaved rounds, 25th-75th percentile
    per = " {" + ", ".join(f"{m:.2f}" for m in st["per_run_median"]) + "}" if "per_run_median" in st else ""  # --processes
    assert f"fewmm time / gather time {st['median']:.2f}x [{st['q25']:.2f}-{st['q75']:.2f}]{per} (target <= 2: {st['verdict']['verdict']}" in md
    ms = json.loads((res / "maml_speed.json").read_text())
    g = ms["speed"][0]["methods"]["functional"]["ratio_vs_l2l"]
    assert f"{g['median']:.2f}x [{g['q25']:.2f}-{g['q75']:.2f}]" in md
    ex = json.loads((res / "extraction_speed.json").read_text())["rows"][0]["pipeline_over_bare"]
    assert f"{ex['median']:.2f}x [{ex['q25']:.2f}-{ex['q75']:.2f}]" in md
    lat = json.loads((res / "adapter_latency.json").read_text())
    assert f"Largest median head time {lat['head_ms_median_max']:.3f} ms" in md
    mem = json.loads((res / "maml_conv4_memory.json").read_text())
    assert f"({mem['second_over_first_memory']:.2f}x)" in md
    ts = json.loads((res / "protonet_train_speed.json").read_text())
    assert f"({ts['ratio_fewmm_over_reference']:.2f}x;" in md
    # missing files are left out, not an error
    assert speed_report.main(["--throughput", str(tmp_path / "none.json"), "--maml", str(tmp_path / "none.json"),
                              "--latency", "x", "--train-speed", "x", "--maml-memory", "x", "--extraction", "x"]) == 0
    assert capsys.readouterr().out.strip() == ""
    # --readme rewrites the speed block
    readme = tmp_path / "R.md"
    readme.write_text("a\n<!-- results:speed -->\nold\n<!-- /results:speed -->\nb\n")
    assert speed_report.main([*args, "--readme", str(readme)]) == 0
    assert readme.read_text() == f"a\n<!-- results:speed -->\n{md[:-1]}<!-- /results:speed -->\nb\n"


# -- python -m fewmm.data ----------------------------------------------------------------------


def _data_cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "fewmm.data", *args], capture_output=True, text=True, timeout=timeout, cwd=REPO)


def test_data_cli_list_and_usage_errors():
    import fewmm.data as D

    out = _data_cli("list")
    assert out.returncode == 0 and out.stdout.split() == D.list_datasets() and out.stderr == ""
    out = _data_cli("export", "fsdd")  # --out missing: argparse usage error
    assert out.returncode == 2 and "the following arguments are required: --out" in out.stderr
    out = _data_cli()
    assert out.returncode == 2 and "required: command" in out.stderr


def test_data_cli_errors_exit_2_with_one_line(tmp_path, capsys):
    from fewmm.data.__main__ import main

    for args, msg in [(["export", "fsdd", "--shots", "0"], "--shots must be >= 1 and --test >= 0, got 0 and 20"),
                      (["export", "fsddd"], "unknown data set 'fsddd'"),
                      (["export", "fsdd", "--data-root", str(tmp_path / "nothing")], str(tmp_path / "nothing"))]:
        assert main([*args, "--out", str(tmp_path / "o")]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("error: ") and msg in err and "Traceback" not in err
    # a negative seed is refused by argparse itself (exit 2, usage + one line naming --seed)
    with pytest.raises(SystemExit) as e:
        main(["export", "fsdd", "--seed", "-1", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "argument --seed: must be >= 0" in err and "got -1" in err and "Traceback" not in err


@pytest.mark.needs_data
def test_data_cli_export(data_root, tmp_path):
    out = _data_cli("export", "fsdd", "--shots", "2", "--test", "3", "--seed", "0", "--data-root", str(data_root), "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == (f"fsdd/all: 10 classes; wrote {tmp_path / 'train.csv'} (20 rows) and {tmp_path / 'test.csv'} (30 rows)")
    with open(tmp_path / "train.csv") as f:
        train = list(csv.DictReader(f))
    with open(tmp_path / "test.csv") as f:
        test = list(csv.DictReader(f))
    labels = sorted({r["label"] for r in train})
    assert len(labels) == 10 and sorted({r["label"] for r in test}) == labels
    assert [sum(r["label"] == c for r in train) for c in labels] == [2] * 10
    assert [sum(r["label"] == c for r in test) for c in labels] == [3] * 10
    assert not {r["id"] for r in train} & {r["id"] for r in test}
    assert all(Path(r["audio"]).is_file() for r in train + test)
    again = tmp_path / "again"
    assert _data_cli("export", "fsdd", "--shots", "2", "--test", "3", "--data-root", str(data_root), "--out", str(again)).returncode == 0
    # same seed, same manifest: the same rows, the same files (paths are written relative to each manifest's folder)
    def rows(folder):
        with open(folder / "train.csv") as f:
            return [{**r, "audio": str((folder / r["audio"]).resolve())} for r in csv.DictReader(f)]

    assert rows(again) == rows(tmp_path)
    assert not any(Path(r["audio"]).is_absolute() for r in train)
    out = _data_cli("export", "omniglot", "--data-root", str(data_root), "--out", str(tmp_path / "o"))
    assert out.returncode == 2 and "zip members" in out.stderr and "Traceback" not in out.stderr


def test_trainer_summary_counts_wins_from_the_ci(tmp_path, capsys):
    """Hand-made rows: fomaml - protonet of +2 ± 1 (a fomaml win), -3 ± 1 (a protonet win),
    +0.5 ± 1 (neither); non-adaptive and protonet rows are ignored."""
    def row(head, trainer, d=None, ci=None, kind="adaptive", cond="clean", shots=1):
        r = {"task": "t", "fold": "A", "condition": cond, "shots": shots, "head": head, "trainer": trainer, "kind": kind}
        if d is not None:
            r["paired_trainers"] = {"protonet": [d, ci]}
        return r
    doc = {"command": "python -m fewmm.bench.fusion --task t", "results": [
        row("avg-proto", None, kind="fixed"), row("gmu", "protonet"), row("gmu", "fomaml", 2.0, 1.0),
        row("am3", "fomaml", -3.0, 1.0), row("am3", "fomaml", 0.5, 1.0, shots=5)]}
    path = tmp_path / "f.json"
    path.write_text(json.dumps(doc))
    assert report.main([str(path), "--trainers"]) == 0
    out = capsys.readouterr().out
    assert "fomaml wins 1, protonet wins 1, neither (95% CI of the paired difference includes 0) 1; mean difference -0.17 points." in out
    assert "Largest fomaml win: gmu on t/A clean 1-shot, +2.00 ± 1.00." in out
    assert "Largest protonet win: am3 on t/A clean 1-shot, -3.00 ± 1.00." in out
    assert "| t/A | clean | 5 | am3 | +0.50 ± 1.00 |" in out and "| t/A | clean | 1 | gmu | **+2.00 ± 1.00** |" in out
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"command": "x", "results": [{"kind": "adaptive", "head": "gmu"}]}))
    assert report.main([str(old), "--trainers"]) == 2
    assert "malformed result rows" in capsys.readouterr().err
