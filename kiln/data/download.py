"""``get_file``: download a file once into a cache, check its hash, extract archives.

As ``keras.utils.get_file``, with nothing resumed or kept silently: the download goes to
``NAME.part`` and becomes ``NAME`` only when it is complete (its length matches
Content-Length) and its hash matches; otherwise the partial file is deleted and the
error says why. Archives are checked before anything is extracted: a member that would
land outside the target directory (an absolute path, ``..``, a link, a device) rejects
the whole archive.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

_CHUNK = 1 << 16


class DownloadError(OSError):
    """A download failed (network error, truncated file, hash mismatch)."""


def cache_root(cache_dir=None) -> Path:
    """``cache_dir``, else ``$KILN_HOME``, else ``~/.kiln`` (falling back to a temporary
    directory when the home directory is not writable)."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get("KILN_HOME"):
        return Path(os.environ["KILN_HOME"]).expanduser()
    home = Path("~").expanduser() / ".kiln"
    if os.access(home if home.exists() else home.parent, os.W_OK):
        return home
    return Path(tempfile.gettempdir()) / ".kiln"


def hash_file(path, algorithm="sha256") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _algorithm(file_hash: str, hash_algorithm: str) -> str:
    if hash_algorithm in ("sha256", "md5"):
        return hash_algorithm
    if hash_algorithm != "auto":
        raise ValueError(f"hash_algorithm must be 'auto', 'sha256' or 'md5', got "
                         f"{hash_algorithm!r}")
    return "sha256" if len(file_hash) == 64 else "md5"


def get_file(fname=None, origin=None, file_hash=None, cache_dir=None, extract=False,
             cache_subdir="datasets", hash_algorithm="auto", archive_format="auto",
             force_download=False, timeout=60.0, md5_hash=None, untar=False) -> str:
    """The local path of ``origin``, downloaded into ``cache_dir/cache_subdir/fname``
    unless already there (and, with ``file_hash``, matching it: a cached file that does
    not match is downloaded again).

    - ``file_hash``: the expected sha256 (or md5: 32 hex digits) of the file.
    - ``extract``: unpack a zip / tar archive into ``cache_dir/cache_subdir/<fname
      without its archive suffix>`` and return that directory.
    - Raises ``DownloadError`` (an ``OSError``) when the download fails or is truncated,
      ``ValueError`` when the hash does not match or an archive is unsafe; in each case
      nothing is left in the cache.
    - ``md5_hash`` and ``untar`` are Keras' older spellings of ``file_hash`` / ``extract``.
    """
    file_hash = file_hash or md5_hash
    extract = extract or untar
    if origin is None:
        raise ValueError('get_file needs an origin (the URL to download), e.g. '
                         'get_file("data.npz", origin="https://...")')
    if not fname:
        fname = os.path.basename(urllib.request.urlparse(origin).path)
        if not fname:
            raise ValueError(f"cannot name the file from origin {origin!r}; give fname")
    if os.path.basename(fname) != fname or fname in (".", ".."):
        raise ValueError(f"fname must be a plain file name, got {fname!r}")
    datadir = cache_root(cache_dir) / cache_subdir
    datadir.mkdir(parents=True, exist_ok=True)
    fpath = datadir / fname
    algo = _algorithm(file_hash, hash_algorithm) if file_hash else None

    need = force_download or not fpath.exists()
    if not need and file_hash and hash_file(fpath, algo) != file_hash.lower():
        need = True                     # a stale or corrupt copy: fetch it again
    if need:
        _download(origin, fpath, file_hash, algo, timeout)
        if extract and _extract_dir(fpath).is_dir():     # extracted from the old copy
            shutil.rmtree(_extract_dir(fpath))
    if extract:
        return str(extract_archive(fpath, _extract_dir(fpath), archive_format))
    return str(fpath)


def _download(origin, fpath: Path, file_hash, algo, timeout):
    part = fpath.with_name(fpath.name + ".part")
    h = hashlib.new(algo) if algo else None
    got = 0
    try:
        with urllib.request.urlopen(origin, timeout=timeout) as r, open(part, "wb") as out:
            expected = r.headers.get("Content-Length")
            for chunk in iter(lambda: r.read(_CHUNK), b""):
                out.write(chunk)
                got += len(chunk)
                if h:
                    h.update(chunk)
        if expected is not None and got != int(expected):
            raise DownloadError(f"get_file: the download of {origin} stopped after {got} of "
                                f"{expected} bytes; the partial file was deleted")
    except DownloadError:
        part.unlink(missing_ok=True)
        raise
    except (OSError, urllib.error.URLError, ValueError) as e:
        part.unlink(missing_ok=True)
        raise DownloadError(f"get_file: downloading {origin} failed after {got} bytes "
                            f"({type(e).__name__}: {e}); the partial file was deleted") from e
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    if h and h.hexdigest() != file_hash.lower():
        part.unlink(missing_ok=True)
        raise ValueError(f"get_file: {origin} does not match the expected {algo} hash "
                         f"(expected {file_hash.lower()}, got {h.hexdigest()}); the download "
                         f"was deleted. The file may have changed or been corrupted.")
    os.replace(part, fpath)


_SUFFIXES = (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tar", ".zip")


def _extract_dir(fpath: Path) -> Path:
    name = fpath.name
    for s in _SUFFIXES:
        if name.endswith(s) and len(name) > len(s):
            return fpath.with_name(name[:-len(s)])
    return fpath.with_name(name + "_extracted")


def _safe_member(name: str, what: str, archive) -> None:
    p = name.replace("\\", "/")
    if p.startswith("/") or (len(p) > 1 and p[1] == ":") or ".." in p.split("/"):
        raise ValueError(f"{archive}: refusing to extract {what} {name!r}: it would be written "
                         f"outside the target directory (path traversal)")


def extract_archive(path, target, archive_format="auto") -> Path:
    """Extract a zip or tar archive into ``target`` (all members checked first; written
    into a temporary directory beside ``target`` and renamed, so a failure leaves no
    half-extracted tree). Returns ``target``."""
    path, target = Path(path), Path(target)
    kinds = ("tar", "zip") if archive_format == "auto" else \
        ((archive_format,) if isinstance(archive_format, str) else tuple(archive_format))
    if target.is_dir():
        return target
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        if "zip" in kinds and zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                for info in z.infolist():
                    _safe_member(info.filename, "member", path)
                    if (info.external_attr >> 16) & 0o170000 == 0o120000:
                        raise ValueError(f"{path}: refusing to extract the symbolic link "
                                         f"{info.filename!r}")
                z.extractall(tmp)
        elif "tar" in kinds and tarfile.is_tarfile(path):
            with tarfile.open(path) as t:
                members = t.getmembers()
                for m in members:
                    _safe_member(m.name, "member", path)
                    if m.issym() or m.islnk():
                        raise ValueError(f"{path}: refusing to extract the link {m.name!r} "
                                         f"-> {m.linkname!r}")
                    if not (m.isfile() or m.isdir()):
                        raise ValueError(f"{path}: refusing to extract {m.name!r}, which is "
                                         f"not a regular file or directory")
                if hasattr(tarfile, "data_filter"):
                    t.extractall(tmp, members=members, filter="data")
                else:
                    t.extractall(tmp, members=members)
        else:
            raise ValueError(f"{path} is not a {' or '.join(kinds)} archive")
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
