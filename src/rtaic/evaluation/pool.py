"""Run independent jobs on a small process pool, with a progress bar.

Each worker is a fresh (spawned) process limited to one torch thread: with one worker per core
this keeps the cores busy without oversubscribing them, and no worker inherits a half-used
thread pool or an imported codec plugin from the parent.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

from tqdm import tqdm


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def run_jobs(
    fn: Callable, jobs: Sequence[tuple], workers: int = 2, desc: str = "", progress: bool = True
) -> Iterator[tuple[tuple, object]]:
    """Yield ``(job, fn(*job))`` as jobs finish; in-process when ``workers <= 1``."""
    bar = tqdm(total=len(jobs), desc=desc, unit="job", disable=not progress or not jobs)
    try:
        if workers <= 1:  # in this process, also on one thread (timings comparable, no spinning)
            import torch

            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                for job in jobs:
                    result = fn(*job)
                    bar.update()
                    yield job, result
            finally:
                torch.set_num_threads(threads)
            return
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker) as pool:
            pending = {pool.submit(fn, *job): job for job in jobs}
            try:
                while pending:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in done:
                        job = pending.pop(fut)
                        bar.update()
                        yield job, fut.result()
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    finally:
        bar.close()
