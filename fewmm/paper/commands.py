"""``build``, ``check`` and ``reproduce`` of ``python -m fewmm.paper``."""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from ..errors import FewmmError
from ..progress import format_seconds, progress_bar
from .generators import appendix_tex, figure_tex, load_json, markdown, render_figure, sha256_file, table_tex
from .numbers import numbers_tex
from .registry import GENERATED, find, load_registry

NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")
SOURCE = re.compile(r"^% source (\S+) (?:sha256 ([0-9a-f]{64})|missing)$", re.M)


def expected_outputs(root: Path, registry) -> dict[Path, str]:
    """Every generated LaTeX file of the paper and its content made from the results now
    (relative path -> text)."""
    out = {}
    for exp in registry:
        if not exp.paper:
            continue
        out[exp.tex] = table_tex(root, exp) if exp.kind == "table" else figure_tex(root, exp)
    out[GENERATED / "numbers.tex"] = numbers_tex(root)
    out[GENERATED / "provenance.tex"] = appendix_tex(root, registry)
    return out


def build_tables(root: Path, figures: bool = True, say=print) -> list[Path]:
    """Write every generated table, figure, macro and appendix file under ``paper/generated``."""
    root = Path(root)
    registry = load_registry(root)
    outs = expected_outputs(root, registry)
    (root / GENERATED).mkdir(parents=True, exist_ok=True)
    written = []
    figs = [e for e in registry if e.kind == "figure" and e.paper] if figures else []
    bar = progress_bar(total=len(outs) + len(figs), desc="paper: tables and figures", unit="file")
    for rel, text in outs.items():
        (root / rel).write_text(text, encoding="utf-8")
        written.append(rel)
        bar.update(1)
    for exp in figs:
        render_figure(root, exp, root / exp.png)
        written.append(exp.png)
        bar.update(1)
    bar.close()
    say(f"wrote {len(written)} files under {GENERATED}/ ({len(figs)} figures)")
    return written


def latex_command() -> list[str] | None:
    """latexmk (preferred) or pdflatex, whichever is installed; None when neither is."""
    if shutil.which("latexmk"):
        return ["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error", "main.tex"]
    if shutil.which("pdflatex"):
        return ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "main.tex"]
    return None


def write_readme_blocks(root: Path, say=print) -> int:
    """Rewrite every registered README result block (``<!-- results:TAG -->``) from its JSON with the
    same generator as the paper; returns how many blocks changed."""
    from ..bench.report import update_block

    path = Path(root) / "README.md"
    text = before = path.read_text(encoding="utf-8")
    blocks = readme_blocks(text)
    for exp in load_registry(root):
        if exp.readme_tag and exp.readme_tag in blocks and all((Path(root) / r).exists() for r in exp.results):
            text = update_block(text, exp.readme_tag, markdown(root, exp))
    changed = sum(a != b for a, b in zip(readme_blocks(before).values(), readme_blocks(text).values()))
    path.write_text(text, encoding="utf-8")
    say(f"README.md: {changed} result block(s) rewritten from their JSON")
    return changed


def build(root: Path, pdf: bool = True, readme: bool = False, say=print) -> int:
    """Regenerate the tables, figures and in-text numbers, then the PDF (``paper/main.pdf``); with
    ``readme=True`` also rewrite the README result blocks.

    Returns 0 on success, 1 when LaTeX failed, 3 when no LaTeX is installed (tables still written)."""
    root = Path(root)
    t0 = time.monotonic()
    build_tables(root, say=say)
    if readme:
        write_readme_blocks(root, say=say)
    commit = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True).stdout.strip()
    (root / "paper" / "build").mkdir(parents=True, exist_ok=True)
    (root / "paper" / "build" / "commit.tex").write_text(
        f"\\newcommand{{\\buildcommit}}{{{commit or 'unknown'}{'+uncommitted changes' if dirty else ''}}}\n")
    if not pdf:
        return 0
    cmd = latex_command()
    if cmd is None:
        say("no LaTeX found (latexmk or pdflatex): the tables and figures are written under paper/generated/.\n"
            "To get the PDF: sudo bash scripts/install_tex.sh   (Debian/Ubuntu: TeX Live base + recommended + latexmk),\n"
            "then run python -m fewmm.paper build again (or: cd paper && latexmk -pdf main.tex).")
        return 3
    runs = [cmd] if cmd[0] == "latexmk" else [cmd, cmd]
    log = root / "paper" / "build" / "latex.log"
    for c in runs:
        r = subprocess.run(c, cwd=root / "paper", capture_output=True, text=True)
        log.write_text(r.stdout + r.stderr)
        if r.returncode != 0:
            tail = "\n".join((r.stdout + r.stderr).splitlines()[-25:])
            say(f"LaTeX failed ({' '.join(c)}, exit {r.returncode}); full log {log}:\n{tail}")
            return 1
    say(f"wrote paper/main.pdf in {format_seconds(time.monotonic() - t0)}")
    return 0


