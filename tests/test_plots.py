import json
from pathlib import Path

import pytest

from fewmm.bench import plot, plot_fusion

REPO = Path(__file__).resolve().parents[1]


def _bench_doc(finished=True):
    rows = []
    for enc in ("pixels", "efficientnet-lite2"):
        for m, base in (("protonet", 50.0), ("knn", 45.0), ("linear-probe", 55.0)):
            for k in (1, 2, 4, 8, 16):
                rows.append({"dataset": "digits", "split": "all", "encoder": enc, "method": m, "ways": 5, "shots": k,
                             "queries": 15, "episodes": 600, "accuracy": base + 3 * k ** 0.5, "ci95": 0.8})
    return {"results": rows, "seed": 0, "finished": finished}


def test_accuracy_vs_shots_bands_colours_and_legends(tmp_path):
    fig = plot.figure(_bench_doc(), tmp_path / "x.json")
    axes = [ax for ax in fig.axes if ax.lines]
    assert len(axes) == 2  # one panel per data set x encoder x way
    for ax in axes:
        assert ax.get_legend() is not None and [t.get_text() for t in ax.get_legend().get_texts()] == ["protonet", "knn", "linear-probe"]
        assert len(ax.collections) == 3  # one CI band per method
        assert len({tuple(line.get_color()) for line in ax.lines}) == 3
        assert list(ax.lines[0].get_xdata()) == [1, 2, 4, 8, 16]
        # the band is accuracy ± ci95
        band = ax.collections[0].get_paths()[0].vertices
        assert band[:, 1].max() == pytest.approx(50.0 + 3 * 4 + 0.8) and band[:, 1].min() == pytest.approx(50.0 + 3 - 0.8)
    p = tmp_path / "x.json"
    p.write_text(json.dumps(_bench_doc()))
    assert plot.main([str(p)]) == 0 and (tmp_path / "x.png").stat().st_size > 10_000


def test_backbone_results_plot(tmp_path):
    out = plot.plot(REPO / "results" / "omniglot-protonet.json", tmp_path / "o.png")
    assert out.stat().st_size > 10_000


def test_fusion_plot_has_every_condition_distinct_colours_and_a_legend_on_every_panel(tmp_path):
    doc = json.loads((REPO / "results" / "fusion-digits-av.json").read_text())
    fig = plot_fusion.figure(doc)
    titles = [ax.get_title() for ax in fig.axes]
    for fold in ("A", "B"):
        for cond in ("clean", "audio-corrupt50", "image-missing50", "audio-missing50"):
            assert f"digits-av fold {fold}: {cond}" in titles
    assert all(ax.get_legend() is not None for ax in fig.axes)
    clean = fig.axes[titles.index("digits-av fold A: clean")]
    heads = [t.get_text() for t in clean.get_legend().get_texts()]
    assert len(heads) == 11
    colours = {c.get_label(): tuple(c.lines[0].get_color()) for c in clean.containers}
    assert len(set(colours.values())) == len(heads) == len(colours)  # every series its own colour
    assert plot_fusion.main([str(REPO / "results" / "fusion-esc50-text.json"), "--out", str(tmp_path / "e.png")]) == 0


@pytest.mark.parametrize("content, message", [
    (None, "no such results file"),
    ("{not json", "not a readable results JSON (JSONDecodeError"),
    ('{"results": []}', "no result rows"),
    ('{"rows": 3}', "not a fewmm results file"),
    ("BENCH", "result row 0 has no 'fold', 'condition', 'head', 'kind'"),
])
def test_plot_fusion_one_line_errors(tmp_path, capsys, content, message):
    p = tmp_path / "r.json"
    if content == "BENCH":
        content = json.dumps(_bench_doc())
    if content is not None:
        p.write_text(content)
    assert plot_fusion.main([str(p)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_plot_one_line_errors(tmp_path, capsys):
    assert plot.main([str(tmp_path / "none.json")]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {tmp_path / 'none.json'}: no such results file\n"


def test_report_readme_missing_is_one_line_error(tmp_path, capsys):
    """``report --readme missing.md``: exit 2 with one line naming --readme (was a FileNotFoundError traceback)."""
    from pathlib import Path

    from fewmm.bench import speed_report
    from fewmm.bench.report import main

    res = str(Path(__file__).resolve().parents[1] / "results" / "default.json")
    missing = tmp_path / "missing.md"
    assert main([res, "--readme", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"error: --readme {missing}: no such file (give an existing Markdown file with a <!-- results:TAG --> block)"
    assert speed_report.main(["--readme", str(missing)]) == 2
    assert "error: --readme" in capsys.readouterr().err and not missing.exists()


def test_transfer_files_get_a_one_line_pointer_from_plot_and_a_table_from_report(tmp_path, capsys):
    """A transfer results file: plot says in one line to use fewmm.bench.transfer --report (it used
    to say "row has no 'ci95'"); report prints the same table as that command (it used to raise
    KeyError 'condition')."""
    from fewmm.bench import report
    from fewmm.bench.transfer import markdown_table

    path = REPO / "results" / "transfer-digits-av.json"
    assert plot.main([str(path), "--out", str(tmp_path / "t.png")]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: {path}: a transfer results file (python -m fewmm.bench.transfer), which has no plot; "
                   f"print its table with: python -m fewmm.bench.transfer --report {path}\n")
    assert not (tmp_path / "t.png").exists()
    assert report.main([str(path)]) == 0
    assert capsys.readouterr().out == markdown_table(json.loads(path.read_text())) + "\n"


@pytest.mark.parametrize("module", ["fewmm.bench.report", "fewmm.bench.transfer --report"])
def test_report_into_a_closed_pipe_ends_quietly(module):
    """``report FILE | head``: the reader goes away; no BrokenPipeError traceback."""
    import subprocess
    import sys

    path = REPO / "results" / ("transfer-digits-av.json" if "transfer" in module else "default.json")
    mod, *flag = module.split()
    p = subprocess.Popen([sys.executable, "-m", mod, *flag, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         cwd=REPO, env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    p.stdout.close()  # the reader is gone before the first line is written
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) == 0 and err == ""
