"""Turn a results JSON of ``python -m fewmm.bench`` into a Markdown table.

    python -m fewmm.bench.report results/default.json                 # print the table
    python -m fewmm.bench.report results/default.json --readme README.md
        # rewrite the block between <!-- results:default --> and <!-- /results:default -->

Numbers are copied from the JSON by code, never by hand.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path


def paired_ci(rows: dict, a: str, b: str) -> tuple[float, bool]:
    """95% CI half-width of the paired difference ``a - b`` of two methods of one cell.

    Parameters
    ----------
    rows : dict
        Method name -> result row of one cell (same episodes for every method).
    a, b : str
        Two method names of ``rows``.

    Returns
    -------
    (ci95, exact) : (float, bool)
        The stored paired CI (``row["paired"]``, or ``paired_ci95`` when one of the two is the
        reference of the paired differences) with ``exact=True``. Results files written before
        every pair was stored hold differences to the reference only; for other pairs the CI is
        bounded from above by ``min(ci(a - ref) + ci(b - ref), ci(a) + ci(b))`` (the standard
        deviation of a difference is at most the sum of the two standard deviations), with
        ``exact=False``: a lead beyond this bound is beyond the paired CI too.
    """
    ra, rb = rows[a], rows[b]
    if b in (ra.get("paired") or {}):
        return float(ra["paired"][b][1]), True
    if a in (rb.get("paired") or {}):
        return float(rb["paired"][a][1]), True
    if ra.get("paired_ref") == b:
        return float(ra["paired_ci95"]), True
    if rb.get("paired_ref") == a:
        return float(rb["paired_ci95"]), True
    bound = ra["ci95"] + rb["ci95"]
    if ra.get("paired_ci95") is not None and rb.get("paired_ci95") is not None and ra.get("paired_ref") == rb.get("paired_ref"):
        bound = min(bound, ra["paired_ci95"] + rb["paired_ci95"])
    return float(bound), False


def leaders(rows: dict) -> tuple[list[str], bool]:
    """The methods to mark in one row (cell) of a table: the best, alone when its lead over every
    other method is outside the 95% CI of their paired difference, else with every method tied
    with it (difference within that CI).

    Returns
    -------
    (names, exact) : (list of str, bool)
        ``exact`` is False when some CI was only bounded (see :func:`paired_ci`).
    """
    best = max(rows, key=lambda m: rows[m]["accuracy"])
    out, exact = [best], True
    for m in rows:
        if m == best:
            continue
        ci, ex = paired_ci(rows, best, m)
        exact &= ex
        if rows[best]["accuracy"] - rows[m]["accuracy"] <= ci:
            out.append(m)
    return out, exact


def unfinished_note(doc: dict) -> str:
    """A bold first line for a partial results file (``"finished": false``), else ''."""
    if doc.get("finished", True):
        return ""
    return ("**Unfinished run** (`finished: false` in the results file: interrupted or failed; the table holds only "
            "what was measured, cells not reached are marked *not run*).\n\n")


def markdown_table(doc: dict) -> str:
    rows = doc["results"]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    keys = list(dict.fromkeys((r["dataset"], r["split"], r["encoder"], r["ways"], r["shots"]) for r in rows))
    by = {(r["dataset"], r["split"], r["encoder"], r["ways"], r["shots"], r["method"]): r for r in rows}
    head = "| data set | encoder | way-shot (queries) | " + " | ".join(methods) + " |"
    sep = "|---|---|---|" + "---|" * len(methods)
    lines = [head, sep]
    finished = doc.get("finished", True)
    all_exact, n_tied = True, 0
    for ds, split, enc, w, s in keys:
        cells = []
        cell = {m: by[(ds, split, enc, w, s, m)] for m in methods if (ds, split, enc, w, s, m) in by}
        lead, exact = leaders(cell) if len(cell) == len(methods) else ([], True)  # no "best" of an incomplete row
        all_exact &= exact
        n_tied += len(lead) > 1
        for m in methods:
            r = cell.get(m)
            if r is None:
                cells.append("" if finished else "*not run*")
                continue
            txt = f"{r['accuracy']:.2f} ± {r['ci95']:.2f}"
            cells.append(f"**{txt}**" if m in lead else txt)
        q = next(iter(cell.values()))["queries"]
        name = f"{ds}" + (f" ({split})" if split and split not in ("all",) else "")
        lines.append(f"| {name} | {enc} | {w}-{s} ({q}) | " + " | ".join(cells) + " |")
    n_ep = sorted({r["episodes"] for r in rows})
    env = doc.get("environment", {})
    ref = next((r["paired_ref"] for r in rows if r.get("paired_ref")), None)
    bold = ("the best method of each row in bold when its lead over every other method is outside the 95% CI of their "
            f"paired difference, else every method tied with it in bold ({n_tied} such row{'s' if n_tied != 1 else ''})")
    if not all_exact:
        bold += (f"; this file stores paired differences to {ref} only, so for other pairs an upper bound of the paired CI "
                 "is used (ci(a-ref) + ci(b-ref) or ci(a) + ci(b), the smaller): a lone bold lead is a real lead, "
                 "some ties may not be")
    foot = (
        f"\nMean accuracy (%) ± 95% CI half-width over {', '.join(map(str, n_ep))} episodes per cell "
        f"(seed {doc.get('seed')}); {bold}. Same episodes for every method of a row. "
        f"fewmm {env.get('fewmm_version')}, torch {env.get('packages', {}).get('torch')}, device {doc.get('device')}, "
        f"wall time {doc.get('wall_seconds', '?')} s. Command: `{doc.get('command')}`."
    )
    skipped = doc.get("skipped") or []
    mismatch = [s for s in skipped if s.get("reason", "").startswith("modality mismatch")]
    missing = [s for s in skipped if "ways" not in s and s not in mismatch]
    cells_skipped = [s for s in skipped if "ways" in s]
    if missing:
        foot += " Skipped (data not found): " + ", ".join(s["dataset"] for s in missing) + "."
    if mismatch:
        foot += (" Skipped (encoder of another modality): "
                 + ", ".join(f"{s['dataset']} x {s['encoder']}" for s in mismatch) + ".")
    if cells_skipped:
        foot += (" Skipped cells (infeasible): "
                 + "; ".join(f"{s['dataset']} x {s['encoder']} {s['ways']}-way {s['shots']}-shot "
                             f"({s['reason'].removeprefix('infeasible: ').split('. ')[0]})" for s in cells_skipped) + ".")
    return unfinished_note(doc) + "\n".join(lines) + "\n" + foot + "\n"


def backbone_table(doc: dict) -> str:
    """Rows: methods (the trained backbone, its random initialisation, frozen encoders, and the
    published numbers); columns: the four Omniglot settings."""
    rows = doc["results"]
    cols = list(dict.fromkeys((r["ways"], r["shots"]) for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    by = {(r["method"], r["ways"], r["shots"]): r for r in rows}
    qs = {(r["ways"], r["shots"]): r["queries"] for r in rows}
    lines = ["| method | " + " | ".join(f"{w}-way {k}-shot ({qs[(w, k)]} queries)" for w, k in cols) + " |", "|---|" + "---|" * len(cols)]
    for m in methods:
        cells = []
        for w, k in cols:
            r = by.get((m, w, k))
            if r is None:
                cells.append("")
                continue
            c = f"{r['accuracy']:.2f} ± {r['ci95']:.2f}"
            if r.get("paired_delta") is not None:
                c += f" ({r['paired_delta']:+.2f} ± {r['paired_ci95']:.2f})"
            cells.append(c)
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    from .backbone import PUBLISHED

    for name, label in (("protonet", "ProtoNet, published (Snell et al. 2017)"), ("maml", "MAML, published (Finn et al. 2017)")):
        if doc.get("experiment") != "omniglot backbone from scratch":
            break
        if not any(s in PUBLISHED[name] for s in cols):
            continue
        lines.append(f"| *{label}* | " + " | ".join(f"*{PUBLISHED[name].get((w, k), '')}*" for w, k in cols) + " |")
    t = doc.get("training", {})
    c = t.get("config", {})
    env = doc.get("environment", {})
    unit = "meta-step" if doc.get("method") == "maml" else "episode"
    resumed = " (summed over the runs of a resumed training)" if "--resume" in (doc.get("command") or "") else ""
    foot = (f"Test accuracy (%) ± 95% CI over {rows[0]['episodes']} episodes per setting (seed "
            f"{doc.get('seed')}), the same episodes for every row"
            f"{'; in brackets the paired difference to the first row' if any(r.get('paired_delta') is not None for r in rows) else ''}. "
            f"Training: {training_text(doc)}, best validation {c.get('val_way', c.get('n_way'))}-way {c.get('val_shot', c.get('n_shot'))}-shot "
            f"{100 * t.get('best_val_acc', float('nan')):.2f}% at {unit} {t.get('best_episode')}, "
            f"{training_seconds(t.get('history', [])) / 60:.1f} min{resumed} with {env.get('torch_threads')} torch threads on {c.get('device', 'cpu')}"
            f"{' (' + str(env['cpu_count']) + ' cores)' if env.get('cpu_count') else ''}. "
            f"Command: `{doc.get('command')}`; wall time of this command {doc.get('wall_seconds', 0) / 60:.1f} min.")
    return unfinished_note(doc) + "\n".join(lines) + "\n\n" + foot + "\n"


def training_text(doc: dict) -> str:
    """'<N> episodes of <way>-way ...' (ProtoNet) or '<N> meta-steps of <B> <way>-way ... tasks (...)' (MAML)."""
    t = doc.get("training", {})
    c = t.get("config", {})
    if doc.get("method") == "maml":
        return (f"{t.get('episodes')} meta-steps of {c.get('meta_batch')} {c.get('n_way')}-way {c.get('n_shot')}-shot "
                f"{c.get('n_query')}-query tasks ({'first' if c.get('first_order') else 'second'} order, inner lr {c.get('inner_lr')}, "
                f"{c.get('inner_steps')} inner step(s), {c.get('test_inner_steps')} at test)")
    return f"{t.get('episodes')} episodes of {c.get('n_way')}-way {c.get('n_shot')}-shot {c.get('n_query')}-query"


def training_seconds(history: list[dict]) -> float:
    """Training wall time of a history, resumed runs included. Current trainers write ``seconds``
    since the first run's start (the last entry is the total); results written before that counted
    each run from its own start, where a drop marks a resume and the runs are summed."""
    total, prev = 0.0, 0.0
    for h in history:
        if h["seconds"] < prev:
            total += prev
        prev = h["seconds"]
    return total + prev


def omniglot_summary(docs: list[dict]) -> str:
    """The Omniglot table across runs: each run's trained model (ProtoNet; MAML, whose 5-way and
    20-way models are separate runs and share a row), the frozen encoders and random
    initialisation of the ProtoNet run, and the published numbers; columns: the four settings.
    All runs must share the test episodes (test episodes, queries and seed)."""
    from .backbone import PUBLISHED, SETTINGS

    cells: dict[str, dict] = {}
    notes, extra = [], []
    keys = set()
    for doc in docs:
        if doc.get("experiment") != "omniglot backbone from scratch":
            raise ValueError(f"not an Omniglot backbone run: {doc.get('experiment')!r}")
        rows = doc["results"]
        if not doc.get("finished") or not rows:
            raise ValueError(f"{doc.get('command')!r}: an unfinished run (no test rows or not finished); finish or rerun it")
        keys |= {(r["episodes"], r["queries"], r["seed"]) for r in rows}
        t, c = doc.get("training", {}), doc.get("training", {}).get("config", {})
        trained = rows[0]["method"]
        for r in rows:
            if r["method"] == trained or r["method"].startswith("frozen ") or r["method"].endswith("random-init"):
                if (r["ways"], r["shots"]) not in SETTINGS:
                    extra.append(f"{r['method']} {r['ways']}-way {r['shots']}-shot")
                    continue
                if (r["ways"], r["shots"]) in cells.get(r["method"], {}):
                    raise ValueError(f"two runs give {r['method']} at {r['ways']}-way {r['shots']}-shot; combine runs of different "
                                     "settings only (or rename one run's method)")
                cells.setdefault(r["method"], {})[(r["ways"], r["shots"])] = r
        cols = ", ".join(f"{r['ways']}-way {r['shots']}-shot" for r in rows if r["method"] == trained)
        what = training_text(doc)
        env = doc.get("environment", {})
        notes.append(f"{trained} ({cols}): {what}, best on validation at {t.get('best_episode')}; "
                     f"training {training_seconds(t.get('history', [])) / 60:.1f} min"
                     f"{' (summed over the runs of a resumed training)' if '--resume' in (doc.get('command') or '') else ''} with {env.get('torch_threads')} torch threads on "
                     f"{c.get('device', 'cpu')} ({env.get('cpu_count')} cores); `{doc.get('command')}`")
    if len(keys) != 1:
        raise ValueError(f"the runs were tested on different episodes (episodes, queries, seed): {sorted(keys)}")
    n_ep, q, seed = keys.pop()
    lines = ["| method | " + " | ".join(f"{w}-way {k}-shot" for w, k in SETTINGS) + " |", "|---|" + "---|" * len(SETTINGS)]
    order = sorted(cells, key=lambda m: (m.startswith("frozen "), m.endswith("random-init")))
    for m in order:
        lines.append(f"| {m} | " + " | ".join(f"{cells[m][s]['accuracy']:.2f} ± {cells[m][s]['ci95']:.2f}" if s in cells[m] else "not run"
                                            for s in SETTINGS) + " |")
    for name, label in (("protonet", "ProtoNet, published (Snell et al. 2017)"), ("maml", "MAML, published (Finn et al. 2017)")):
        lines.append(f"| *{label}* | " + " | ".join(f"*{PUBLISHED[name][s]}*" for s in SETTINGS) + " |")
    foot = (f"Test accuracy (%) ± 95% CI over {n_ep} episodes per setting, {q} queries per class, seed {seed}: the same episodes "
            "for every row. Training budgets: " + "; ".join(notes) + "."
            + (f" Not in this table (other settings): {', '.join(extra)}." if extra else ""))
    return "\n".join(lines) + "\n\n" + foot + "\n"


def head_label(row: dict) -> str:
    """How tables name a fusion-bench row's head: ``"gmu [fomaml]"`` for a trained head (its
    trainer in brackets), the head's name otherwise (and in results written before the trainer axis)."""
    return f"{row['head']} [{row['trainer']}]" if row.get("trainer") else row["head"]


