"""What a prepared dataset was made from, so `prepare` into a folder that holds one reuses it only when it matches.

The inputs are the data config (paths resolved), the world config for synthetic data, the format version and the
input files the adapter reads: name, size and SHA-256 of the content. Hashing is skipped for a file whose size and
mtime equal the ones recorded at the last prepare (its recorded hash is reused), so checking a big unchanged source
costs a stat per file; a touched but identical file is re-hashed and still matches. A media folder (MovieLens
posters) enters by its file names only: the tables depend on which posters exist, the encoder cache on their bytes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from recsys.errors import DataError

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def file_entries(paths: Iterable[Path], root: Path, previous: dict | None = None) -> dict[str, dict]:
    """{name relative to root: {size, mtime_ns, sha256}} of each file; previous: the entries recorded last time."""
    previous = previous or {}
    out: dict[str, dict] = {}
    for path in sorted(paths):
        name = path.relative_to(root).as_posix()
        try:
            st = path.stat()
            prev = previous.get(name)
            if prev and prev.get("size") == st.st_size and prev.get("mtime_ns") == st.st_mtime_ns:
                digest = prev["sha256"]
            else:
                digest = sha256_file(path)
        except OSError as e:
            raise DataError(f"cannot read: {e.strerror or e}", file=str(path)) from None
        out[name] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
    return out


def names_entry(paths: Iterable[Path]) -> dict:
    """A folder that matters by its file names only: {files, names_sha256}."""
    names = sorted(p.name for p in paths)
    return {"files": len(names), "names_sha256": hashlib.sha256("\n".join(names).encode()).hexdigest()}


def _comparable(inputs: dict) -> dict:
    """The inputs without mtimes (they decide whether to re-hash, not whether the source changed)."""
    files = {k: {f: v for f, v in e.items() if f != "mtime_ns"} for k, e in inputs.get("files", {}).items()}
    return {**inputs, "files": files}


def fingerprint(inputs: dict) -> str:
    return hashlib.sha256(json.dumps(_comparable(inputs), sort_keys=True, default=str).encode()).hexdigest()


def _flatten(d, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], object]:
    if not isinstance(d, dict) or not d:
        return {prefix: d}
    out: dict[tuple[str, ...], object] = {}
    for k, v in d.items():
        out.update(_flatten(v, (*prefix, str(k))))
    return out


def differences(old: dict, new: dict) -> list[str]:
    """Readable names of what differs: config keys (data.split.test_fraction, world.seed) and input files."""
    old, new = _comparable(old), _comparable(new)
    fa, fb = old.pop("files"), new.pop("files")
    a, b = _flatten(old), _flatten(new)
    out = [".".join(k) or "<inputs>" for k in sorted(set(a) | set(b)) if a.get(k, "<absent>") != b.get(k, "<absent>")]
    for name in sorted(set(fa) | set(fb)):
        if name not in fa:
            out.append(f"file {name} (added)")
        elif name not in fb:
            out.append(f"file {name} (removed)")
        elif fa[name] != fb[name]:
            out.append(f"file {name} (changed)")
    return out
