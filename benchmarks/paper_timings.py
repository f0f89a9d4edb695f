"""How long each part of reproducing the paper takes on this machine.

    python benchmarks/paper_timings.py --json results/paper-timings.json [--with-default]

Times, each in a fresh process: ``python -m fewmm.paper build --no-pdf`` (tables and figures),
``build`` (the same plus the PDF; skipped when no LaTeX is installed), ``check``, ``reproduce
digits-shots --quick`` with an empty feature cache and again with the cache it filled, and with
``--with-default`` ``reproduce default --quick`` with the user's feature cache (FEWMM_CACHE or
~/.cache/fewmm/features: cold or warm, whatever it holds; the JSON records which). The README's
"Reproduce the paper" block (``python -m fewmm.paper`` generator ``paper-timings``) reads this file
and the wall times that every registered results file records.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed(name: str, argv: list[str], env: dict, note: str = "", tmp: str = "") -> dict:
    la = os.getloadavg()[0]
    t0 = time.monotonic()
    r = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True)
    dt = time.monotonic() - t0
    tail = (r.stdout + r.stderr).strip().splitlines()[-1:] or [""]
    print(f"[paper-timings] {name}: {dt:.1f} s (exit {r.returncode}) {tail[0][:100]}", flush=True)
    cmd = " ".join(["python"] + argv[1:])
    return {"step": name, "command": cmd.replace(tmp, "<tmp>") if tmp else cmd, "seconds": round(dt, 1), "exit_code": r.returncode,
            "loadavg_before": round(la, 2), "note": note, "last_line": tail[0][:200]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default="results/paper-timings.json", help="output JSON (default results/paper-timings.json)")
    ap.add_argument("--with-default", action="store_true", help="also time reproduce default --quick (minutes)")
    a = ap.parse_args(argv)
    py = sys.executable
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    tmp = Path(tempfile.mkdtemp(prefix="fewmm-paper-timings-"))
    steps = [timed("tables and figures", [py, "-m", "fewmm.paper", "build", "--no-pdf"], env)]
    if shutil.which("latexmk") or shutil.which("pdflatex"):
        for f in ("main.pdf", "main.aux", "main.fdb_latexmk", "main.fls", "main.log", "main.out"):
            (REPO / "paper" / f).unlink(missing_ok=True)  # a full LaTeX run, not latexmk's "up to date"
        steps.append(timed("tables, figures and PDF", [py, "-m", "fewmm.paper", "build"], env))
    steps.append(timed("check", [py, "-m", "fewmm.paper", "check"], env))
    cold = dict(env, FEWMM_CACHE=str(tmp / "cache"))
    rep = [py, "-m", "fewmm.paper", "reproduce", "digits-shots", "--quick", "--out", str(tmp / "reports")]
    steps.append(timed("reproduce digits-shots --quick", rep, cold, "empty feature cache", str(tmp)))
    steps.append(timed("reproduce digits-shots --quick", rep, cold, "cached features", str(tmp)))
    if a.with_default:
        user_cache = os.environ.get("FEWMM_CACHE") or str(Path.home() / ".cache" / "fewmm" / "features")
        warm = any(Path(user_cache).glob("**/*.safetensors")) if Path(user_cache).exists() else False
        steps.append(timed("reproduce default --quick", [py, "-m", "fewmm.paper", "reproduce", "default", "--quick", "--out",
                                                          str(tmp / "reports")], env,
                           "cached features" if warm else "empty feature cache", str(tmp)))
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    out = {"command": "python benchmarks/paper_timings.py --json results/paper-timings.json" + (" --with-default" if a.with_default else ""),
           "environment": {"git_commit": commit, "cpu_count": os.cpu_count(), "python": sys.version.split()[0]},
           "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "steps": steps}
    Path(REPO / a.json).write_text(json.dumps(out, indent=1) + "\n")
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"[paper-timings] wrote {a.json}")
    return 0 if all(s["exit_code"] == 0 for s in steps) else 1


if __name__ == "__main__":
    sys.exit(main())
