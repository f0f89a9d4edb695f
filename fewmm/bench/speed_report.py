"""Markdown summary of the speed benchmarks' JSON files (numbers copied by code, not by hand).

    python -m fewmm.bench.speed_report [--readme README.md]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .report import update_block


def throughput_md(d: dict, name: str) -> str:
    c = d["config"]
    r = d["ratios"]
    la = d.get("loadavg_before")
    lines = [
        f"**Episode throughput** (`{name}`): "
        + (f"{d['source']['table']} features, same shape as Omniglot-evaluation x EfficientNet-Lite2 "
           if d.get("source", {}).get("synthetic") else f"{c['dataset']}/{c['split']} {c['encoder']} features ")
        + f"({c['n_items']} x {c['dim']}), "
        f"{c['ways']}-way {c['shots']}-shot {c['queries']}-query, {c['episodes']} episodes, {c['threads']} torch thread(s), "
        f"load average before the run {la[0]:.1f} on 2 cores." if la else "",
        "",
        "| path | episodes/s | accuracy |",
        "|---|---|---|",
        f"| fewmm batched evaluation (chunks of {d['fewmm']['chunk_episodes']}) | {d['fewmm']['episodes_per_s']:.0f} | {100 * d['fewmm']['acc_mean']:.2f} |",
        f"| plain per-episode loop{' (extrapolated from ' + str(d['loop']['episodes']) + ')' if d['loop'].get('extrapolated') else ''} | {d['loop']['episodes_per_s']:.0f} | identical: {d['loop'].get('identical_to_fewmm')} |",
    ]
    if "l2l" in d and d["l2l"]:
        lines.append(f"| learn2learn TaskDataset + per-task loop{' (extrapolated from ' + str(d['l2l']['episodes']) + ')' if d['l2l'].get('extrapolated') else ''} | {d['l2l']['episodes_per_s']:.0f} | {100 * d['l2l']['acc_mean']:.2f} (own episodes) |")
    fc = d.get("fewmm-compiled")
    if fc and "episodes_per_s" in fc:
        lines.append(f"| fewmm batched evaluation, `compile=True` (torch.compile-fused gather + score; first call "
                     f"{fc['first_call_s']:.1f} s, not counted) | {fc['episodes_per_s']:.0f} | {100 * fc['acc_mean']:.2f} "
                     f"(predictions equal to the default path for {100 * fc['prediction_agreement']:.3f}% of queries) |")
    lines.append(f"| bare gather of the same bytes (memory-bound limit) | {d['gather']['episodes_per_s']:.0f} | |")
    if d.get("gather+product"):
        lines.append(f"| gather + one `bmm(query, prototypes^T)`, nothing else (unfused floor) | {d['gather+product']['episodes_per_s']:.0f} | |")
    comp = (f"; with `compile=True` {r['fewmm_compiled_time_over_gather_time']:.2f}"
            if "fewmm_compiled_time_over_gather_time" in r else "")
    st = d.get("stable_ratios")
    procs = c.get("processes", 1)
    if st and procs > 1:
        lines[0] = lines[0].replace("load average before the run", f"table from the first of {procs} fresh processes, load average before it")
        lines += ["", f"Stable ratios (median over all interleaved rounds of {procs} fresh processes, [25th-75th percentile], "
                      "{each process's own median}; episodes/s above are absolute numbers of this machine at this load, from the best round): " + "; ".join(
                          f"{_RATIO_NAMES.get(k, k)} {_fmt(v)} {{{', '.join(f'{m:.2f}' for m in v['per_run_median'])}}}"
                          + (f" (target {v['verdict']['target']}: {_verdict(v['verdict'])})" if "verdict" in v else "")
                          for k, v in st.items()) + "."]
    elif st:
        lines += ["", "Stable ratios (median over the interleaved rounds, [25th-75th percentile]; episodes/s above are absolute "
                      "numbers of this machine at this load, from the best round): " + "; ".join(
                          f"{_RATIO_NAMES.get(k, k)} {_fmt(v)}" + (f" (target {v['verdict']['target']}: {_verdict(v['verdict'])})" if "verdict" in v else "")
                          for k, v in st.items()) + "."]
    else:
        lines += ["", f"Ratios: fewmm / loop {r['fewmm_over_loop']:.1f}x; fewmm / learn2learn {r.get('fewmm_over_l2l', float('nan')):.1f}x "
                  f"(target >= 20x); fewmm time / gather time {r['fewmm_time_over_gather_time']:.2f}{comp} (target <= 2)."]
    return "\n".join(lines) + "\n"


_RATIO_NAMES = {"fewmm_over_loop": "fewmm / loop", "fewmm_over_l2l": "fewmm / learn2learn",
                "fewmm_time_over_gather_time": "fewmm time / gather time",
                "fewmm_compiled_time_over_gather_time": "`compile=True` time / gather time",
                "fewmm_compiled_over_l2l": "`compile=True` / learn2learn",
                "fewmm_time_over_gather1000_time": "fewmm time / gather time in chunks of 1000",
                "unfused_floor_time_over_gather_time": "unfused floor (gather + one `bmm`) time / gather time",
                "fewmm_time_over_unfused_floor_time": "fewmm time / unfused floor time"}


def _fmt(st: dict) -> str:
    return f"{st['median']:.2f}x [{st['q25']:.2f}-{st['q75']:.2f}]"


def _in_processes(c: dict) -> str:
    k = c.get("processes", 1)
    return f" in each of {k} fresh processes, pooled (each process's own median in braces)" if k > 1 else ""


def _per_run(st: dict) -> str:
    """`` {a, b, c}``: each fresh process's own median, when the rounds of several were pooled."""
    return " {" + ", ".join(f"{m:.2f}" for m in st["per_run_median"]) + "}" if st.get("per_run_median") else ""