def fusion_table(doc: dict) -> str:
    """Rows: condition x head [trainer]; columns: fold x shots, each 'acc ± ci (Δ vs reference ± ci)'."""
    rows = doc["results"]
    cols = list(dict.fromkeys((r["fold"], r["shots"]) for r in rows))
    keys = list(dict.fromkeys((r["condition"], head_label(r)) for r in rows))
    by = {(r["condition"], head_label(r), r["fold"], r["shots"]): r for r in rows}
    cmod = doc.get("corrupt_modality", "")
    head = "| condition | head | " + " | ".join(f"fold {f}, {k}-shot" for f, k in cols) + f" | weight on {cmod}: clean / corrupted items (fold {cols[0][0]}, 1-shot) |"
    lines = [head, "|---|---|" + "---|" * (len(cols) + 1)]
    for cond, h in keys:
        cells = []
        for f, k in cols:
            r = by.get((cond, h, f, k))
            if r is None:
                cells.append("n/a")
                continue
            txt = f"{r['accuracy']:.2f} ± {r['ci95']:.2f}"
            if "paired_delta" in r:
                txt += f" ({r['paired_delta']:+.2f} ± {r['paired_ci95']:.2f})"
            else:
                txt = f"*{txt}* (ref)"
            cells.append(txt)
        r1 = by.get((cond, h, cols[0][0], 1))
        wtxt = ""
        if r1 and cmod in r1.get("weight_names", []) and r1.get("mean_weights_corrupted_items"):
            j = r1["weight_names"].index(cmod)
            wtxt = f"{r1['mean_weights_clean_items'][j]:.2f} / {r1['mean_weights_corrupted_items'][j]:.2f}"
        lines.append(f"| {cond} | {h} | " + " | ".join(cells) + f" | {wtxt} |")
    ways = ", ".join(f"{w}-way" for w in dict.fromkeys(r["ways"] for r in rows)) or "5-way"
    chosen = ("the fixed fusion chosen on validation episodes (validation classes or held-out base items, never the test "
              "episodes)" if "reference_choice" in doc else "the best fixed fusion")
    foot = (f"\nNovel-class accuracy (%) ± 95% CI over {doc['episodes']} episodes ({ways}, seed {doc['seed']}); in brackets the paired "
            f"difference to {chosen} of that condition and shot count (*ref*), on the same episodes. "
            + (f"Corruption: {doc['corruption']} on {cmod} for a seeded 50% of items. " if doc.get("corruption") not in (None, "none")
               else "No corruption condition. ") + f"Command: `{doc['command']}`; "
            f"wall time {doc.get('wall_seconds', '?')} s.")
    return unfinished_note(doc) + "\n".join(lines) + "\n" + foot + "\n"


