"""The paper's experiment registry (``paper/experiments.toml``): one entry per table or figure,
naming its results file(s), config(s), command(s) and README block.

    from fewmm.paper.registry import load_registry
    reg = load_registry(".")              # list of Experiment, in file order
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import FewmmError

REGISTRY = Path("paper") / "experiments.toml"
GENERATED = Path("paper") / "generated"
KINDS = ("table", "figure")


@dataclass
class Experiment:
    """One registered table or figure.

    Attributes
    ----------
    name : str
        Id (``reproduce NAME``), also the stem of its generated file ``paper/generated/<name>.tex``.
    title, kind, generator : str
        Caption title, ``"table"`` or ``"figure"``, generator name (``fewmm.paper.generators.GENERATORS``).
    results, config, command : list of str
        Results files and configs (paths relative to the repository root) and the commands that wrote them.
    readme_tag : str or None
        The README block ``<!-- results:TAG -->`` made from the same results.
    quick : str or None
        Extra flags of ``reproduce NAME --quick``; None: no quick mode registered.
    paper : bool
        False for an entry that is a README block only.
    optional : bool
        True when the results file may not exist yet (its table then says so).
    """

    name: str
    title: str
    kind: str
    generator: str
    results: list[str]
    config: list[str] = field(default_factory=list)
    command: list[str] = field(default_factory=list)
    readme_tag: str | None = None
    quick: str | None = None
    paper: bool = True
    optional: bool = False

    @property
    def tex(self) -> Path:
        """Generated LaTeX file, relative to the repository root."""
        return GENERATED / f"{self.name}.tex"

    @property
    def png(self) -> Path:
        """Generated figure (kind ``figure``), relative to the repository root."""
        return GENERATED / f"{self.name}.png"


def load_registry(root: str | Path = ".") -> list[Experiment]:
    """Read and validate ``<root>/paper/experiments.toml``.

    Parameters
    ----------
    root : str or Path
        Repository root.

    Returns
    -------
    list of Experiment
        In file order.

    Raises
    ------
    FewmmError
        The file is missing or not TOML, an entry lacks a key or has a wrong type or an unknown
        kind / generator, or two entries share a name; the message names the file and the entry.
    """
    from .generators import GENERATORS

    path = Path(root) / REGISTRY
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FewmmError(f"{path}: no experiment registry (expected paper/experiments.toml under the repository root)") from None
    except tomllib.TOMLDecodeError as e:
        raise FewmmError(f"{path}: not valid TOML ({e})") from None
    entries = doc.get("experiment")
    if not isinstance(entries, list) or not entries:
        raise FewmmError(f"{path}: expected [[experiment]] entries")
    out, seen = [], set()
    allowed = set(Experiment.__dataclass_fields__)
    for i, e in enumerate(entries, 1):
        where = f"{path}: [[experiment]] #{i} ({e.get('name', '?')})"
        unknown = set(e) - allowed
        if unknown:
            raise FewmmError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
        for k in ("name", "title", "kind", "generator", "results"):
            if k not in e:
                raise FewmmError(f"{where}: missing key {k!r}")
        for k in ("results", "config", "command"):
            v = e.get(k, [])
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise FewmmError(f"{where}: {k!r} must be a list of strings, got {v!r}")
        if e["kind"] not in KINDS:
            raise FewmmError(f"{where}: kind {e['kind']!r} is not one of {KINDS}")
        if e["generator"] not in GENERATORS:
            raise FewmmError(f"{where}: generator {e['generator']!r} is not one of {sorted(GENERATORS)}")
        if e["name"] in seen:
            raise FewmmError(f"{where}: the name {e['name']!r} is used twice")
        seen.add(e["name"])
        out.append(Experiment(**e))
    return out


def find(registry: list[Experiment], name: str) -> Experiment:
    """The entry called ``name``; FewmmError listing the names when there is none."""
    for e in registry:
        if e.name == name:
            return e
    raise FewmmError(f"no experiment {name!r} in {REGISTRY}; registered: {', '.join(e.name for e in registry)}")