# --------------------------------------------------------------------------------------- check
def _number_diff(have: str, want: str, limit: int = 6) -> list[str]:
    """The numbers that differ between the written and the regenerated version of a generated text,
    with a little context (lines aligned with difflib, so an added or removed row is named as such)."""
    import difflib

    hl = [ln for ln in have.splitlines() if not ln.startswith("% source")]
    wl = [ln for ln in want.splitlines() if not ln.startswith("% source")]
    out = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, hl, wl, autojunk=False).get_opcodes():
        if op == "equal":
            continue
        if op == "replace" and i2 - i1 == j2 - j1:
            for a, b in zip(hl[i1:i2], wl[j1:j2]):
                if "sha256" in a and "sha256" in b:
                    out.append(f"a recorded sha256 differs in: {a.strip()[:110]}")
                    continue
                na, nb = NUMBER.findall(a), NUMBER.findall(b)
                pairs = [(x, y) for x, y in zip(na, nb) if x != y] + [(x, "-") for x in na[len(nb):]] + [("-", y) for y in nb[len(na):]]
                out += ([f"{x} (written) vs {y} (from the JSON) in: {a.strip()[:110]}" for x, y in pairs[:3]] if pairs
                        else [f"text differs: {a.strip()[:90]!r} vs {b.strip()[:90]!r}"])
        else:
            out += [f"written, not in the JSON's version: {a.strip()[:110]}" for a in hl[i1:i2]]
            out += [f"missing (the JSON gives): {b.strip()[:110]}" for b in wl[j1:j2]]
        if len(out) >= limit:
            break
    return out[:limit]


def readme_blocks(text: str) -> dict[str, str]:
    """``<!-- results:TAG -->`` blocks of a Markdown file: tag -> content."""
    return {m.group(1): m.group(2) for m in re.finditer(r"<!-- results:(\S+) -->\n(.*?)<!-- /results:\1 -->", text, re.S)}


HAND_NUMBER = re.compile(r"(?<![\\\w{.])(\d+(?:\.\d+)?\s*\\%|\d+\.\d+)")


def hand_numbers(tex: str, allowed=()) -> list[str]:
    """Decimal numbers and percentages typed into LaTeX source (comments and macro names left out),
    except the tokens of ``allowed`` (definitions such as ``95\\%``)."""
    found = []
    for i, line in enumerate(tex.splitlines(), 1):
        code = re.split(r"(?<!\\)%", line, maxsplit=1)[0]
        code = re.sub(r"\\(cite[tp]?|ref|label|input|includegraphics|url|texttt)\{[^}]*\}", "", code)
        for m in HAND_NUMBER.finditer(code):
            if m.group(0).replace(" ", "") in allowed:
                continue
            found.append(f"line {i}: {m.group(0)!r} in {code.strip()[:80]!r}")
    return found


