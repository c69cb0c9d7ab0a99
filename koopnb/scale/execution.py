"""Run one small job per subject or stratum, in batches of about a second, in-process or on Dask.

Every job is a module-level function ``work(shared, item) -> row`` (a dict): ``shared`` holds what every job
needs (the model, the target, the options) and is shipped to each worker once; ``item`` is one subject or
stratum.  A job never raises — it reports its own failure in the row — so a task only fails when its worker
dies, and then the scheduler runs it again elsewhere.  Jobs take their random numbers from their own item
(see :func:`subject_seed`), so the rows do not depend on batching, worker, order or retries: a cluster run,
a run that lost a worker and a serial run give the same table.  Jobs run with one BLAS thread everywhere:
a multi-threaded BLAS sums in another order and would change the last bits.

``client``: ``"serial"`` runs every job in this process, one after another (the reference run); ``None``
runs a short job in this process and a longer one on a LocalCluster of one single-threaded worker process
per core, started for the call and closed after it (processes, not threads: the fits are mostly Python code
holding the GIL; benchmarks/scale.py measures both); a ``distributed.Client`` runs the jobs on its cluster.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from koopnb.errors import KoopnbError

TASK_SECONDS = 1.0
"""Target duration of one task: long enough that scheduling overhead (about a millisecond per task) is
negligible, short enough that the work spreads evenly and a lost worker costs little."""
PILOT_SECONDS = 0.5
"""Jobs are run in this process until this much time is spent, to size the batches (their rows are kept)."""
CLUSTER_WORTH_SECONDS = 10.0
"""Below this predicted remaining time, ``client=None`` finishes in this process: starting worker processes
takes a few seconds."""


def run_jobs(work: Callable[[Any, Any], dict], shared: Any, items: Sequence, *, client=None, label: str = "",
             progress: bool = True, batch_size: int | None = None) -> list[dict]:
    """``[work(shared, item) for item in items]``, run as described in the module docstring (same order)."""
    items = list(items)
    rows: list[dict | None] = [None] * len(items)
    if client is not None and client != "serial" and not _is_client(client):
        raise KoopnbError(f"client must be None, 'serial' or a distributed.Client, not {type(client).__name__}")
    with tqdm(total=len(items), desc=label, disable=not progress, leave=False) as bar, threadpool_limits(limits=1):
        if client == "serial":
            for index, item in enumerate(items):
                rows[index] = work(shared, item)
                bar.update(1)
            return rows
        # Pilot: run jobs here until their cost is known (one job when the batch size is given).
        done, spent = 0, 0.0
        while done < len(items) and spent < PILOT_SECONDS and not (batch_size and done):
            started = time.perf_counter()
            rows[done] = work(shared, items[done])
            spent += time.perf_counter() - started
            done += 1
            bar.update(1)
        remaining = range(done, len(items))
        per_job = spent / max(done, 1)
        if client is None and per_job * len(remaining) < CLUSTER_WORTH_SECONDS:
            for index in remaining:
                rows[index] = work(shared, items[index])
                bar.update(1)
            return rows
        size = batch_size or max(1, round(TASK_SECONDS / max(per_job, 1e-6)))
        batches = [list(remaining[start:start + size]) for start in range(0, len(remaining), size)]
        if client is None:
            with _local_client() as local:
                _run_on(local, work, shared, items, batches, rows, bar)
        else:
            _run_on(client, work, shared, items, batches, rows, bar)
    return rows


def _run_on(client, work, shared, items, batches: list[list[int]], rows: list, bar) -> None:
    from distributed import as_completed

    # Shipped once to every worker; tasks refer to it by key.
    [shared_on_workers] = client.scatter([shared], broadcast=True, hash=False)
    futures = {client.submit(_run_batch, work, shared_on_workers, [items[i] for i in batch], pure=False): batch
               for batch in batches}
    for future in as_completed(futures):
        batch = futures[future]
        for index, row in zip(batch, future.result(), strict=True):
            rows[index] = row
        bar.update(len(batch))
    client.cancel(shared_on_workers)


def _run_batch(work, shared, batch: list) -> list[dict]:
    # Set for good, not restored: on a worker with several threads, restoring in one thread while another
    # computes would change its arithmetic mid-job (dask's worker processes start with one BLAS thread anyway).
    threadpool_limits(limits=1)
    return [work(shared, item) for item in batch]


def _is_client(client) -> bool:
    from distributed import Client

    return isinstance(client, Client)


@contextmanager
def _local_client():
    """A LocalCluster of single-threaded worker processes on 127.0.0.1, one per core, for one call (its dashboard
    on a free port: the default 8787 may be taken, and dask then prints a warning into the notebook)."""
    from distributed import Client, LocalCluster

    with local_cluster_config(), LocalCluster(n_workers=os.cpu_count() or 1, threads_per_worker=1, processes=True,
                                            host="127.0.0.1", dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        yield client


def local_cluster_config():
    """Dask config for the worker processes koopnb starts (``client=None``, benchmarks/scale.py): what makes a
    worker slower than this process at koopnb's jobs, switched off (measured in benchmarks/scale.py).

    - The nanny's MALLOC_TRIM_THRESHOLD_: setting it switches off glibc's adaptive mmap threshold, so every
      large numpy temporary is mapped and unmapped anew (jobs ran about 1.5× slower in a worker).
    - The worker's statistical profiler (a thread that takes the GIL every 10 ms to walk the task's stack, for
      the dashboard), the event-loop tick every 20 ms and the system monitor every 0.5 s: together an idle
      worker used 35 ms of CPU per second, 4 ms without them, and every wake-up takes the GIL from the job.
      The tick (which warns of a blocked event loop) runs every second and the monitor every 5 s instead.
    """
    import dask
    import distributed  # noqa: F401  (loads the distributed defaults into dask.config)

    environment = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
    environment.pop("MALLOC_TRIM_THRESHOLD_", None)
    return dask.config.set({"distributed.nanny.pre-spawn-environ": environment,
                            "distributed.worker.profile.enabled": False,
                            "distributed.admin.tick.interval": "1s",
                            "distributed.admin.system-monitor.interval": "5s"})


def checked_seed(seed) -> int:
    """The user's seed as an int (a non-negative integer is required)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise KoopnbError(f"seed must be a non-negative integer, not {seed!r}")
    return int(seed)


def subject_seed(seed: int, subject: Any) -> list[int]:
    """The entropy of one subject's numpy SeedSequence: the user's ``seed`` and the subject's ID (as text),
    never the order in which subjects are run."""
    digest = hashlib.sha256(str(subject).encode()).digest()
    return [checked_seed(seed), int.from_bytes(digest[:16], "little")]
