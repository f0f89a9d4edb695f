"""Your own methods, heads and encoders in the harness: ``--plugin`` modules and entry points.

Two ways to add code without editing fewmm:

* ``--plugin MODULE`` on the command lines (``python -m fewmm.bench``, ``fewmm.bench.fusion``,
  ``fewmm.bench.backbone``, ``fewmm.adapt``): an importable module name (``my_lab.methods``) or
  the path of a ``.py`` file (``my_methods.py``), imported before anything runs. The module
  registers what it defines with the registries' decorators::

      import fewmm.methods as M

      @M.register("median-proto", "ProtoNet with per-class median prototypes")
      class MedianProto(M.FewShotMethod): ...

  (``fewmm.heads.register`` and ``fewmm.encoders.register`` likewise.)
* Python entry points, for an installed package: groups ``fewmm.methods``, ``fewmm.heads`` and
  ``fewmm.encoders``; each entry's name is the registry name and its value the class or factory
  (``median-proto = "my_lab.methods:MedianProto"``). They are read with
  :func:`importlib.metadata.entry_points` the first time a registry is used (see
  :class:`fewmm.registry.Registry`).

What was loaded is written into every results file (:func:`plugins_record`).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import traceback
from pathlib import Path
from types import ModuleType

from .errors import PluginError
from .util import sha256_file

#: spec given to :func:`import_plugin` -> its record (module, file, sha256)
_IMPORTED: dict[str, dict] = {}


def import_plugin(spec: str) -> ModuleType:
    """Import one plugin module.

    Parameters
    ----------
    spec : str
        A module name importable from ``sys.path`` (the current folder included), or the path of
        a ``.py`` file (imported as a module named after the file's stem).

    Returns
    -------
    module

    Raises
    ------
    fewmm.errors.PluginError
        No such module or file, or its import raised (the message gives the plugin's own file and
        line where the error happened, and the error).
    """
    spec = str(spec).strip()
    if not spec:
        raise PluginError("--plugin: empty module name")
    is_file = spec.endswith(".py") or os.sep in spec or "/" in spec
    try:
        if is_file:
            path = Path(spec).expanduser().resolve()
            if not path.is_file():
                raise PluginError(f"--plugin {spec}: no such file ({path}); give a .py file or an importable module name")
            name = path.stem
            if name in sys.modules and getattr(sys.modules[name], "__file__", None) == str(path):
                module = sys.modules[name]
            else:
                if name in sys.modules:
                    raise PluginError(f"--plugin {spec}: a module named {name!r} is already imported from "
                                      f"{getattr(sys.modules[name], '__file__', '?')}; rename the file")
                mspec = importlib.util.spec_from_file_location(name, path)
                module = importlib.util.module_from_spec(mspec)
                sys.modules[name] = module
                try:
                    mspec.loader.exec_module(module)
                except BaseException:
                    sys.modules.pop(name, None)
                    raise
        else:
            if "" not in sys.path and os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())  # as `python -m` does: modules in the current folder
            module = importlib.import_module(spec)
    except PluginError:
        raise
    except ModuleNotFoundError as e:
        if e.name and spec.split(".")[0] == e.name.split(".")[0]:
            raise PluginError(f"--plugin {spec}: no module named {e.name!r} (is it installed, or on PYTHONPATH? "
                              "a file path must end with .py)") from None
        raise PluginError(f"--plugin {spec}: importing it failed: {_where(e)}ModuleNotFoundError: {e}") from None
    except Exception as e:
        raise PluginError(f"--plugin {spec}: importing it failed: {_where(e)}{type(e).__name__}: {e}") from None
    file = getattr(module, "__file__", None)
    rec = {"module": module.__name__, "file": file}
    if file and Path(file).is_file():
        rec["sha256"] = sha256_file(file)
    _IMPORTED[spec] = rec
    return module


def _where(e: BaseException) -> str:
    """'file:line: ' of the innermost frame of the error outside Python's import machinery."""
    frames = [f for f in traceback.extract_tb(e.__traceback__) if "importlib" not in f.filename
              and not f.filename.endswith("fewmm/plugins.py")]
    return f"{frames[-1].filename}:{frames[-1].lineno}: " if frames else ""


def import_plugins(specs) -> list[ModuleType]:
    """Import every plugin of ``specs`` (a list of strings, each possibly comma-separated;
    ``None`` for none) with :func:`import_plugin`, in order."""
    if isinstance(specs, str):
        specs = [specs]
    out = []
    for s in specs or []:
        for part in str(s).split(","):
            if part.strip():
                out.append(import_plugin(part.strip()))
    return out


def plugins_record() -> dict:
    """JSON-able record of the plugins in use: ``--plugin`` modules (module, file, sha256) and
    the entries registered from entry points, per registry (name -> distribution, version, value).
    Only registries already imported are listed."""
    rec: dict = {}
    if _IMPORTED:
        rec["modules"] = dict(_IMPORTED)
    for modname, attr in (("fewmm.methods", "METHODS"), ("fewmm.heads", "HEADS"), ("fewmm.encoders", "ENCODERS")):
        mod = sys.modules.get(modname)
        reg = getattr(mod, attr, None) if mod is not None else None
        if reg is not None and reg.from_entry_points:
            rec[modname] = dict(reg.from_entry_points)
    return rec


def add_plugin_argument(parser) -> None:
    """Add the ``--plugin`` flag (repeatable, comma-separated) to an argparse parser."""
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                        help="import this module (a name on sys.path, or a .py file) before running, so the methods, "
                             "heads and encoders it registers can be named; repeatable or comma-separated (default: none)")


__all__ = ["import_plugin", "import_plugins", "plugins_record", "add_plugin_argument"]
