"""The shape of the code (issue 10, item 7): no module imports another module's private names,
and the shared helpers live in one module (:mod:`fewmm.util`)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "fewmm"

#: Imports of private names that may stay for now, each with the reason; empty: none.
PENDING: set[tuple[str, str]] = set()


def _private(part: str) -> bool:
    return part.startswith("_") and not part.startswith("__")


def _module_of(path: Path, root: Path) -> list[str]:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def private_imports(root: Path = PKG) -> list[tuple[str, str]]:
    """``(file, "module.name")`` for every import, inside the package, of another module's private
    name (``from .x import _y``, ``import fewmm.x._y``) or of a private module from outside its
    own package (``from ..encoders._util import f`` in ``fewmm/backbones``). A private module may
    be imported by the modules of its own package (``encoders/_util.py`` by ``encoders/*.py``)."""
    out = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).as_posix()
        here = _module_of(path, root)
        pkg = here if path.name == "__init__.py" else here[:-1]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=rel)):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = pkg[: len(pkg) - (node.level - 1)] if node.level > 1 else list(pkg)
                    target = base + (node.module.split(".") if node.module else [])
                else:
                    target = (node.module or "").split(".")
                if target[:1] != ["fewmm"]:
                    continue  # third-party: not ours to police
                names = [(target + [a.name]) for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name.split(".") for a in node.names if a.name.split(".")[0] == "fewmm"]
            else:
                continue
            for full in names:
                for i, part in enumerate(full):
                    if _private(part) and full[:i] != pkg:  # private to a package that is not this file's
                        out.append((rel, ".".join(full)))
                        break
    return out


def test_the_scanner_finds_each_kind_of_private_import(tmp_path):
    root = tmp_path / "fewmm"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    for f in ("__init__.py", "a/__init__.py", "b/__init__.py", "a/_helpers.py", "a/ok.py"):
        (root / f).write_text("")
    (root / "a" / "ok.py").write_text("from ._helpers import f\nfrom . import _helpers\nfrom os import _exit\n")
    (root / "b" / "bad.py").write_text(
        "from ..a.ok import _secret\nfrom ..a._helpers import f\nimport fewmm.a._helpers\nfrom fewmm.a import ok\n")
    assert private_imports(root) == [
        ("fewmm/b/bad.py", "fewmm.a.ok._secret"),
        ("fewmm/b/bad.py", "fewmm.a._helpers.f"),
        ("fewmm/b/bad.py", "fewmm.a._helpers"),
    ]


def test_no_module_imports_another_modules_private_names():
    found = set(private_imports())
    new = sorted(found - PENDING)
    assert not new, "modules import other modules' private names (make the name public, or move it to fewmm.util):\n" + \
        "\n".join(f"  {f}: {n}" for f, n in new)
    gone = sorted(PENDING - found)
    assert not gone, f"no longer imported, remove from PENDING: {gone}"


@pytest.mark.parametrize("pattern,where", [
    ("x.norm(dim=-1, keepdim=True).clamp_min(", "fewmm/util.py"),
    ("hashlib.file_digest(", "fewmm/util.py"),
    ("def check_labels(", "fewmm/util.py"),
    ("def check_label_types(", "fewmm/util.py"),
    ("os.replace(tmp", "fewmm/util.py"),
])
def test_shared_helpers_are_written_once(pattern, where):
    """One copy of each shared helper, in fewmm.util."""
    skip: set[str] = set()
    hits = sorted(p.relative_to(PKG.parent).as_posix() for p in PKG.rglob("*.py")
                  if pattern in p.read_text(encoding="utf-8") and p.relative_to(PKG.parent).as_posix() not in skip)
    assert hits == [where]