def _verdict(v: dict) -> str:
    return v["verdict"] + ("" if v["stable"] else ", not stable: the spread straddles the target")


def maml_md(d: dict, name: str) -> str:
    m = d["machine"]
    c = d["config"]
    head = d.get("head") or f"Linear({c['dim']},{c['hidden']})-ReLU-Linear({c['hidden']},{c['way']})"
    methods = [x for x in c["methods"] if x not in ("l2l", "floor")]
    floor = any("floor" in row["methods"] for row in d["speed"])
    stable = any("ratio_vs_l2l" in v for row in d["speed"] for v in row["methods"].values())
    if not stable:  # a file from before the interleaved-rounds helper
        lines = [f"**MAML meta-steps/s** (`{name}`): head {head}, best step time of {c['repeats']} rounds (old format).", ""]
        lines.append("| inner steps | order | " + " | ".join(f"{x} steps/s (x l2l)" for x in c["methods"]) + " |")
        lines.append("|---|---|" + "---|" * len(c["methods"]))
        for row in d["speed"]:
            cells = ["" if row["methods"].get(x) is None else f"{row['methods'][x]['steps_per_s_best']:.2f} ({row['methods'][x].get('ratio_vs_l2l_best', float('nan')):.1f}x)"
                     for x in c["methods"]]
            lines.append(f"| {row['inner_steps']} | {row['order']} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"
    loads = [x for row in d["speed"] for x in row.get("loadavg_per_round", [])]
    lines = [f"**MAML meta-steps/s vs learn2learn** (`{name}`): head {head}, meta-batch {c['meta_batch']} tasks of {c['way']}-way "
             f"{c['shot']}-shot {c['query']}-query, {d['features']}, {m['threads']} torch thread(s), {c['repeats']} interleaved rounds "
             f"per setting{_in_processes(c)}, load average {min(loads):.1f}-{max(loads):.1f} on {m['cpus']} cores. Stable figure: the median over rounds "
             "of time(learn2learn) / time(method) in the same round, [25th-75th percentile], with the verdict against the target "
             "(Gram path >= 5x, general path `functional` >= 1x; `vmap`: dense per-task weights, a reference); learn2learn's steps/s is an absolute number of this machine at this load. "
             "Tensor peak: live CPU tensor bytes above those at the start of one meta-step (torch.profiler, deterministic). "
             "Meta-gradient: largest |difference| to learn2learn's, relative to its largest |value|."
             + (" Ceiling: time(learn2learn) / time(floor), where the floor is the two matrix products every exact meta-step of this "
                "head must do (the first layer's forward over all support and query items and its weight gradient), timed alone in the "
                "same rounds: no exact MAML that computes them per (task, item) slot can beat learn2learn by more on this machine; "
                "a target above it is marked infeasible."
                if floor else "")
             + (f" The timed meta-batch fills {d['timed_batch']['slots']} item slots with {d['timed_batch']['distinct_items']} distinct "
                "items: a path that ran the first layer once per distinct item (none here does; the MAML API takes gathered "
                f"tensors, not item indices) would do at most {d['timed_batch']['slots'] / d['timed_batch']['distinct_items']:.2f}x "
                "less of the floor's work, which bounds how far the ceiling could move."
                if floor and d.get("timed_batch") else ""), ""]
    lines.append("| inner steps | order | learn2learn steps/s (tensor peak MiB) | " + " | ".join(f"{x}: x l2l, verdict (tensor peak MiB; meta-grad rel. diff.)" for x in methods)
                 + (" | ceiling: floor x l2l |" if floor else " |"))
    lines.append("|---|---|---|" + "---|" * len(methods) + ("---|" if floor else ""))
    for row in d["speed"]:
        l2 = row["methods"].get("l2l")
        cells = [f"{l2['steps_per_s_median']:.2f} ({l2['tensor_peak_mib']:.1f})" if l2 and l2.get("tensor_peak_mib") is not None else
                 (f"{l2['steps_per_s_median']:.2f}" if l2 else "")]
        for x in methods:
            v = row["methods"].get(x)
            if v is None or "ratio_vs_l2l" not in v:
                cells.append("")
                continue
            pk = f"{v['tensor_peak_mib']:.1f}" if v.get("tensor_peak_mib") is not None else "-"
            g = v.get("vs_l2l")
            gd = f"{g['max_abs_grad_diff'] / max(g['max_abs_grad'], 1e-30):.0e}" if g else "-"
            vd = _verdict(v["verdict"]) if "verdict" in v else "reference, no target"
            cells.append(f"{_fmt(v['ratio_vs_l2l'])}{_per_run(v['ratio_vs_l2l'])} {vd} ({pk}; {gd})")
        if floor:
            fl = row["methods"].get("floor")
            cells.append(_fmt(fl["ratio_vs_l2l"]) + _per_run(fl["ratio_vs_l2l"]) if fl and "ratio_vs_l2l" in fl else "")
        lines.append(f"| {row['inner_steps']} | {row['order']} | " + " | ".join(cells) + " |")
    if d.get("memory"):
        lines += ["", "Peak extra anonymous memory per meta-step (MiB, fresh process each): " + "; ".join(
            f"{row['inner_steps']} step {row['order']}: " + ", ".join(f"{k} {v['anon_peak_delta_mib']:.0f}" for k, v in row["methods"].items()
                                                                    if "anon_peak_delta_mib" in v)
            for row in d["memory"])]
    t = d.get("training")
    if t:
        acc = ", ".join(f"{k} {v['accuracy']['mean']:.2f} ± {v['accuracy']['ci95']:.2f} " + (f" ({v['train_seconds']:.1f} s)" if "train_seconds" in v else "") for k, v in t["methods"].items())
        lines += ["", f"After {t['train_steps']} meta-steps ({t['inner_steps']} inner steps, {t['order']} order) on the same task stream, "
                      f"novel-class accuracy over {t['eval_episodes']} episodes (training time): {acc}."]
    return "\n".join(lines) + "\n"


def extraction_md(d: dict, name: str) -> str:
    lines = [f"**Feature extraction, whole pipeline vs bare encoder forward** (`{name}`; `{d['command']}`): read, decode, "
             "resample or resize, batch, encode (batch i + 1 decoded in a worker thread while the encoder runs batch i), cache "
             f"write, against the encoder forward alone on the same decoded inputs; {d['config']['rounds']} interleaved rounds, "
             f"{d['machine']['torch_threads']} torch threads, {d['machine']['cpu_count']} cores. Stable figure: median over rounds of "
             "time(pipeline) / time(bare) [25th-75th percentile]; items/s are absolute numbers of this machine at this load.", "",
             "| encoder (data, items) | pipeline / bare, verdict (<= 1.2) | without read-ahead / bare | items/s pipeline, bare | load average |",
             "|---|---|---|---|---|"]
    for r in d["rows"]:
        if "error" in r:
            lines.append(f"| {r['encoder']} ({r['dataset']}) | not measured: {r['error'][:120]} | | | |")
            continue
        la = r["runs"]["loadavg_per_round"]
        lines.append(f"| {r['encoder']} ({r['dataset']}, {r['items']}) | {_fmt(r['pipeline_over_bare'])} {_verdict(r['verdict'])} | "
                     f"{_fmt(r['sequential_over_bare'])} | {r['items_per_s_median']['pipeline']:.1f}, {r['items_per_s_median']['bare']:.1f} | "
                     f"{min(la):.1f}-{max(la):.1f} |")
    return "\n".join(lines) + "\n"


def latency_md(d: dict, name: str) -> str:
    env = d["environment"]
    c = d["config"]
    lines = [f"**Adapter latency** (`{name}`): `Adapter.predict` one item at a time (batch size 1), {c['shots']} training items "
             f"per class, median (90th percentile) of {d['rows'][0]['queries_timed']} queries after {c['warmup']} untimed; "
             f"device {env['device']}, {env['torch_threads']} torch threads, load average {env['loadavg_1_5_15'][0]:.1f}.", "",
             "| data / encoders / head | encoder ms (read + preprocess + encode) | head ms | fit s |", "|---|---|---|---|"]
    for r in d["rows"]:
        lines.append(f"| {r['config']} | {r['encoder_ms_median']:.2f} ({r['encoder_ms_p90']:.2f}) | "
                     f"{r['head_ms_median']:.3f} ({r['head_ms_p90']:.3f}) | {r['fit_s']:.1f} |")
    lines += ["", f"Largest median head time {d['head_ms_median_max']:.3f} ms (target: under 1 ms per query at batch size 1: "
                  f"{'met' if d['target_head_under_1ms'] else 'MISSED'})."]
    return "\n".join(lines) + "\n"


def train_speed_md(d: dict, name: str) -> str:
    c, r, env = d["config"], d["episodes_per_s"], d["environment"]
    return (f"**Conv-4 ProtoNet training loop** (`{name}`): {c['way']}-way {c['shot']}-shot {c['query']}-query Omniglot episodes, "
            f"{env['threads']} threads, load average {env['loadavg_1_5_15'][0]:.1f}: fewmm {r['fewmm']:.2f} episodes/s, reference loop "
            f"{r['reference']:.2f} episodes/s ({d['ratio_fewmm_over_reference']:.2f}x; same model, episodes and optimiser; largest "
            f"loss difference over the run {d['max_abs_loss_difference']:.1e}: the two copies drift apart by float rounding). "
            "The convolutions dominate the step, so the loop around them matters little.\n")


def maml_memory_md(d: dict, name: str) -> str:
    c, rows = d["config"], d["rows"]
    return (f"**MAML memory, Conv-4** (`{name}`): one meta-step of {c['meta_batch']} tasks, {c['way']}-way {c['shot']}-shot "
            f"{c['query']}-query, {c['inner_steps']} inner step, fresh process each: second order {rows['second']['peak_extra_mib']:.0f} MiB "
            f"peak extra memory vs first order {rows['first']['peak_extra_mib']:.0f} MiB ({d['second_over_first_memory']:.2f}x); time "
            f"{d['second_over_first_time']:.2f}x (load average {d['environment']['loadavg_1_5_15'][0]:.1f} on "
            f"{d['environment']['cpu_count']} cores).\n")


def build_parser() -> argparse.ArgumentParser:
    from ..clihelp import HelpFormatter

    p = argparse.ArgumentParser(prog="python -m fewmm.bench.speed_report", description=__doc__.splitlines()[0],
                                formatter_class=HelpFormatter)
    p.add_argument("--throughput", nargs="+", default=["results/episode_throughput.json", "results/episode_throughput_1thread.json"],
                   help="episode throughput JSON files (benchmarks/episode_throughput.py)")
    p.add_argument("--maml", nargs="+", default=["results/maml_speed.json", "results/maml_speed_2thread.json", "results/maml_speed_gmu.json"],
                   help="MAML speed JSON files (benchmarks/maml_speed.py; --head gmu for the second)")
    p.add_argument("--extraction", default="results/extraction_speed.json", help="extraction JSON (benchmarks/extraction_speed.py)")
    p.add_argument("--latency", default="results/adapter_latency.json", help="adapter latency JSON (benchmarks/adapter_latency.py)")
    p.add_argument("--train-speed", default="results/protonet_train_speed.json",
                   help="Conv-4 training speed JSON (benchmarks/protonet_train_speed.py)")
    p.add_argument("--maml-memory", default="results/maml_conv4_memory.json", help="MAML memory JSON (benchmarks/maml_conv4_memory.py)")
    p.add_argument("--readme", help="Markdown file whose <!-- results:speed --> block to rewrite (default: print the tables)")
    return p


DEFAULTS = {"throughput": ["results/episode_throughput.json", "results/episode_throughput_1thread.json"],
            "maml": ["results/maml_speed.json", "results/maml_speed_2thread.json", "results/maml_speed_gmu.json"], "latency": "results/adapter_latency.json",
            "extraction": "results/extraction_speed.json",
            "train_speed": "results/protonet_train_speed.json", "maml_memory": "results/maml_conv4_memory.json"}


def speed_markdown(root: str | Path = ".", throughput=None, maml=None, latency=None, train_speed=None, maml_memory=None,
                   extraction=None) -> str:
    """The ``<!-- results:speed -->`` block: one part per speed results file that exists.

    Parameters
    ----------
    root : str or Path
        Folder the paths are relative to (the repository root); the paths are printed as given.
    throughput : list of str, optional
        Episode throughput JSON files (default ``DEFAULTS["throughput"]``).
    maml : list of str, optional
        MAML speed JSON files (benchmarks/maml_speed.py; default ``DEFAULTS["maml"]``).
    latency, train_speed, maml_memory, extraction : str, optional
        The other speed JSON files (defaults in ``DEFAULTS``). A file that does not exist is left out.

    Returns
    -------
    str
        Markdown, the numbers formatted from the JSON files by code.
    """
    root = Path(root)
    throughput = DEFAULTS["throughput"] if throughput is None else throughput
    maml = DEFAULTS["maml"] if maml is None else ([maml] if isinstance(maml, str) else maml)
    pairs = [(t, throughput_md) for t in throughput] + [(m, maml_md) for m in maml] + [
        (extraction or DEFAULTS["extraction"], extraction_md), (latency or DEFAULTS["latency"], latency_md),
        (train_speed or DEFAULTS["train_speed"], train_speed_md), (maml_memory or DEFAULTS["maml_memory"], maml_memory_md)]
    parts = []
    for path, fn in pairs:
        if (root / path).exists():
            parts.append(fn(json.loads((root / path).read_text()), path))
    return "\n".join(parts)


def main(argv=None) -> int:
    p = build_parser()
    a = p.parse_args(argv)
    md = speed_markdown(".", a.throughput, a.maml, a.latency, a.train_speed, a.maml_memory, a.extraction)
    if a.readme:
        try:
            text = Path(a.readme).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            print(f"error: --readme {a.readme}: cannot read it ({type(e).__name__}: {e})", file=sys.stderr)
            return 2
        Path(a.readme).write_text(update_block(text, "speed", md), encoding="utf-8")
    else:
        print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