def check(root: Path, say=print) -> int:
    """Compare every generated file of ``paper/`` and every README result block with the results
    JSON; list stale outputs, numbers that differ (naming the table), outputs and README blocks with
    no registered source, registered commands that differ from the command the results file records,
    and numbers typed into the paper's sections by hand. Returns 0 when all agree, else 1."""
    root = Path(root)
    problems: list[str] = []
    registry = load_registry(root)
    # 1. the registry: results exist, configs exist, commands are the ones recorded
    for exp in registry:
        for r in exp.results:
            if not (root / r).exists() and not exp.optional:
                problems.append(f"[{exp.name}] results file {r} does not exist")
        for c in exp.config:
            if not (root / c).exists():
                problems.append(f"[{exp.name}] config {c} does not exist")
        for cmd in exp.command:
            m = re.search(r"--config[ =](\S+)", cmd)
            if m and m.group(1) not in exp.config:
                problems.append(f"[{exp.name}] the command reads --config {m.group(1)}, which is not in its registered config list {exp.config}")
        for r in exp.results:
            if not (root / r).exists():
                continue
            try:
                rec = load_json(root, r).get("command")
            except FewmmError as e:
                problems.append(f"[{exp.name}] {e}")
                continue
            if rec and not exp.command and exp.optional:
                say(f"note: [{exp.name}] no command registered yet; {r} records `{rec}` (add it to paper/experiments.toml)")
            elif rec and rec not in exp.command:
                problems.append(f"[{exp.name}] {r} was made by `{rec}`, but the registry says {exp.command}: "
                                "register the command that ran (or rerun the registered one)")
    # 2. generated files of the paper
    try:
        want = expected_outputs(root, registry)
    except FewmmError as e:
        say(f"paper check: cannot regenerate the paper's tables: {e}")
        return 1
    for rel, text in want.items():
        path = root / rel
        label = rel.stem
        if not path.exists():
            problems.append(f"[{label}] {rel} missing: run python -m fewmm.paper build")
            continue
        have = path.read_text(encoding="utf-8")
        if have == text:
            continue
        strip = lambda s: "\n".join(ln for ln in s.splitlines() if not ln.startswith("% source"))  # noqa: E731
        if strip(have) != strip(text):
            problems.append(f"[{label}] table {rel} does not match its results JSON:\n      " + "\n      ".join(_number_diff(have, text)))
        stale = []
        want_src = dict((m.group(1), m.group(2)) for m in SOURCE.finditer(text))
        for m in SOURCE.finditer(have):
            if want_src.get(m.group(1), "gone") != m.group(2):
                stale.append(m.group(1))
        if stale:
            problems.append(f"[{label}] stale: {rel} was generated from an older {', '.join(sorted(set(stale)))} "
                            "(the results changed since): run python -m fewmm.paper build")
    for exp in registry:
        if exp.kind == "figure" and exp.paper and not (root / exp.png).exists():
            problems.append(f"[{exp.name}] figure {exp.png} missing: run python -m fewmm.paper build")
    known = set(want) | {e.png for e in registry if e.kind == "figure"}
    gen = root / GENERATED
    if gen.exists():
        for p in sorted(gen.iterdir()):
            if p.relative_to(root) not in known:
                problems.append(f"[{p.name}] {p.relative_to(root)}: a generated file that no registered experiment makes (no source)")
    # 3. hand-typed numbers in the sections
    import tomllib

    allowed = set(tomllib.loads((root / "paper" / "experiments.toml").read_text(encoding="utf-8")).get("check", {}).get("not_results", []))
    for tex in sorted((root / "paper").glob("*.tex")) + sorted((root / "paper" / "sections").glob("*.tex")):
        for h in hand_numbers(tex.read_text(encoding="utf-8"), allowed):
            problems.append(f"[{tex.relative_to(root)}] number with no source (typed by hand; use a macro of numbers.tex): {h}")
    # 4. README result blocks
    readme = root / "README.md"
    if readme.exists():
        blocks = readme_blocks(readme.read_text(encoding="utf-8"))
        by_tag = {e.readme_tag: e for e in registry if e.readme_tag}
        for tag, content in blocks.items():
            exp = by_tag.get(tag)
            if exp is None:
                problems.append(f"[README:{tag}] README block with no registered source in paper/experiments.toml")
                continue
            if exp.optional and not content.strip() and not all((root / r).exists() for r in exp.results):
                continue  # an empty block of results that do not exist yet
            try:
                md = markdown(root, exp)
            except FewmmError as e:
                problems.append(f"[README:{tag}] cannot regenerate: {e}")
                continue
            if md != content:
                problems.append(f"[README:{tag}] README block `{tag}` does not match {', '.join(exp.results)}:\n      "
                                + "\n      ".join(_number_diff(content, md)))
        for tag in set(by_tag) - set(blocks):
            if by_tag[tag].optional:
                continue
            problems.append(f"[README:{tag}] registered README block <!-- results:{tag} --> is not in README.md")
    n_numbers = sum(len(NUMBER.findall(t)) for t in want.values())
    if problems:
        say(f"paper check: {len(problems)} problem(s):")
        for p in problems:
            say("  " + p)
        return 1
    say(f"paper check: OK ({len(want)} generated files, {n_numbers} numbers, {len(registry)} registered experiments, "
        f"README blocks all equal to their JSON)")
    return 0


