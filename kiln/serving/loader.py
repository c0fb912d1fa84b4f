"""What ``kiln serve MODEL`` serves.

MODEL is one of:

- a SPEC as for ``kiln dump``: ``path/to/file.py:NAME`` (a model or graph, or a function
  returning one; ``path/to/file.py`` alone means NAME ``model``) or a ``.kir`` file.
  It is served as version 1, named after the file (``mlp.py`` -> ``mlp``);
- a model file that a registered loader reads (see ``register_loader``);
- a directory of versions, as TF Serving lays them out: ``NAME/1/``, ``NAME/2/``, ...
  (directory names that are integers; others are ignored). Each version directory
  holds one model file: ``model.py`` defining ``model`` (a model, a graph, or a
  function returning one), or a file a registered loader reads. The model is named
  after the directory. The highest version is served (``versions="all"``: every one).

A loader is a function ``path -> model or kiln.ir.Graph``, registered with a file-name
pattern; model files (``*.keras``, ``*.h5``) slot in the same way when kiln reads them.
"""
from __future__ import annotations

import fnmatch
from pathlib import Path

from ..cli import CLIError, load_spec

_LOADERS: list = []          # (file-name pattern, loader), tried in order


def register_loader(pattern: str, loader, first: bool = False):
    """Serve files whose name matches ``pattern`` (a glob, e.g. ``"*.keras"``) with
    ``loader(path) -> model or Graph``."""
    entry = (pattern, loader)
    _LOADERS.insert(0, entry) if first else _LOADERS.append(entry)


register_loader("model.py", lambda p: load_spec(f"{p}:model"))
register_loader("*.kir", lambda p: load_spec(str(p)))
for _pattern in ("*.keras", "*.h5", "*.hdf5"):   # Keras model files (kiln/saving)
    register_loader(_pattern, lambda p: load_spec(str(p)))


def _loader_for(path: Path):
    for pattern, loader in _LOADERS:
        if fnmatch.fnmatch(path.name, pattern):
            return loader
    return None


def _version_dir_loader(d: Path):
    files = sorted(p for p in d.iterdir() if p.is_file())
    for pattern, loader in _LOADERS:
        for p in files:
            if fnmatch.fnmatch(p.name, pattern):
                return (lambda p=p, loader=loader: loader(p)), p
    wanted = ", ".join(pattern for pattern, _ in _LOADERS)
    raise CLIError(f"{d}: no model file in this version directory (expected one of: {wanted})")


def find_versions(model: str, versions: str = "latest") -> tuple:
    """``(default model name, {version: (load function, source path)})``."""
    if versions not in ("latest", "all"):
        raise ValueError(f"versions must be 'latest' or 'all', got {versions!r}")
    path, sep, attr = model.partition(":")
    p = Path(path)
    if sep or p.suffix == ".py":
        spec = model if sep else f"{path}:model"
        return p.stem, {1: ((lambda: load_spec(spec)), p)}
    if not p.exists():
        raise CLIError(f"{model}: no such file or directory (expected path/to/file.py:NAME, "
                       f"a model file, or a directory of versions NAME/1/, NAME/2/, ...)")
    if p.is_file():
        loader = _loader_for(p)
        if loader is None:
            known = ", ".join(pattern for pattern, _ in _LOADERS)
            raise CLIError(f"{model}: no loader for this file (known: {known}; or give "
                           f"path/to/file.py:NAME)")
        return p.stem, {1: ((lambda: loader(p)), p)}
    found = {}
    for d in p.iterdir():
        if d.is_dir() and d.name.isdigit():
            found[int(d.name)] = d
    if not found:
        raise CLIError(f"{model}: no version directories in it (expected {p.name}/1/, "
                       f"{p.name}/2/, ... each holding a model file such as model.py)")
    chosen = sorted(found) if versions == "all" else [max(found)]
    return p.resolve().name, {v: _version_dir_loader(found[v]) for v in chosen}
