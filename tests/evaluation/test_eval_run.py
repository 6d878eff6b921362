"""The whole evaluation on two tiny images (MS-SSIM picks a 3x3 window at this size): baselines, a fake learned codec through the codec
API, the cache on a second run, the worker pool and the eval.py entry point."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rtaic.evaluation import run
from rtaic.evaluation.cache import ResultCache

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
LOADER = "fake_codec:load_fake"
QUALITIES = {"jpeg420": [20, 60, 90], "webp": [30, 80]}


def _image(seed: int) -> Image.Image:
    yy, xx = np.mgrid[0:56, 0:72] / 12.0
    rng = np.random.default_rng(seed)
    base = np.stack([np.sin(xx * (c + 1) + seed) * np.cos(yy - c) for c in range(3)], -1)
    return Image.fromarray(np.clip(128 + 80 * base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval")
    images = tmp / "images"
    images.mkdir()
    for i in range(2):
        _image(i).save(images / f"img{i}.png")
    ckpts = []
    for q in (20, 90):
        (tmp / f"q{q}.ckpt").write_text(str(q))
        ckpts.append(str(tmp / f"q{q}.ckpt"))
    return tmp, images, ckpts


@pytest.fixture(scope="module")
def first(setup):
    tmp, images, ckpts = setup
    summary = run.evaluate(images, tmp / "out", tmp / "cache.jsonl", ["jpeg420", "webp"], ckpts,
                           workers=1, bpp_points=[0.5, 1.0], msssim_points=[0.95, 0.99],
                           loader=LOADER, progress=False, qualities=QUALITIES)
    return summary


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_report_files_and_records(setup, first):
    tmp, _, ckpts = setup
    out = tmp / "out"
    for name in ("per_image.csv", "summary.json", "summary.md", "msssim_vs_bpp_rgb.png",
                 "msssim_vs_bpp_ycbcr.png", "relative_size_vs_jpeg420_rgb.png",
                 "relative_size_vs_learned_rgb.png", "timing_encode.png", "timing_decode.png"):
        assert (out / name).stat().st_size > 0, name
    rows = _rows(out / "per_image.csv")
    assert len(rows) == 2 * (3 + 2 + 2)
    assert json.loads((out / "summary.json").read_text())["codecs"] == ["learned", "jpeg420", "webp"]
    assert "Ours (rtaic)" in (out / "summary.md").read_text()


def test_learned_points_come_from_real_bytes_through_the_codec_api(setup, first):
    tmp, _, ckpts = setup
    rows = _rows(tmp / "out" / "per_image.csv")
    for image in ("img0.png", "img1.png"):
        for q in (20, 90):
            ours = next(r for r in rows if r["codec"] == "learned" and r["image"] == image
                        and r["quality"] == ckpts[q == 90])
            jpeg = next(r for r in rows if r["codec"] == "jpeg420" and r["image"] == image
                        and r["quality"] == str(q))
            # The fake's bitstream is the JPEG file plus a 4-byte tag, counted as header.
            assert int(ours["file_bytes"]) == int(jpeg["file_bytes"]) + 4
            assert int(ours["header_bytes"]) == int(jpeg["header_bytes"]) + 4
            assert float(ours["bpp_payload"]) == pytest.approx(float(jpeg["bpp_payload"]))
            assert float(ours["msssim_rgb"]) == pytest.approx(float(jpeg["msssim_rgb"]))
            assert float(ours["msssim_ycbcr"]) == pytest.approx(float(jpeg["msssim_ycbcr"]))
            assert float(ours["bpp"]) == pytest.approx(8 * int(ours["file_bytes"]) / (72 * 56))


def test_second_run_recomputes_no_baseline(setup, first, monkeypatch):
    tmp, images, _ = setup
    assert len(ResultCache(tmp / "cache.jsonl")) == 2 * 5

    def fail(*args):
        raise AssertionError("a cached baseline was measured again")

    monkeypatch.setattr(run, "measure_baseline", fail)
    records = run.collect(sorted(images.iterdir()), ["jpeg420", "webp"], [], ResultCache(tmp / "cache.jsonl"),
                          workers=1, progress=False, qualities=QUALITIES)
    assert len(records) == 10


def test_cache_ignores_a_line_cut_short(tmp_path):
    path = tmp_path / "c.jsonl"
    cache = ResultCache(path)
    cache.put("k1", {"a": 1})
    with open(path, "a") as f:
        f.write('{"key": "k2", "rec')  # interrupted mid-write
    assert ResultCache(path).entries == {"k1": {"a": 1}}


def test_eval_py_entry_point_with_a_pool_of_two(setup, first, tmp_path):
    """eval.py end to end; the spawned workers must give the in-process run's points."""
    tmp, images, ckpts = setup
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "eval.py", f"images.root={images}", "codecs=[jpeg420]",
           "qualities={jpeg420: [20, 60]}", f"cache_dir={tmp_path / 'cache'}",
           f"hydra.run.dir={tmp_path / 'out'}", "workers=2", "progress=false",
           f"checkpoints=[{ckpts[0]}]", f"learned_loader={LOADER}"]
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, timeout=120)
    rows = _rows(tmp_path / "out" / "per_image.csv")
    assert sorted({r["codec"] for r in rows}) == ["jpeg420", "learned"] and len(rows) == 6
    assert (tmp_path / "out" / "summary.md").exists()
    assert len(ResultCache(tmp_path / "cache" / "baselines.jsonl")) == 4
    ref = {(r["codec"], r["image"], r["quality"]): r for r in _rows(tmp / "out" / "per_image.csv")}
    for r in rows:
        same = ref[(r["codec"], r["image"], r["quality"])]
        assert r["file_bytes"] == same["file_bytes"]
        assert float(r["msssim_rgb"]) == pytest.approx(float(same["msssim_rgb"]))
