"""fewmm.paper: the paper's tables, in-text numbers and README result blocks agree with the results
JSON (`python -m fewmm.paper check`), a changed number is caught naming its table, and the PDF
builds where LaTeX is installed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fewmm.errors import FewmmError
from fewmm.paper import check, compare_cells, load_registry
from fewmm.paper.commands import build_tables, hand_numbers, latex_command
from fewmm.paper.generators import escape, md_to_latex, provenance

REPO = Path(__file__).resolve().parents[1]


def _copy_repo(tmp_path: Path) -> Path:
    """The parts of the repository that `check` reads, copied (results, paper, README, benchmarks)."""
    root = tmp_path / "repo"
    for d in ("results", "paper", "benchmarks"):
        shutil.copytree(REPO / d, root / d, ignore=shutil.ignore_patterns("build", "*.pdf", "*.aux", "*.log", "_scratch"))
    for d in ("fewmm/bench/suites",):
        shutil.copytree(REPO / d, root / d)
    shutil.copy(REPO / "README.md", root / "README.md")
    return root


def _run_check(root: Path) -> tuple[int, str]:
    lines: list[str] = []
    rc = check(root, say=lines.append)
    return rc, "\n".join(lines)


def test_check_passes_on_the_repository():
    """The committed paper/generated files and README blocks equal what the results JSON give."""
    rc, out = _run_check(REPO)
    assert rc == 0, out
    assert out.startswith("paper check: OK")


def test_a_changed_number_fails_naming_the_table(tmp_path):
    root = _copy_repo(tmp_path)
    path = root / "results" / "fusion-esc50-text.json"
    doc = json.loads(path.read_text())
    row = next(r for r in doc["results"] if r["condition"] == "clean" and r["head"] == "gmu" and r["shots"] == 1)
    old = f"{row['accuracy']:.2f}"
    row["accuracy"] = round(row["accuracy"] + 1.0, 4)
    new = f"{row['accuracy']:.2f}"
    path.write_text(json.dumps(doc, indent=1))
    rc, out = _run_check(root)
    assert rc == 1
    # the paper's table and the README block of that JSON are both named, with both numbers
    assert "[fusion-esc50-text] table paper/generated/fusion-esc50-text.tex does not match its results JSON" in out
    assert "[README:fusion-esc50-text] README block `fusion-esc50-text` does not match results/fusion-esc50-text.json" in out
    assert f"{old} (written) vs {new} (from the JSON)" in out
    assert "[fusion-esc50-text] stale" in out
    # no other table is blamed
    blamed = {ln.split("]")[0].strip(" [") for ln in out.splitlines() if ln.startswith("  [")}
    # (the macros read the same JSON and the appendix records its sha256; fusion-trainers reads its
    # own results/fusion-trainers-*.json since the trainer axis, see paper/experiments.toml)
    assert blamed == {"fusion-esc50-text", "README:fusion-esc50-text", "provenance", "numbers"}, out
    assert "[numbers] stale: paper/generated/numbers.tex was generated from an older results/fusion-esc50-text.json" in out


def test_an_in_text_number_is_checked(tmp_path):
    root = _copy_repo(tmp_path)
    path = root / "results" / "maml_conv4_memory.json"
    doc = json.loads(path.read_text())
    doc["second_over_first_memory"] = 9.99
    path.write_text(json.dumps(doc))
    rc, out = _run_check(root)
    assert rc == 1
    assert "[numbers] table paper/generated/numbers.tex does not match" in out
    assert "1.31 (written) vs 9.99 (from the JSON)" in out


def test_results_newer_than_the_tables_are_stale(tmp_path):
    """A results file rewritten with the same numbers (a field no table shows) makes its outputs stale."""
    root = _copy_repo(tmp_path)
    path = root / "results" / "esc50-protonet.json"
    doc = json.loads(path.read_text())
    doc["created"] = "2099-01-01T00:00:00+0000"
    path.write_text(json.dumps(doc, indent=1))
    rc, out = _run_check(root)
    assert rc == 1
    assert "[esc50-protonet] stale: paper/generated/esc50-protonet.tex was generated from an older results/esc50-protonet.json" in out
    assert "does not match" not in out.split("[esc50-protonet] stale")[0]


def test_numbers_typed_by_hand_and_unregistered_outputs_are_listed(tmp_path):
    root = _copy_repo(tmp_path)
    sec = root / "paper" / "sections" / "fusion.tex"
    sec.write_text(sec.read_text() + "\nThe head reached 91.71 and 12\\% more. % 55.5 in a comment is fine\n")
    (root / "paper" / "generated" / "orphan.tex").write_text("42\n")
    rc, out = _run_check(root)
    assert rc == 1
    assert "[paper/sections/fusion.tex] number with no source" in out and "'91.71'" in out and "'12\\\\%'" in out
    assert "55.5" not in out
    assert "[orphan.tex] paper/generated/orphan.tex: a generated file that no registered experiment makes" in out


def test_registered_command_must_be_the_recorded_one(tmp_path):
    root = _copy_repo(tmp_path)
    reg = root / "paper" / "experiments.toml"
    reg.write_text(reg.read_text().replace('command = ["python -m fewmm.bench --name default"]',
                                           'command = ["python -m fewmm.bench --name default --episodes 100"]'))
    rc, out = _run_check(root)
    assert rc == 1
    assert "[default] results/default.json was made by `python -m fewmm.bench --name default`" in out


def test_registry_errors_name_the_entry(tmp_path):
    root = tmp_path
    (root / "paper").mkdir()
    (root / "paper" / "experiments.toml").write_text(
        '[[experiment]]\nname = "x"\ntitle = "t"\nkind = "table"\ngenerator = "nope"\nresults = ["results/x.json"]\n')
    with pytest.raises(FewmmError, match=r"#1 \(x\): generator 'nope' is not one of"):
        load_registry(root)
    (root / "paper" / "experiments.toml").write_text('[[experiment]]\nname = "x"\nkind = "table"\n')
    with pytest.raises(FewmmError, match="missing key 'title'"):
        load_registry(root)
    with pytest.raises(FewmmError, match="no experiment registry"):
        load_registry(tmp_path / "elsewhere")


def test_compare_cells_uses_the_combined_ci():
    """Pass when |new - old| <= sqrt(ci_old^2 + ci_new^2): here sqrt(0.3^2 + 0.4^2) = 0.5 exactly."""
    cell = dict(dataset="d", split="all", encoder="e", method="m", ways=5)
    old = {"results": [dict(cell, shots=1, accuracy=70.0, ci95=0.3), dict(cell, shots=5, accuracy=80.0, ci95=0.3)]}
    new = {"results": [dict(cell, shots=1, accuracy=70.5, ci95=0.4), dict(cell, shots=5, accuracy=80.51, ci95=0.4)]}
    out = compare_cells(old, new)
    assert [c["pass"] for c in out] == [True, False]
    assert out[0]["combined_ci95"] == 0.5 and out[1]["difference"] == 0.51


def test_markdown_to_latex_by_hand():
    md = "| a_b | c |\n|---|---|\n| **1.00 ± 0.20** | *x* `y%` |\n\nNote 5% & more.\n"
    tex = md_to_latex(md)
    assert r"\textbf{a\_b} & \textbf{c} \\ \hline" in tex
    assert r"\textbf{1.00 \ensuremath{\pm} 0.20} & \textit{x} \texttt{y\%} \\" in tex
    assert r"{\footnotesize Note 5\% \& more.\par}" in tex
    with pytest.raises(FewmmError, match="U\\+2603"):
        escape("snow \u2603")


def test_hand_numbers_skips_comments_macros_and_allowed():
    tex = "a 12.5 b \\numX{} c 95\\% d % 3.3 e\n\\cite{a1.2} 7.0\\%\n"
    assert hand_numbers(tex, allowed={"95\\%"}) == ["line 1: '12.5' in 'a 12.5 b \\\\numX{} c 95\\\\% d'",
                                                  "line 2: '7.0\\\\%' in '7.0\\\\%'"]


def test_provenance_reads_hashes_of_data_and_weights():
    p = provenance(REPO, "results/default.json")
    doc = json.loads((REPO / "results" / "default.json").read_text())
    assert p["commit"] == doc["environment"]["git_commit"]
    assert ("efficientnet-lite2", doc["encoders"]["efficientnet-lite2"]["weights_id"]) in p["weights"]
    assert ("pixels", "none") not in p["weights"]
    files = doc["datasets"]["digits"]["source"]["files"]
    assert (Path(next(iter(files))).name, next(iter(files.values()))) in p["data"]


def test_build_writes_tables_and_figures(tmp_path):
    """What CI builds when LaTeX is missing: every table, figure and macro file, equal to the committed ones."""
    root = _copy_repo(tmp_path)
    shutil.rmtree(root / "paper" / "generated")
    written = build_tables(root, say=lambda s: None)
    assert {p.name for p in written} == {p.name for p in (REPO / "paper" / "generated").iterdir()}
    for p in written:
        if p.suffix == ".tex":
            assert (root / p).read_text() == (REPO / p).read_text(), p
    rc, out = _run_check(root)
    assert rc == 0, out


def test_build_pdf(tmp_path):
    """The PDF builds (latexmk or pdflatex from scripts/install_tex.sh); about 20 s."""
    if latex_command() is None:
        pytest.skip("LaTeX not installed (latexmk / pdflatex): sudo bash scripts/install_tex.sh")
    from fewmm.paper import build

    root = _copy_repo(tmp_path)
    lines: list[str] = []
    assert build(root, say=lines.append) == 0, "\n".join(lines)
    pdf = root / "paper" / "main.pdf"
    assert pdf.exists() and pdf.read_bytes()[:5] == b"%PDF-"
    log = (root / "paper" / "main.log").read_text(errors="replace")
    assert "Undefined control sequence" not in log and "There were undefined references" not in log


def test_trainer_rows_get_their_own_table_and_leave_the_macros_alone():
    """Rows of heads trained by a MAML-family trainer (a ``trainer`` field) are compared with the
    prototypical rows of the same cell; the in-text macros keep reading the prototypical rows."""
    import copy

    from fewmm.paper.generators import GENERATORS
    from fewmm.paper.numbers import row

    doc = json.loads((REPO / "results" / "fusion-digits-av.json").read_text())
    first = doc["results"][0]
    extra = copy.deepcopy(first)
    extra["trainer"], extra["accuracy"] = "maml", first["accuracy"] + 1.5

    class Exp:
        results = ["results/fusion-digits-av.json"]

    md = GENERATORS["fusion-trainers"](REPO, Exp, [dict(doc, results=doc["results"] + [extra])])
    assert "| condition | head | fold, shots | protonet | maml |" in md
    assert (f"| {first['condition']} | {first['head']} | {first['fold']}, {first['shots']}-shot | "
            f"{first['accuracy']:.2f} ± {first['ci95']:.2f} | {extra['accuracy']:.2f} ± {extra['ci95']:.2f} (+1.50) |") in md
    picked = row(dict(doc, results=doc["results"] + [extra]), condition=first["condition"], head=first["head"],
                 fold=first["fold"], shots=first["shots"])
    assert picked["accuracy"] == first["accuracy"]
    assert GENERATORS["fusion-trainers"](REPO, Exp, [doc]).startswith("No results file of this build holds heads trained by")


def test_build_readme_rewrites_a_hand_edited_block(tmp_path):
    from fewmm.paper.commands import write_readme_blocks

    root = _copy_repo(tmp_path)
    readme = root / "README.md"
    text = readme.read_text()
    block = text.split("<!-- results:esc50-protonet -->")[1].split("<!-- /results:esc50-protonet -->")[0]
    num = next(t for t in block.split() if t.count(".") == 1 and t.replace(".", "").isdigit())
    readme.write_text(text.replace(block, block.replace(num, "12.34", 1)))
    rc, out = _run_check(root)
    assert rc == 1 and f"12.34 (written) vs {num} (from the JSON)" in out
    assert write_readme_blocks(root, say=lambda s: None) == 1
    assert readme.read_text() == text
    assert _run_check(root)[0] == 0


@pytest.mark.slow  # about 30-60 s on 2 busy cores: a real re-run of the digits-shots suite with 150 episodes
def test_reproduce_digits_shots_quick_passes(tmp_path):
    from fewmm.paper import reproduce

    lines: list[str] = []
    assert reproduce(REPO, "digits-shots", quick=True, out_dir=tmp_path, say=lines.append) == 0, "\n".join(lines)
    rep = json.loads((tmp_path / "digits-shots-quick.json").read_text())
    assert rep["quick"] and rep["quick_flags"] == "--episodes 150"
    assert rep["passed"] == rep["total"] == 20  # 5 shot counts x 4 methods, each within the combined 95% CI
    assert all(c["episodes_new"] == 150 and c["episodes_old"] == 600 for c in rep["cells"])
    assert (tmp_path / "digits-shots-quick.md").read_text().endswith("20/20 cells within the combined 95% CI: PASS.\n")
