"""The in-text numbers of the paper: LaTeX macros, each formatted from one results file by code.

``paper/generated/numbers.tex`` holds one ``\\newcommand`` per entry of :data:`MACROS`, with the
results file and the row it reads in a comment beside it. The sections of the paper use only
these macros for measured numbers; ``python -m fewmm.paper check`` regenerates the file, compares
it, and lists any decimal number or percentage typed into a section by hand.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import FewmmError
from .generators import HEADER, load_json, provenance, source_lines


def row(doc: dict, **where) -> dict:
    """The one row of ``doc["results"]`` whose fields equal ``where``.

    Raises
    ------
    FewmmError
        None or several rows match (the message gives the filter).
    """
    rows = [r for r in doc.get("results", []) if all(r.get(k) == v for k, v in where.items())]
    if len(rows) > 1 and "trainer" not in where:  # heads trained by several trainers: the prototypical row
        rows = [r for r in rows if r.get("trainer") in (None, "", "protonet", "prototypical")]
    if len(rows) != 1:
        raise FewmmError(f"{len(rows)} rows match {where} (expected exactly one)")
    return rows[0]


def f2(x) -> str:
    return f"{x:.2f}"


def f1(x) -> str:
    return f"{x:.1f}"


def sgn(x) -> str:
    return f"{x:+.2f}"


def _w(doc, j_name, which, **where):
    r = row(doc, **where)
    return r[which][r["weight_names"].index(j_name)]


def _best_transfer(doc, protocol="episodes", shots=1, exclude=("am3",)):
    rows = [r for r in doc["results"] if r["protocol"] == protocol and r["shots"] == shots and r["method"] not in exclude
            and "[" not in r["method"] and r["method"] != "protonet"]
    return max(rows, key=lambda r: r["accuracy"])


def _published(method, ways, shots):
    from ..bench.backbone import PUBLISHED

    return PUBLISHED[method][(ways, shots)]


def _cnt(doc, key):
    return str(len({r[key] for r in doc["results"]}))


FUS = "results/fusion-digits-av.json"
DEF = "results/default.json"
OMNI = "results/omniglot-protonet.json"
MAML5 = "results/omniglot-maml.json"
MAML20 = "results/omniglot-maml20.json"
TRE = "results/transfer-esc50-text.json"
TRD = "results/transfer-digits-av.json"
TREG = "results/transfer-esc50-text-goal.json"
GSEL = "results/transfer-goal-selection.json"
THR = "results/episode_throughput.json"
MSP = "results/maml_speed.json"
MEM = "results/maml_conv4_memory.json"
FES = "results/fusion-esc50-text.json"


def _wins(doc, head, condition, sign=1):
    """How many (fold, shots) settings ``head`` is ahead of (sign 1) / not behind (sign 0) the best
    fixed fusion outside / within the paired 95% CI, and of how many."""
    rows = [r for r in doc["results"] if r["head"] == head and r["condition"] == condition and r.get("paired_delta") is not None
            and r.get("trainer") in (None, "", "protonet", "prototypical")]
    if sign:
        n = sum(r["paired_delta"] - r["paired_ci95"] > 0 for r in rows)
    else:
        n = sum(r["paired_delta"] + r["paired_ci95"] >= 0 for r in rows)
    return n, len(rows)


def _fus(**kw):
    base = dict(fold="A", shots=1)
    base.update(kw)
    return base


#: (macro name, results file, what it is, function doc -> LaTeX text)
MACROS = [
    # protocol
    ("numEpisodes", DEF, "episodes per cell of the default suite", lambda d: str(d["episodes"])),
    ("numSeed", DEF, "seed of the default suite", lambda d: str(d["seed"])),
    ("numDefaultEncoders", DEF, "frozen encoders in the default suite", lambda d: _cnt(d, "encoder")),
    ("numDefaultDatasets", DEF, "data sets in the default suite", lambda d: _cnt(d, "dataset")),
    # frozen encoders
    ("numOmniEffProtoOne", DEF, "omniglot effnet 5-1 protonet", lambda d: f2(row(d, dataset="omniglot", encoder="efficientnet-lite2", method="protonet", shots=1)["accuracy"])),
    ("numOmniEffLPOne", DEF, "omniglot effnet 5-1 linear-probe", lambda d: f2(row(d, dataset="omniglot", encoder="efficientnet-lite2", method="linear-probe", shots=1)["accuracy"])),
    ("numOmniPixSimpleOne", DEF, "omniglot pixels 5-1 simpleshot", lambda d: f2(row(d, dataset="omniglot", encoder="pixels", method="simpleshot", shots=1)["accuracy"])),
    ("numFsddWhisperProtoOne", DEF, "fsdd whisper 5-1 protonet", lambda d: f2(row(d, dataset="fsdd", encoder="whisper-tiny-en", method="protonet", shots=1)["accuracy"])),
    ("numFsddLogmelProtoOne", DEF, "fsdd logmel 5-1 protonet", lambda d: f2(row(d, dataset="fsdd", encoder="logmel-stats", method="protonet", shots=1)["accuracy"])),
    ("numSpeakerWhisperProtoOne", DEF, "fsdd-speaker whisper 5-1 protonet", lambda d: f2(row(d, dataset="fsdd-speaker", encoder="whisper-tiny-en", method="protonet", shots=1)["accuracy"])),
    ("numSpeakerLogmelProtoOne", DEF, "fsdd-speaker logmel 5-1 protonet", lambda d: f2(row(d, dataset="fsdd-speaker", encoder="logmel-stats", method="protonet", shots=1)["accuracy"])),
    ("numBankingProtoOne", DEF, "banking77 minilm 5-1 protonet", lambda d: f2(row(d, dataset="banking77", encoder="minilm-l6", method="protonet", shots=1)["accuracy"])),
    ("numEscBirdnetProtoOne", DEF, "esc50 birdnet 5-1 protonet", lambda d: f2(row(d, dataset="esc50", encoder="birdnet", method="protonet", shots=1)["accuracy"])),
    ("numEscBirdnetCosOne", DEF, "esc50 birdnet 5-1 protonet-cosine", lambda d: f2(row(d, dataset="esc50", encoder="birdnet", method="protonet-cosine", shots=1)["accuracy"])),
    # fusion
    ("numTpsCorrADelta", FUS, "temperature-ps audio-corrupt50 A 1-shot paired delta", lambda d: sgn(row(d, **_fus(condition="audio-corrupt50", head="temperature-ps"))["paired_delta"])),
    ("numTpsCorrACi", FUS, "its paired CI", lambda d: f2(row(d, **_fus(condition="audio-corrupt50", head="temperature-ps"))["paired_ci95"])),
    ("numTpsCorrBFiveDelta", FUS, "temperature-ps audio-corrupt50 B 5-shot delta", lambda d: sgn(row(d, **_fus(condition="audio-corrupt50", head="temperature-ps", fold="B", shots=5))["paired_delta"])),
    ("numTpsCorrBFiveCi", FUS, "its paired CI", lambda d: f2(row(d, **_fus(condition="audio-corrupt50", head="temperature-ps", fold="B", shots=5))["paired_ci95"])),
    ("numTpsCleanADelta", FUS, "temperature-ps clean A 1-shot delta", lambda d: sgn(row(d, **_fus(condition="clean", head="temperature-ps"))["paired_delta"])),
    ("numTpsWClean", FUS, "temperature-ps audio weight on clean items, A 1-shot", lambda d: f2(_w(d, "audio", "mean_weights_clean_items", **_fus(condition="audio-corrupt50", head="temperature-ps")))),
    ("numTpsWCorr", FUS, "temperature-ps audio weight on corrupted items, A 1-shot", lambda d: f2(_w(d, "audio", "mean_weights_corrupted_items", **_fus(condition="audio-corrupt50", head="temperature-ps")))),
    ("numGmuCorrADelta", FUS, "gmu audio-corrupt50 A 1-shot delta", lambda d: sgn(row(d, **_fus(condition="audio-corrupt50", head="gmu"))["paired_delta"])),
    ("numGmuCleanAFiveDelta", FUS, "gmu clean A 5-shot delta", lambda d: sgn(row(d, **_fus(condition="clean", head="gmu", shots=5))["paired_delta"])),
    ("numGmuCleanAFiveCi", FUS, "its paired CI", lambda d: f2(row(d, **_fus(condition="clean", head="gmu", shots=5))["paired_ci95"])),
    ("numGmuWClean", FUS, "gmu audio weight clean items", lambda d: f2(_w(d, "audio", "mean_weights_clean_items", **_fus(condition="audio-corrupt50", head="gmu")))),
    ("numGmuWCorr", FUS, "gmu audio weight corrupted items", lambda d: f2(_w(d, "audio", "mean_weights_corrupted_items", **_fus(condition="audio-corrupt50", head="gmu")))),
    ("numConcatImgMissA", FUS, "concat image-missing50 A 1-shot delta", lambda d: sgn(row(d, **_fus(condition="image-missing50", head="concat"))["paired_delta"])),
    ("numTpsCorrWins", FUS, "settings where temperature-ps beats the best fixed fusion under audio corruption outside the paired CI",
     lambda d: str(_wins(d, "temperature-ps", "audio-corrupt50")[0])),
    ("numTpsSettings", FUS, "settings (fold x shots) of temperature-ps under audio corruption",
     lambda d: str(_wins(d, "temperature-ps", "audio-corrupt50")[1])),
    ("numTpsCleanNoLoss", FUS, "clean settings where temperature-ps is not behind the best fixed fusion (delta + CI >= 0)",
     lambda d: str(_wins(d, "temperature-ps", "clean", sign=0)[0])),
    ("numFusionEpisodes", FUS, "test episodes of the fusion runs", lambda d: str(d["episodes"])),
    ("numAmThreeWEsc", FES, "am3 audio weight clean items esc50-text", lambda d: f2(_w(d, "audio", "mean_weights_clean_items", fold="default", shots=1, condition="audio-corrupt50", head="am3"))),
    ("numAmThreeWEscCorr", FES, "am3 audio weight corrupted items esc50-text", lambda d: f2(_w(d, "audio", "mean_weights_corrupted_items", fold="default", shots=1, condition="audio-corrupt50", head="am3"))),
    # Omniglot backbones
    ("numOmniProtoFiveOne", OMNI, "protonet-conv4 5-way 1-shot", lambda d: f2(row(d, method="protonet-conv4", ways=5, shots=1)["accuracy"])),
    ("numOmniProtoTwentyOne", OMNI, "protonet-conv4 20-way 1-shot", lambda d: f2(row(d, method="protonet-conv4", ways=20, shots=1)["accuracy"])),
    ("numOmniProtoFiveOnePub", OMNI, "published ProtoNet 5-way 1-shot (Snell et al. 2017; fewmm.bench.backbone.PUBLISHED)", lambda d: f1(_published("protonet", 5, 1))),
    ("numOmniProtoTwentyOnePub", OMNI, "published ProtoNet 20-way 1-shot (Snell et al. 2017)", lambda d: f1(_published("protonet", 20, 1))),
    ("numOmniFrozenEffFiveOne", OMNI, "frozen efficientnet-lite2 5-way 1-shot on the same episodes", lambda d: f2(row(d, method="frozen efficientnet-lite2", ways=5, shots=1)["accuracy"])),
    ("numOmniProtoTrainEpisodes", OMNI, "ProtoNet training episodes", lambda d: str(d["training"]["episodes"])),
    ("numMamlFiveOne", MAML5, "maml 5-way 1-shot", lambda d: f2(row(d, ways=5, shots=1, method=d["results"][0]["method"])["accuracy"])),
    ("numMamlFiveOnePub", MAML5, "published MAML 5-way 1-shot (Finn et al. 2017)", lambda d: f1(_published("maml", 5, 1))),
    ("numMamlTwentyOne", MAML20, "maml 20-way 1-shot", lambda d: f2(row(d, ways=20, shots=1, method=d["results"][0]["method"])["accuracy"])),
    ("numMamlTwentyOnePub", MAML20, "published MAML 20-way 1-shot (Finn et al. 2017)", lambda d: f1(_published("maml", 20, 1))),
    ("numMamlFiveSteps", MAML5, "MAML 5-way meta-steps", lambda d: str(d["training"]["episodes"])),
    # transfer
    ("numTrEscProto", TRE, "esc50-text protonet raw 5-way 1-shot", lambda d: f2(row(d, protocol="episodes", shots=1, method="protonet", features="raw")["accuracy"])),
    ("numTrEscAmThree", TRE, "esc50-text am3 5-way 1-shot", lambda d: f2(row(d, protocol="episodes", shots=1, method="am3")["accuracy"])),
    ("numTrEscBest", TRE, "best class-text method 5-way 1-shot (accuracy)", lambda d: f2(_best_transfer(d)["accuracy"])),
    ("numTrEscBestName", TRE, "best class-text method 5-way 1-shot (name)", lambda d: _best_transfer(d)["method"].replace("+", "{+}")),
    ("numTrEscBridgeProto", TRE, "protonet on bridge features 5-way 1-shot", lambda d: f2(row(d, protocol="episodes", shots=1, method="protonet[bridge]")["accuracy"])),
    ("numTrEscZeroShot", TRE, "zero-shot over the novel classes", lambda d: f2(d["zero_shot"]["default/audio"]["novel"]["accuracy"])),
    ("numTrEscZeroShotChance", TRE, "chance of that", lambda d: f2(d["zero_shot"]["default/audio"]["novel"]["chance"])),
    ("numTrEscGoal", TREG, "mahalanobis-text 5-way 1-shot (chosen on validation classes)", lambda d: f2(row(d, protocol="episodes", shots=1, method="mahalanobis-text")["accuracy"])),
    ("numTrEscGoalWhitenOnly", GSEL, "ablation after the choice: base-whitened prototypes alone, novel 5-way 1-shot", lambda d: f2(next(r for r in d["ablation"] if r["shots"] == 1 and r["method"] == "mahalanobis[x] shrinkage=0.5")["accuracy"])),
    ("numTrEscGoalCandidates", GSEL, "configurations scored on the validation classes", lambda d: str(d["n_candidates"])),
    ("numTrDigitsZeroAImage", TRD, "zero-shot fold A image", lambda d: f2(d["zero_shot"]["A/image"]["novel"]["accuracy"])),
    # speed
    ("numSpeedOverLtl", THR, "fewmm / learn2learn episode throughput, 2 threads, median of the interleaved rounds", lambda d: f1(d["stable_ratios"]["fewmm_over_l2l"]["median"])),
    ("numSpeedOverLoop", THR, "fewmm / plain loop", lambda d: f1(d["stable_ratios"]["fewmm_over_loop"]["median"])),
    ("numSpeedOverGather", THR, "fewmm time / gather time", lambda d: f2(d["stable_ratios"]["fewmm_time_over_gather_time"]["median"])),
    ("numSpeedFloorOverGather", THR, "unfused floor (gather + one bmm) time / gather time", lambda d: f2(d["stable_ratios"]["unfused_floor_time_over_gather_time"]["median"])),
    ("numMamlGramMin", MSP, "Gram-path MAML / learn2learn, lowest of the four settings", lambda d: f1(min(r["methods"]["gram"]["ratio_vs_l2l"]["median"] for r in d["speed"]))),
    ("numMamlGramMax", MSP, "Gram-path MAML / learn2learn, highest of the four settings", lambda d: f1(max(r["methods"]["gram"]["ratio_vs_l2l"]["median"] for r in d["speed"]))),
    ("numMamlFuncMin", MSP, "general (functional) MAML / learn2learn, lowest of the four settings", lambda d: f1(min(r["methods"]["functional"]["ratio_vs_l2l"]["median"] for r in d["speed"]))),
    ("numMamlFuncMax", MSP, "general (functional) MAML / learn2learn, highest of the four settings", lambda d: f1(max(r["methods"]["functional"]["ratio_vs_l2l"]["median"] for r in d["speed"]))),
    ("numMamlCeilMin", MSP, "learn2learn time / floor time (ceiling of any exact path), lowest setting", lambda d: f1(min(r["methods"]["gram"]["ceiling_vs_l2l"] for r in d["speed"]))),
    ("numMamlCeilMax", MSP, "learn2learn time / floor time (ceiling of any exact path), highest setting", lambda d: f1(max(r["methods"]["gram"]["ceiling_vs_l2l"] for r in d["speed"]))),
    ("numMamlGramOverLtl", MSP, "Gram-path MAML / learn2learn, 5 inner steps, second order", lambda d: f1(next(r for r in d["speed"] if r["inner_steps"] == 5 and r["order"] == "second")["methods"]["gram"]["ratio_vs_l2l"]["median"])),
    ("numMemSecond", MEM, "Conv-4 MAML second-order peak extra MiB", lambda d: f"{d['rows']['second']['peak_extra_mib']:.0f}"),
    ("numMemFirst", MEM, "Conv-4 MAML first-order peak extra MiB", lambda d: f"{d['rows']['first']['peak_extra_mib']:.0f}"),
    ("numMemRatio", MEM, "second/first memory", lambda d: f2(d["second_over_first_memory"])),
    ("numMemTimeRatio", MEM, "second/first time of one meta-step", lambda d: f2(d["second_over_first_time"])),
]


CHALLENGE = "results/omniglot-challenge.json"


def _ch_error(doc, prefix):
    m = next((v for k, v in doc["methods"].items() if k.startswith(prefix)), None)
    if m is None:
        return "not measured in this build"
    return f"{m['error_pct']:.2f}\\%\\,$\\pm$\\,{m['ci95_over_runs']:.2f}"


#: Numbers of results files that may not exist yet (written by work in progress): (macro, file,
#: what, function, text when the file is missing)
OPTIONAL_MACROS = [
    ("numChallengeMhd", CHALLENGE, "modified Hausdorff distance error over the 400 items", lambda d: _ch_error(d, "modified Hausdorff")),
    ("numChallengeProto", CHALLENGE, "Conv-4 ProtoNet error over the 400 items", lambda d: _ch_error(d, "protonet")),
    ("numChallengeMaml", CHALLENGE, "Conv-4 MAML error over the 400 items", lambda d: _ch_error(d, "maml")),
    ("numChallengeHumans", CHALLENGE, "published human error (Lake et al. 2019, quoted in the results file)",
     lambda d: f"{d['published']['error_pct']['humans']}\\%"),
    ("numChallengeBPL", CHALLENGE, "published Bayesian program learning error (Lake et al. 2019, quoted)",
     lambda d: f"{d['published']['error_pct']['Bayesian program learning']}\\%"),
    ("numChallengeProtoPub", CHALLENGE, "published prototypical networks error (Lake et al. 2019, quoted)",
     lambda d: f"{d['published']['error_pct']['prototypical networks']}\\%"),
]


def numbers_tex(root: Path) -> str:
    """``paper/generated/numbers.tex``: one macro per :data:`MACROS` entry, each with its source,
    then :data:`OPTIONAL_MACROS` (a placeholder text where their results file does not exist yet)."""
    present = [m for m in OPTIONAL_MACROS if (Path(root) / m[1]).exists()]
    missing = [m for m in OPTIONAL_MACROS if m not in present]
    files = sorted({f for _, f, _, _ in MACROS + present})
    prov = [provenance(root, f) for f in files]
    docs = {f: load_json(root, f) for f in files}
    lines = [HEADER, source_lines(prov)] + [f"% source {f} missing\n" for f in sorted({m[1] for m in missing})]
    for name, f, what, _ in missing:
        lines.append(f"\\newcommand{{\\{name}}}{{[not in this build]}}% {f}: {what}\n")
    for name, f, what, fn in MACROS + present:
        try:
            val = fn(docs[f])
        except (KeyError, IndexError, StopIteration, TypeError, ValueError, FewmmError) as e:
            raise FewmmError(f"in-text number \\{name} ({what}): cannot read it from {f} ({type(e).__name__}: {e})") from None
        lines.append(f"\\newcommand{{\\{name}}}{{{val}}}% {f}: {what}\n")
    return "".join(lines)