# --------------------------------------------------------------------------------------- reproduce
def _cell_key(r: dict) -> tuple:
    return tuple(r.get(k) for k in ("dataset", "split", "encoder", "task", "fold", "condition", "head", "modality",
                                    "protocol", "method", "ways", "shots"))


def compare_cells(old: dict, new: dict) -> list[dict]:
    """Cell-by-cell comparison of two results documents: each cell passes when the two accuracies
    differ by at most the combined 95% CI, ``sqrt(ci_old^2 + ci_new^2)`` (the half-width of the 95%
    interval of the difference of two independent means)."""
    old_rows = {_cell_key(r): r for r in old.get("results", []) if "accuracy" in r}
    out = []
    for r in new.get("results", []):
        if "accuracy" not in r:
            continue
        o = old_rows.get(_cell_key(r))
        if o is None:
            out.append({"cell": _cell_key(r), "new": r["accuracy"], "old": None, "pass": False, "why": "no such cell committed"})
            continue
        ci = math.hypot(o.get("ci95", 0.0), r.get("ci95", 0.0))
        d = r["accuracy"] - o["accuracy"]
        out.append({"cell": [x for x in _cell_key(r) if x is not None], "old": o["accuracy"], "old_ci95": o.get("ci95"),
                    "new": r["accuracy"], "new_ci95": r.get("ci95"), "episodes_old": o.get("episodes"),
                    "episodes_new": r.get("episodes"), "difference": round(d, 4), "combined_ci95": round(ci, 4),
                    "pass": abs(d) <= ci})
    return out


