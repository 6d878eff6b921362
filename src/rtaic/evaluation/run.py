"""The evaluation as a plain function: measure every codec on every image, then report.

    images -> baselines (cached) + checkpoints (always fresh) -> records -> report folder

What one job measures (a codec on an image, into records) is measure.py; this module decides
which jobs to run, keeps the cache and writes the report.

Measuring is spread over a process pool, one job per (image, codec); each finished baseline
job is written to the cache at once, so an interrupted run loses at most the jobs in flight.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from rtaic.data.folders import find_images, sha256_file
from rtaic.evaluation.baselines import get_baseline
from rtaic.evaluation.cache import ResultCache, cache_key
from rtaic.evaluation.measure import (
    DEFAULT_LOADER,
    curves_of,
    measure_baseline,
    measure_checkpoints,
)
from rtaic.evaluation.pool import run_jobs

log = logging.getLogger(__name__)


def collect(
    image_paths: list[Path],
    codecs: list[str],
    checkpoints: dict[str, list[str]] | list[str],
    cache: ResultCache,
    workers: int = 2,
    loader: str = DEFAULT_LOADER,
    progress: bool = True,
    qualities: dict[str, list] | None = None,
) -> list[dict]:
    """Records for every (image, codec, quality) and every (image, checkpoint).

    ``checkpoints``: a list (one curve, ``learned``) or {curve: [checkpoints]} (several).

    ``qualities`` replaces a baseline's own quality grid (by codec name), e.g. for quick runs.
    """
    images = [(str(p), p.name, sha256_file(p)) for p in image_paths]
    baselines = [get_baseline(c) for c in codecs]
    keys = {b.name: (b.version(), b.settings()) for b in baselines}
    jobs, records = [], []
    for path, name, sha in images:
        for b in baselines:
            missing = []
            for q in (qualities or {}).get(b.name, b.qualities):
                key = cache_key(b.name, *keys[b.name], str(q), sha)
                if key in cache:
                    records.append(cache.get(key))
                else:
                    missing.append(q)
            if missing:
                jobs.append((path, name, sha, b.name, missing))
    log.info("baselines: %d cached records, %d jobs to run", len(records), len(jobs))
    for (_, _, sha, codec, _), result in run_jobs(measure_baseline, jobs, workers, "baselines", progress):
        for rec in result:
            cache.put(cache_key(codec, *keys[codec], rec["quality"], sha), rec)
            records.append(rec)
    ours = curves_of(checkpoints)
    if ours:
        jobs = [(path, name, sha, ours, loader) for path, name, sha in images]
        for _, result in run_jobs(measure_checkpoints, jobs, workers, "checkpoints", progress):
            records.extend(result)
    order = list(dict.fromkeys(c for c, _ in ours)) + list(codecs)  # report order: ours, then as configured
    rank = {c: i for i, c in enumerate(order)}
    return sorted(records, key=lambda r: rank[r["codec"]])


def evaluate(
    image_root: str | Path,
    out_dir: str | Path,
    cache_path: str | Path,
    codecs: list[str],
    checkpoints: dict[str, list[str]] | list[str] = (),
    workers: int = 2,
    bpp_points: list[float] = (0.25, 0.5, 1.0),
    msssim_points: list[float] = (0.95, 0.97, 0.98, 0.99),
    reference: str = "jpeg420",
    loader: str = DEFAULT_LOADER,
    logger=None,
    progress: bool = True,
    qualities: dict[str, list] | None = None,
    html_sizes: list[float] | None = None,
) -> dict:
    """Measure, then write the report into ``out_dir``; returns the summary. With
    ``html_sizes`` (target bpp) also report.html, the codecs side by side (html_report.py)."""
    from rtaic.evaluation import report  # imported late: matplotlib stays out of the workers

    t0 = time.perf_counter()
    paths = find_images(image_root, recursive=False)
    records = collect(paths, list(codecs), checkpoints if isinstance(checkpoints, dict) else list(checkpoints),
                      ResultCache(cache_path),
                      workers, loader, progress, qualities)
    summary = report.write_report(
        records, Path(out_dir), bpp_points=list(bpp_points), msssim_points=list(msssim_points),
        reference=reference, logger=logger,
    )
    if html_sizes:
        from rtaic.evaluation.html_report import write_html

        write_html(records, paths, Path(out_dir), list(html_sizes), loader=loader, workers=workers,
                   progress=progress, logger=logger)
    log.info("evaluation of %d images took %.1f s", len(paths), time.perf_counter() - t0)
    return summary