def trainer_summary(docs: list[dict]) -> str:
    """A paragraph and a table from fusion-bench results with a trainer axis: for every trained head
    and setting (task, fold, condition, shots), the paired difference of each MAML-family trainer
    to the same head trained with ``protonet`` on the same test episodes. A trainer "wins" a
    setting when the 95% CI of the paired difference excludes 0; otherwise neither does.

    Raises
    ------
    KeyError
        Results without ``trainer`` / ``paired_trainers`` (written before the trainer axis).
    """
    cmp: dict[str, list] = {}
    cmds = []
    for doc in docs:
        cmds.append(doc["command"])
        for r in doc["results"]:
            if r.get("kind") != "adaptive" or r["trainer"] in (None, "protonet"):
                continue
            d, ci = r["paired_trainers"]["protonet"]
            cmp.setdefault(r["trainer"], []).append((r["task"], r["fold"], r["condition"], r["shots"], r["head"], d, ci))
    if not cmp:
        raise ValueError("no rows of a MAML-family trainer with a paired difference to protonet")
    lines = []
    for tr, rows in cmp.items():
        win = [x for x in rows if x[5] - x[6] > 0]
        lose = [x for x in rows if x[5] + x[6] < 0]
        mean = sum(x[5] for x in rows) / len(rows)
        txt = (f"**{tr} vs protonet** (same head, same test episodes, {len(rows)} settings of head x task/fold x condition x shots): "
               f"{tr} wins {len(win)}, protonet wins {len(lose)}, neither (95% CI of the paired difference includes 0) "
               f"{len(rows) - len(win) - len(lose)}; mean difference {mean:+.2f} points.")
        for name, group, pick in ((tr, win, max), ("protonet", lose, min)):
            if group:
                b = pick(group, key=lambda x: x[5])
                txt += (f" Largest {name} win: {b[4]} on {b[0]}/{b[1]} {b[2]} {b[3]}-shot, {b[5]:+.2f} ± {b[6]:.2f}.")
        by_task: dict = {}
        for x in rows:
            by_task.setdefault(f"{x[0]}/{x[1]}", []).append(x)
        txt += " By task/fold: " + "; ".join(
            f"{k}: {sum(1 for x in v if x[5] - x[6] > 0)} {tr} / {sum(1 for x in v if x[5] + x[6] < 0)} protonet / "
            f"{sum(1 for x in v if x[5] - x[6] <= 0 <= x[5] + x[6])} neither (mean {sum(x[5] for x in v) / len(v):+.2f})"
            for k, v in by_task.items()) + "."
        lines.append(txt)
    table = ["| task/fold | condition | shots | head | " + " | ".join(f"{t} − protonet" for t in cmp) + " |",
             "|---|---|---|---|" + "---|" * len(cmp)]
    keys = list(dict.fromkeys(x[:5] for rows in cmp.values() for x in rows))
    vals = {t: {x[:5]: x[5:] for x in rows} for t, rows in cmp.items()}
    for k in keys:
        cells = []
        for t in cmp:
            v = vals[t].get(k)
            cells.append("n/a" if v is None else (f"**{v[0]:+.2f} ± {v[1]:.2f}**" if abs(v[0]) > v[1] else f"{v[0]:+.2f} ± {v[1]:.2f}"))
        table.append(f"| {k[0]}/{k[1]} | {k[2]} | {k[3]} | {k[4]} | " + " | ".join(cells) + " |")
    foot = ("Paired difference (accuracy points, novel-class episodes) of the head trained with the MAML-family trainer minus "
            "the same head trained with protonet; bold: the 95% CI excludes 0. Commands: " + "; ".join(f"`{c}`" for c in cmds) + ".")
    return "\n\n".join(lines) + "\n\n" + "\n".join(table) + "\n\n" + foot + "\n"