def reproduce(root: Path, name: str, quick: bool = False, out_dir: Path | None = None, say=print) -> int:
    """Re-run the experiment behind one registered table from its registered command and config,
    and compare it cell by cell with the committed results file (see :func:`compare_cells`).
    Writes ``paper/reproduce/<name>[-quick].{json,md}``. Returns 0 when every cell passes."""
    root = Path(root)
    exp = find(load_registry(root), name)
    if len(exp.results) != 1 or len(exp.command) != 1:
        raise FewmmError(f"reproduce {name}: needs one results file and one command (it has {len(exp.results)} and "
                         f"{len(exp.command)}); reproduce its parts one at a time")
    if quick and not exp.quick:
        raise FewmmError(f"reproduce {name} --quick: no quick mode registered (no `quick` key in paper/experiments.toml); "
                         f"run without --quick, or choose one of: "
                         + ", ".join(e.name for e in load_registry(root) if e.quick))
    old = load_json(root, exp.results[0])
    tmp = Path(tempfile.mkdtemp(prefix=f"fewmm-reproduce-{name}-"))
    argv = shlex.split(exp.command[0])
    if argv[0] != "python":
        raise FewmmError(f"reproduce {name}: the registered command does not start with python: {exp.command[0]}")
    stem = Path(exp.results[0]).stem
    argv = [sys.executable] + argv[1:] + ["--out", str(tmp)] + (["--name", stem] if "--name" not in argv else [])
    if quick:
        argv += shlex.split(exp.quick)
    factor = 1.0
    m = re.search(r"--episodes\s+(\d+)", exp.quick or "") if quick else None
    if m and old.get("episodes"):
        factor = int(m.group(1)) / float(old["episodes"])
    expected = 15.0 + float(old.get("wall_seconds") or 60.0) * factor  # + ~15 s to start (imports, data) on 2 busy cores
    say(f"reproduce {name}{' (quick: ' + exp.quick + ', so fewer test episodes than the committed run)' if quick else ''}: "
        f"{shlex.join(['python'] + argv[1:])}\n  the committed run took {old.get('wall_seconds')} s; expect about "
        f"{format_seconds(expected)} (rough: scaled by the episode count; encoders run again when their features are not cached)")
    log = tmp / "run.log"
    env = dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t0 = time.monotonic()
    with open(log, "w") as fh:
        proc = subprocess.Popen(argv, cwd=root, stdout=fh, stderr=subprocess.STDOUT, env=env)
        bar = progress_bar(total=int(expected), desc=f"reproduce {name}", unit="s")
        stop = threading.Event()

        def tick():
            while not stop.wait(1.0):
                if bar.n + 1 >= bar.total:  # slower than the estimate: extend it by a quarter, so a time left still shows
                    bar.total = int(bar.total * 1.25) + 1
                bar.update(1)
        th = threading.Thread(target=tick, daemon=True)
        th.start()
        try:
            rc = proc.wait()
        except KeyboardInterrupt:
            proc.terminate()  # the run keeps what it measured and the features it encoded (its own SIGTERM handling)
            proc.wait()
            stop.set()
            bar.close()
            say(f"interrupted; the run's log is {log}")
            return 130
        stop.set()
        th.join()
        bar.close()
    wall = time.monotonic() - t0
    if rc != 0:
        say(f"the run failed (exit {rc}); last lines of {log}:\n" + "\n".join(log.read_text().splitlines()[-15:]))
        return 1
    new = json.loads((tmp / f"{stem}.json").read_text())
    cells = compare_cells(old, new)
    n_pass = sum(c["pass"] for c in cells)
    ok = bool(cells) and n_pass == len(cells)
    out_dir = Path(out_dir) if out_dir else root / "paper" / "reproduce"
    out_dir.mkdir(parents=True, exist_ok=True)
    tag = f"{name}{'-quick' if quick else ''}"
    report = {"experiment": name, "quick": quick, "quick_flags": exp.quick if quick else None,
              "command": shlex.join(["python"] + argv[1:]).replace(str(tmp), "<tmp>"), "committed_results": exp.results[0],
              "committed_sha256": sha256_file(root / exp.results[0]), "rule": "pass: |new - old| <= sqrt(ci_old^2 + ci_new^2) per cell",
              "wall_seconds": round(wall, 1), "cells": cells, "passed": n_pass, "total": len(cells), "ok": ok}
    (out_dir / f"{tag}.json").write_text(json.dumps(report, indent=1) + "\n")
    lines = [f"# reproduce {name}{' --quick' if quick else ''}", "",
             f"Command: `{report['command']}` ({'quick: ' + exp.quick + '; ' if quick else ''}{wall:.0f} s).",
             f"Compared with `{exp.results[0]}` (sha256 {report['committed_sha256'][:12]}). Rule: {report['rule']}.", "",
             "| cell | committed | rerun | difference | combined 95% CI | pass |", "|---|---|---|---|---|---|"]
    for c in cells:
        lines.append(f"| {' / '.join(map(str, c['cell']))} | {c['old']:.2f} ± {c['old_ci95']:.2f} | {c['new']:.2f} ± {c['new_ci95']:.2f} | "
                     f"{c['difference']:+.2f} | {c['combined_ci95']:.2f} | {'yes' if c['pass'] else 'NO'} |"
                     if c["old"] is not None else f"| {c['cell']} | (none) | {c['new']:.2f} | | | NO |")
    lines += ["", f"{n_pass}/{len(cells)} cells within the combined 95% CI: {'PASS' if ok else 'FAIL'}."]
    (out_dir / f"{tag}.md").write_text("\n".join(lines) + "\n")
    say(f"{n_pass}/{len(cells)} cells within the combined 95% CI: {'PASS' if ok else 'FAIL'} "
        f"(report {(out_dir / (tag + '.md')).relative_to(root) if out_dir.is_relative_to(root) else out_dir / (tag + '.md')})")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1
