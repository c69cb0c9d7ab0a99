"""Posteriors on disk: one portable .npz file (arrays plus a JSON header), written atomically.

The file is written to a temporary file in the same directory, flushed and fsync'ed, then moved over
the target with ``os.replace`` (atomic on POSIX and Windows): a crash mid-write leaves the old file,
never half of a new one.  Loading never unpickles (``allow_pickle=False``).
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile

import numpy as np

from koopnb.errors import FitError

HEADER = "koopnb_header"
FORMAT = "koopnb-posterior-1"


def write(path: str | os.PathLike, arrays: dict[str, np.ndarray], header: dict) -> None:
    """Write ``arrays`` and the JSON-serialisable ``header`` to ``path`` atomically."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    payload = {**arrays, HEADER: np.array(json.dumps({"format": FORMAT, **header}))}
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".koopnb-", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            np.savez_compressed(stream, **payload)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def read(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict]:
    """The arrays and header of a file written by :func:`write`."""
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            if HEADER not in archive.files:
                raise FitError(f"{path!r} is not a koopnb posterior file (it has no koopnb header)")
            header = json.loads(str(archive[HEADER]))
            arrays = {name: archive[name] for name in archive.files if name != HEADER}
    except FileNotFoundError:
        raise FitError(f"there is no posterior file {path!r}") from None
    except (zipfile.BadZipFile, ValueError, OSError) as error:
        raise FitError(f"{path!r} is not a readable koopnb posterior file ({error})") from None
    if header.get("format") != FORMAT:
        raise FitError(f"{path!r} has format {header.get('format')!r}; this koopnb reads {FORMAT!r}")
    return arrays, header
