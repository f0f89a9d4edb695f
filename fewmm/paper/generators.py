"""Everything the paper shows, made from ``results/*.json`` by code: the Markdown of each table (the
same functions that write the README result blocks), its LaTeX form, the provenance of each table
(command, config, commit, data and encoder-weight hashes read from the results JSON) and the
in-text numbers (LaTeX macros).

No number here is typed by hand: each is formatted from a results file, or from a constant of the
code that cites its paper (the published Omniglot numbers, ``fewmm.bench.backbone.PUBLISHED``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from pathlib import Path

from ..errors import FewmmError

HEX64 = re.compile(r"^[0-9a-f]{64}$")


def sha256_file(path: Path) -> str:
    """sha256 (hex) of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_json(root: Path, rel: str) -> dict:
    """Read ``root/rel`` as a results document; FewmmError naming the file when it cannot."""
    path = Path(root) / rel
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FewmmError(f"{rel}: no such results file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FewmmError(f"{rel}: not a readable results JSON ({type(e).__name__}: {e})") from None
    if not isinstance(doc, dict):
        raise FewmmError(f"{rel}: expected a JSON object, got {type(doc).__name__}")
    return doc


# ----------------------------------------------------------------------------- Markdown generators
def _bench(root, exp, docs):
    from ..bench.report import markdown_table

    return markdown_table(docs[0])


def _fusion(root, exp, docs):
    from ..bench.report import fusion_table

    return fusion_table(docs[0])


def _backbone(root, exp, docs):
    from ..bench.report import backbone_table

    return backbone_table(docs[0])


def _omniglot_summary(root, exp, docs):
    from ..bench.report import omniglot_summary

    return omniglot_summary(docs)


def _transfer(root, exp, docs):
    from ..bench.transfer import markdown_table

    return markdown_table(docs[0])


def _speed(root, exp, docs):
    from ..bench.speed_report import speed_markdown

    th = [r for r in exp.results if "episode_throughput" in r]
    maml = [r for r in exp.results if "maml_speed" in r]
    other = {k: next((r for r in exp.results if k in r), None) for k in ("adapter_latency", "protonet_train_speed",
                                                                         "maml_conv4_memory", "extraction_speed")}
    return speed_markdown(root, th, maml, other["adapter_latency"], other["protonet_train_speed"],
                          other["maml_conv4_memory"], other["extraction_speed"])


def _mutation(root, exp, docs):
    path = Path(root) / "benchmarks" / "mutation.py"
    spec = importlib.util.spec_from_file_location("fewmm_benchmarks_mutation", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.readme_block(docs[0], str(Path(exp.results[0]).with_suffix(".md")))


def _scalar(v) -> str:
    if isinstance(v, float):
        return f"{v:.2f}"
    return str(v)


def _flat_table(doc: dict, limit: int = 80) -> str:
    """Any results document as a two-column table of its scalar leaves (``a.b.c | value``; a list of
    numbers on one line), for a file whose layout no generator knows yet."""
    out: list = []

    def walk(o, path):
        if isinstance(o, dict):
            for k, v in o.items():
                walk(v, path + [str(k)])
        elif isinstance(o, list) and o and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in o):
            out.append((".".join(path), ", ".join(_scalar(x) for x in o)))
        elif isinstance(o, list):
            for i, v in enumerate(o):
                walk(v, path + [str(i)])
        elif o is not None:
            out.append((".".join(path), _scalar(o)))

    walk(doc, [])
    lines = ["| field | value |", "|---|---|"] + [f"| {k} | {v[:120]} |" for k, v in out[:limit]]
    more = f"\n{len(out) - limit} further fields are in the results file.\n" if len(out) > limit else ""
    return "\n".join(lines) + "\n" + more


def _omniglot_challenge(root, exp, docs):
    """The table of ``results/omniglot-challenge.json``: the function of the module that writes it and
    its README block (``fewmm.bench.omniglot_challenge.challenge_table``) when there is one, else the
    rows' scalar fields, else every scalar field of the file, as a table."""
    try:
        from ..bench import omniglot_challenge as oc  # written by the Omniglot challenge work
    except ImportError:
        oc = None
    for fn in ("challenge_table", "markdown_table"):
        if oc is not None and hasattr(oc, fn):
            return getattr(oc, fn)(docs[0])
    doc = docs[0]
    rows = doc.get("results", doc.get("rows"))
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        return _flat_table(doc)
    keys = list(dict.fromkeys(k for r in rows for k, v in r.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        lines.append("| " + " | ".join(_scalar(r.get(k, "")) for k in keys) + " |")
    return "\n".join(lines) + f"\n\nCommand: `{doc.get('command')}`.\n"


PROTO_TRAINERS = (None, "", "protonet", "prototypical")


def _fusion_trainers(root, exp, docs):
    """The paragraph and table of :func:`fewmm.bench.report.trainer_summary` (the README block)."""
    from ..bench.report import trainer_summary

    try:
        return trainer_summary(docs)
    except (KeyError, ValueError):
        return _fusion_trainers_cells(root, exp, docs)


def _fusion_trainers_cells(root, exp, docs):
    """Prototypical vs MAML-family training of the same heads: for every (task, condition, head,
    fold, shots) cell that rows of several ``trainer`` values share, the accuracy of each trainer and
    the difference to the prototypical one. Rows without a ``trainer`` field are prototypical."""
    lines, trainers_seen = [], set()
    for rel, doc in zip(exp.results, docs):
        rows = doc.get("results", [])
        cells: dict = {}
        for r in rows:
            key = (r.get("condition"), r.get("head"), r.get("fold"), r.get("shots"))
            cells.setdefault(key, {})[r.get("trainer") or "protonet"] = r
        multi = {k: v for k, v in cells.items() if len(v) > 1}
        if not multi:
            continue
        trainers = sorted({t for v in multi.values() for t in v}, key=lambda t: (t != "protonet", t))
        trainers_seen |= set(trainers)
        lines += [f"**{doc.get('task', rel)}** (`{rel}`)", "",
                  "| condition | head | fold, shots | " + " | ".join(trainers) + " |", "|---|---|---|" + "---|" * len(trainers)]
        for (cond, head, fold, shots), v in multi.items():
            base = v.get("protonet")
            cs = []
            for t in trainers:
                r = v.get(t)
                if r is None:
                    cs.append("")
                    continue
                c = f"{r['accuracy']:.2f} ± {r['ci95']:.2f}"
                if base is not None and t != "protonet":
                    c += f" ({r['accuracy'] - base['accuracy']:+.2f})"
                cs.append(c)
            lines.append(f"| {cond} | {head} | {fold}, {shots}-shot | " + " | ".join(cs) + " |")
        lines.append("")
    if not lines:
        return ("No results file of this build holds heads trained by a MAML-family trainer (rows with a `trainer` "
                "field other than protonet): " + ", ".join(f"`{r}`" for r in exp.results) + ".\n")
    return "\n".join(lines) + ("\nNovel-class accuracy (%) ± 95% CI; in brackets the difference to the prototypical "
                               "training of the same head on the same episodes.\n")


def _paper_timings(root, exp, docs):
    """How long each part of reproducing the paper takes: the paper commands timed by
    ``benchmarks/paper_timings.py`` (its JSON), then the wall time every registered results file
    records for the run that made it."""
    from ..bench.report import training_seconds
    from .registry import load_registry

    doc = docs[0]
    env = doc.get("environment", {})
    lines = ["| part | command | wall time | feature cache | load average at start |", "|---|---|---|---|---|"]
    for st in doc["steps"]:
        lines.append(f"| {st['step']} | `{st['command']}` | {st['seconds']:.1f} s{'' if st['exit_code'] == 0 else ' (exit ' + str(st['exit_code']) + ')'} "
                     f"| {st['note'] or 'not used'} | {st['loadavg_before']:.1f} |")
    lines += ["", f"Measured by `{doc['command']}` on {env.get('cpu_count')} cores (shared with other jobs) at commit "
                  f"{str(env.get('git_commit'))[:10]}.", "",
              "| experiment | results file | wall time of the run that made it | of which training | device |", "|---|---|---|---|---|"]
    seen = set()
    for e in sorted(load_registry(root), key=lambda e: len(e.results) > 1):  # a file is listed under its own table first
        for rel in e.results:
            if rel in seen or rel == exp.results[0] or not (Path(root) / rel).exists():
                continue
            seen.add(rel)
            d = load_json(root, rel)
            w = d.get("wall_seconds")
            t = d.get("training", {})
            tr = training_seconds(t["history"]) if isinstance(t, dict) and t.get("history") else None
            dev = d.get("device") or (t.get("config", {}).get("device") if isinstance(t, dict) else None) or "not recorded"
            lines.append(f"| {e.name} | `{rel}` | {f'{w / 60:.1f} min' if w is not None else 'not recorded'} | "
                         f"{f'{tr / 60:.1f} min' if tr else ''} | {dev} |")
    return "\n".join(lines) + ("\nWall times as each results file records them (its encoders may have found their features "
                               "cached); a resumed training counts every part.\n")


def _precision(root, exp, docs):
    """bf16/fp16 extraction against float32 (benchmarks/precision_tolerance.py's own table)."""
    path = Path(root) / "benchmarks" / "precision_tolerance.py"
    spec = importlib.util.spec_from_file_location("fewmm_benchmarks_precision", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.table(docs[0])


def _no_markdown(root, exp, docs):
    return ""


#: generator name -> function (root, experiment, docs) -> Markdown of the table (README block text)
GENERATORS = {"bench": _bench, "fusion": _fusion, "backbone": _backbone, "omniglot-summary": _omniglot_summary,
              "transfer": _transfer, "speed": _speed, "mutation": _mutation, "omniglot-challenge": _omniglot_challenge,
              "fusion-trainers": _fusion_trainers, "paper-timings": _paper_timings, "precision": _precision, "plot": _no_markdown, "plot-fusion": _no_markdown}


def markdown(root: Path, exp) -> str:
    """The Markdown of an experiment's table, made from its results files now."""
    docs = [load_json(root, r) for r in exp.results]
    try:
        return GENERATORS[exp.generator](Path(root), exp, docs)
    except FewmmError:
        raise
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise FewmmError(f"{exp.name}: cannot make its table from {', '.join(exp.results)} ({type(e).__name__}: {e})") from None


def render_figure(root: Path, exp, out: Path) -> Path:
    """Draw an experiment's figure (kind ``figure``) from its results file into ``out`` (PNG)."""
    src = Path(root) / exp.results[0]
    if exp.generator == "plot":
        from ..bench.plot import plot
    else:
        from ..bench.plot_fusion import plot
    return plot(src, out)


# ----------------------------------------------------------------------------- provenance
def _walk(o, path, out):
    if isinstance(o, dict):
        for k, v in o.items():
            _walk(v, path + [str(k)], out)
    elif isinstance(o, list):
        for v in o:
            _walk(v, path, out)
    elif isinstance(o, str):
        out.append((path, o))


def provenance(root: Path, rel: str) -> dict:
    """What a results file records about where its numbers come from.

    Returns
    -------
    dict
        ``file``, ``sha256`` (of the results file), ``command``, ``commit`` (the git commit the
        run recorded, or None), ``data`` (sorted list of (name, sha256) of the data files or data
        sets it read) and ``weights`` (sorted list of (encoder, weights id) of the frozen encoders).
    """
    path = Path(root) / rel
    doc = load_json(root, rel)
    found: list = []
    _walk(doc, [], found)
    data, weights = set(), set()
    for p, v in found:
        if not p:
            continue
        if p[-1] == "weights_id" and v and v != "none":
            name = p[-2] if len(p) > 1 else "?"
            if name.endswith("encoder") and len(p) > 2:  # class_text/encoder, item_encoder, text_encoder
                name = f"{p[-3]}/{name}"
            weights.add((name, v))
        elif HEX64.match(v) and ("files" in p[:-1] or p[-1].endswith("sha256")) and "weights" not in p[-1]:
            name = Path(p[-1]).name if "files" in p[:-1] else (p[p.index("datasets") + 1] if "datasets" in p else "/".join(p[-3:]))
            data.add((name, v))
    env = doc.get("environment") if isinstance(doc.get("environment"), dict) else {}
    return {"file": rel, "sha256": sha256_file(path), "command": doc.get("command"), "commit": env.get("git_commit"),
            "data": sorted(data), "weights": sorted(weights)}


# ----------------------------------------------------------------------------- Markdown -> LaTeX
_UNICODE = {"±": r"\ensuremath{\pm}", "×": r"\ensuremath{\times}", "≥": r"\ensuremath{\geq}", "≤": r"\ensuremath{\leq}",
            "–": "--", "—": "---", "…": r"\ldots{}", "→": r"\ensuremath{\rightarrow}", "−": "-", "Δ": r"\ensuremath{\Delta}",
            "’": "'", "“": "``", "”": "''", "·": r"\ensuremath{\cdot}", "≈": r"\ensuremath{\approx}", "µ": r"\ensuremath{\mu}",
            "é": r"\'e", "ö": r'\"o', "ü": r'\"u', "ä": r'\"a', "°": r"\ensuremath{^\circ}"}
_SPECIAL = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&", "#": r"\#", "%": r"\%", "_": r"\_",
            "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}"}


def escape(text: str) -> str:
    """Escape plain text for LaTeX (special characters, the few non-ASCII characters the tables use).

    Raises
    ------
    FewmmError
        A non-ASCII character with no LaTeX form here (add it to ``_UNICODE``).
    """
    out = []
    for ch in text:
        if ch in _SPECIAL:
            out.append(_SPECIAL[ch])
        elif ch in _UNICODE:
            out.append(_UNICODE[ch])
        elif ord(ch) > 127:
            raise FewmmError(f"no LaTeX form for the character {ch!r} (U+{ord(ch):04X}) in {text[:80]!r}")
        else:
            out.append(ch)
    return "".join(out)


_INLINE = re.compile(r"`([^`]*)`|\*\*(.+?)\*\*|\*(.+?)\*")


def inline(text: str) -> str:
    """Markdown inline text (``code``, **bold**, *italic*) to LaTeX."""
    out, pos = [], 0
    for m in _INLINE.finditer(text):
        out.append(escape(text[pos:m.start()]))
        if m.group(1) is not None:
            out.append(tt(m.group(1)))
        elif m.group(2) is not None:
            out.append(r"\textbf{" + inline(m.group(2)) + "}")
        else:
            out.append(r"\textit{" + inline(m.group(3)) + "}")
        pos = m.end()
    out.append(escape(text[pos:]))
    return "".join(out)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def md_to_latex(md: str) -> str:
    """A Markdown block (pipe tables and paragraphs) as LaTeX: each table a ``tabular`` scaled to the
    line width, each paragraph a small-print note."""
    blocks, cur, table = [], [], None
    for line in md.splitlines() + [""]:
        is_row = line.lstrip().startswith("|")
        if cur and (is_row != table or not line.strip()):
            blocks.append((table, cur))
            cur = []
        if line.strip():
            cur.append(line)
            table = is_row
    out = []
    for is_table, lines in blocks:
        if not is_table:
            out.append(r"{\footnotesize " + inline(" ".join(x.strip() for x in lines)) + r"\par}" + "\n")
            continue
        head = _cells(lines[0])
        body = [_cells(x) for x in lines[1:] if not re.fullmatch(r"\|?(\s*:?-+:?\s*\|)+\s*:?-*:?\s*\|?", x.strip())]
        n = len(head)
        rows = [" & ".join(r"\textbf{" + inline(h) + "}" for h in head) + r" \\ \hline"]
        for r in body:
            r = (r + [""] * n)[:n]
            rows.append(" & ".join(inline(c) for c in r) + r" \\")
        out.append("\\smallskip\\noindent\\resizebox{\\linewidth}{!}{%\n\\begin{tabular}{" + "l" * n + "}\n\\hline\n"
                   + "\n".join(rows) + "\n\\hline\n\\end{tabular}}\n\\smallskip\n")
    return "\n".join(out)


def tt(text: str) -> str:
    """``\\texttt`` of escaped text that may break after ``/``, ``,``, ``=`` and inside long hex hashes."""
    out = escape(text)
    out = re.sub(r"([0-9a-f]{8})(?=[0-9a-f]{4})", r"\1\\allowbreak{}", out)
    out = out.replace("/", "/\\allowbreak{}").replace(",", ",\\allowbreak{}").replace("=", "=\\allowbreak{}")
    return r"\texttt{" + out + "}"


def short(h: str | None, n: int = 12) -> str:
    return h[:n] if h else "not recorded"


def caption_provenance(prov: list[dict], exp) -> str:
    """The provenance sentence of a caption (LaTeX): commands, configs, commits, hashes (short;
    the full hashes are in the generated appendix)."""
    cmds = exp.command or [p["command"] for p in prov if p["command"]]
    parts = ["Made by " + "; ".join(tt(c) for c in cmds) if cmds else "Command not recorded"]
    parts.append("config " + (", ".join(tt(c) for c in exp.config) if exp.config else "none (flags only)"))
    commits = sorted({short(p["commit"], 10) for p in prov})
    parts.append("commit " + ", ".join(commits))
    data = sorted({(n, h) for p in prov for n, h in p["data"]})
    parts.append("data sha256 " + (", ".join(f"{escape(n)} {h[:12]}" for n, h in data) if data else "not recorded in the results file"))
    w = sorted({(n, h) for p in prov for n, h in p["weights"]})
    parts.append("encoder weights " + (", ".join(f"{escape(n)} {h[:12]}" for n, h in w) if w else "none recorded (no pretrained weights in this run: raw pixels, log-mel statistics, a backbone trained from scratch, or a timing benchmark)"))
    parts.append("results " + ", ".join(tt(p["file"]) for p in prov))
    return ". ".join(parts) + f". Full hashes: Appendix~\\ref{{app:provenance}}."


HEADER = ("% GENERATED by `python -m fewmm.paper build` from the results file(s) named below: do not edit.\n"
          "% `python -m fewmm.paper check` compares every number here with the JSON.\n")


def source_lines(prov: list[dict]) -> str:
    return "".join(f"% source {p['file']} sha256 {p['sha256']}\n" for p in prov)


def table_tex(root: Path, exp) -> str:
    """The generated LaTeX file of a registered table (a ``table`` float with caption, label,
    provenance and the table's notes)."""
    missing = [r for r in exp.results if not (Path(root) / r).exists()]
    if missing and exp.optional:
        return (HEADER + "".join(f"% source {r} missing\n" for r in missing)
                + f"% {exp.name}: results not available yet\n\\begin{{table}}[htbp]\n\\caption{{{escape(exp.title)}. "
                + "Not available in this build: " + ", ".join(tt(r) for r in missing)
                + f" does not exist yet.}}\\label{{tab:{exp.name}}}\n\\end{{table}}\n")
    prov = [provenance(root, r) for r in exp.results]
    body = md_to_latex(markdown(root, exp))
    place = "p" if body.count("\\\\") > 30 else "htbp"  # a long table gets a page of its own
    return (HEADER + source_lines(prov) + f"\\begin{{table}}[{place}]\n" + "\\centering\n\\caption{" + escape(exp.title) + ". "
            + caption_provenance(prov, exp) + f"}}\\label{{tab:{exp.name}}}\n" + body + "\\end{table}\n")


def figure_tex(root: Path, exp) -> str:
    """The generated LaTeX of a registered figure (the PNG is drawn by :func:`render_figure`)."""
    prov = [provenance(root, r) for r in exp.results]
    return (HEADER + source_lines(prov) + "\\begin{figure}[htbp]\n\\centering\n"
            + f"\\includegraphics[width=\\linewidth]{{generated/{exp.name}.png}}\n\\caption{{" + escape(exp.title) + ". "
            + caption_provenance(prov, exp) + f"}}\\label{{fig:{exp.name}}}\n\\end{{figure}}\n")


def appendix_tex(root: Path, registry) -> str:
    """The generated appendix: for every table and figure, its results files with full sha256,
    commands, configs, commits, data and encoder-weight hashes."""
    out = [HEADER]
    srcs = []
    for exp in registry:
        if not exp.paper:
            continue
        out.append(f"\\paragraph{{{escape(exp.name)}}} ({exp.kind} \\ref{{{'tab' if exp.kind == 'table' else 'fig'}:{exp.name}}})\n")
        out.append("\\begin{itemize}\\setlength\\itemsep{0pt}\\footnotesize\n")
        for c in exp.command:
            out.append(f"\\item command: {tt(c)}\n")
        out.append("\\item config: " + (", ".join(tt(c) for c in exp.config) or "none (flags only)") + "\n")
        for r in exp.results:
            if not (Path(root) / r).exists():
                out.append(f"\\item results {tt(r)}: not available yet\n")
                srcs.append(f"% source {r} missing\n")
                continue
            p = provenance(root, r)
            srcs.append(source_lines([p]))
            out.append(f"\\item results {tt(r)} sha256 {tt(p['sha256'])}, commit {tt(p['commit'] or 'not recorded')}\n")
            for n, h in p["data"]:
                out.append(f"\\item data {escape(n)}: sha256 {tt(h)}\n")
            for n, h in p["weights"]:
                out.append(f"\\item encoder {escape(n)}: weights {tt(h)}\n")
        out.append("\\end{itemize}\n")
    return out[0] + "".join(dict.fromkeys(srcs)) + "".join(out[1:])