def update_block(text: str, tag: str, content: str) -> str:
    start, end = f"<!-- results:{tag} -->", f"<!-- /results:{tag} -->"
    pat = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if not pat.search(text):
        raise SystemExit(f"no block {start} ... {end} in the file")
    return pat.sub(lambda _: f"{start}\n{content}{end}", text)


def build_parser() -> argparse.ArgumentParser:
    from ..clihelp import HelpFormatter

    p = argparse.ArgumentParser(prog="python -m fewmm.bench.report", description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    p.add_argument("results", nargs="+", help="results JSON written by python -m fewmm.bench (several Omniglot backbone runs: "
                   "one combined table, --tag required with --readme)")
    p.add_argument("--readme", help="Markdown file whose <!-- results:TAG --> block to rewrite (default: print the table)")
    p.add_argument("--tag", help="block tag (default: the JSON file's stem)")
    p.add_argument("--trainers", action="store_true", help="fusion-bench results with a trainer axis (one or several files): "
                   "which trainer wins where against protonet, by how much, and where neither does")
    return p


def main(argv=None) -> int:
    p = build_parser()
    a = p.parse_args(argv)
    docs = []
    for path in a.results:
        try:
            doc = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            print(f"error: {path}: no such results file", file=sys.stderr)
            return 2
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            print(f"error: {path}: not a readable results JSON ({type(e).__name__}: {e})", file=sys.stderr)
            return 2
        if not isinstance(doc, dict) or not isinstance(doc.get("results", doc.get("rows")), list):
            print(f"error: {path}: not a fewmm results file (no list of result rows)", file=sys.stderr)
            return 2
        docs.append(doc)
    if len(docs) > 1 and a.readme and not a.tag:
        p.error("several results files: give the README block with --tag")
    for path, doc in zip(a.results, docs):
        if not doc.get("results", doc.get("rows")):
            print(f"error: {path}: no result rows yet (an unfinished run? 'finished': {doc.get('finished')})", file=sys.stderr)
            return 2
    try:
        if a.trainers:
            table = trainer_summary(docs)
        elif len(docs) > 1:
            table = omniglot_summary(docs)
        else:
            doc = docs[0]
            exp = doc.get("experiment")
            if str(exp or "").startswith("transfer"):  # also: python -m fewmm.bench.transfer --report FILE
                from .transfer import markdown_table as transfer_table

                table = transfer_table(doc)
            else:
                table = (backbone_table(doc) if exp and "backbone from scratch" in exp else fusion_table(doc) if exp
                         else markdown_table(doc))
    except (KeyError, TypeError, ValueError) as e:
        print(f"error: {', '.join(a.results)}: {'cannot combine' if len(docs) > 1 else 'malformed result rows'} ({type(e).__name__}: {e})",
              file=sys.stderr)
        return 2
    if a.readme:
        path = Path(a.readme)
        try:
            before = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            print(f"error: --readme {path}: no such file (give an existing Markdown file with a <!-- results:TAG --> block)",
                  file=sys.stderr)
            return 2
        except (OSError, UnicodeDecodeError) as e:
            print(f"error: --readme {path}: cannot read it ({type(e).__name__}: {e})", file=sys.stderr)
            return 2
        after = update_block(before, a.tag or Path(a.results[0]).stem, table)
        try:
            path.write_text(after, encoding="utf-8")
        except OSError as e:
            print(f"error: --readme {path}: cannot write it ({type(e).__name__}: {e})", file=sys.stderr)
            return 2
        print(f"{'updated' if after != before else 'unchanged:'} {path}", file=sys.stderr)
    else:
        print_to_pipe(table)
    return 0


def print_to_pipe(text: str) -> None:
    """Print ``text``; when the reader has gone (``report ... | head``), stop quietly instead of
    ending with a BrokenPipeError traceback (the recipe of Python's ``signal`` documentation)."""
    import os

    try:
        print(text, flush=True)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's final flush must not fail either


if __name__ == "__main__":
    sys.exit(main())
