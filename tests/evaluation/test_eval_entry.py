"""eval.py end to end with real (tiny, untrained) checkpoints through rtaic.load_codec: the
report's numbers must be those of the real files, and logger=wandb must write an offline run
with the same summary. Also eval.py's own config (conf/eval/eval.yaml)."""

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict
from PIL import Image

from codec_helpers import make_checkpoint, photo
from rtaic.codec import load_codec
from rtaic.coding.bitstream import HEADER_SIZE
from rtaic.evaluation.baselines import BASELINES
from rtaic.evaluation.measure import quality_metrics, to_tensor

ROOT = Path(__file__).resolve().parents[2]
QUALITIES = [30, 80]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval_entry")
    (tmp / "images").mkdir()
    for i in range(2):
        photo(64, 48, seed=i).save(tmp / "images" / f"im{i}.png")
    ckpts = [str(make_checkpoint(tmp / f"m{seed}.ckpt", seed=seed)) for seed in (0, 1)]
    return tmp, ckpts


def _eval_py(tmp: Path, ckpts: list[str], out: str, *extra: str) -> Path:
    cmd = [sys.executable, "eval.py", f"images.root={tmp / 'images'}", "codecs=[jpeg420]",
           f"qualities={{jpeg420: {QUALITIES}}}", f"checkpoints=[{','.join(ckpts)}]",
           f"cache_dir={tmp / 'cache'}", f"hydra.run.dir={tmp / out}", "workers=1",
           "progress=false", "html=false", *extra]
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true")
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
    return tmp / out


@pytest.fixture(scope="module")
def plain(setup):
    tmp, ckpts = setup
    return _eval_py(tmp, ckpts, "plain")


def _rows(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_learned_records_are_the_real_files(setup, plain):
    tmp, ckpts = setup
    rows = _rows(plain / "per_image.csv")
    assert len(rows) == 2 * (len(QUALITIES) + len(ckpts))
    learned = [r for r in rows if r["codec"] == "learned"]
    assert sorted((r["image"], r["quality"]) for r in learned) == sorted(
        (f"im{i}.png", c) for i in range(2) for c in ckpts)
    for r in learned:
        image = Image.open(tmp / "images" / r["image"]).convert("RGB")
        codec = load_codec(r["quality"])
        data = codec.compress(image)
        pixels = image.width * image.height
        assert (int(r["width"]), int(r["height"])) == image.size
        assert int(r["file_bytes"]) == len(data)
        assert int(r["header_bytes"]) == HEADER_SIZE
        assert float(r["bpp"]) == pytest.approx(8 * len(data) / pixels)
        assert float(r["bpp_payload"]) == pytest.approx(8 * (len(data) - HEADER_SIZE) / pixels)
        metrics = quality_metrics(to_tensor(image), to_tensor(codec.decompress(data)))
        for name, value in metrics.items():
            assert float(r[name]) == pytest.approx(value, abs=1e-6), name
    for r in (r for r in rows if r["codec"] == "jpeg420"):
        image = Image.open(tmp / "images" / r["image"]).convert("RGB")
        assert int(r["file_bytes"]) == len(BASELINES["jpeg420"].encode(image, float(r["quality"])))


def test_summary_agrees_with_the_records(setup, plain):
    _, ckpts = setup
    rows = _rows(plain / "per_image.csv")
    summary = json.loads((plain / "summary.json").read_text())
    assert summary["images"] == 2 and summary["codecs"] == ["learned", "jpeg420"]
    assert summary["labels"] == {"learned": "Ours (rtaic)", "jpeg420": "JPEG 4:2:0"}
    timings = {t["quality"]: t for t in summary["timings"]["learned"]}
    assert sorted(timings) == sorted(ckpts)
    for ckpt, t in timings.items():
        bpp = [float(r["bpp"]) for r in rows if r["quality"] == ckpt]
        assert t["n"] == 2 and t["bpp"] == pytest.approx(sum(bpp) / 2)
    assert summary["bd_rate"]["jpeg420"]["rgb"]["jpeg420"] == {"mean": 0.0, "n": 2, "missing": 0}
    for section in ("msssim_at_bpp", "size_at_msssim", "dropped"):
        assert set(summary[section]) == {"rgb", "ycbcr"}, section
    md = (plain / "summary.md").read_text()
    assert md.startswith("# Evaluation report (2 images)")
    assert "\n| Ours (rtaic) |" in md and "\n| JPEG 4:2:0 |" in md


def test_logger_wandb_writes_an_offline_run_with_the_summary(setup, plain):
    tmp, ckpts = setup
    out = _eval_py(tmp, ckpts, "wandb", "logger=wandb", "wandb.name=tiny-eval")
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    run = runs[0]
    # The same records (the baselines now from the cache) and the same report on disk ...
    assert _rows(out / "per_image.csv") == [
        {**r, "encode_s": r2["encode_s"], "decode_s": r2["decode_s"]}
        for r, r2 in zip(_rows(plain / "per_image.csv"), _rows(out / "per_image.csv"), strict=True)
    ]
    # ... and in the run: the per-image table, the Markdown summary, the BD-rates.
    (table,) = (run / "files" / "media" / "table" / "eval").glob("per_image_*.table.json")
    table = json.loads(table.read_text())
    with open(out / "per_image.csv") as f:
        csv_rows = list(csv.reader(f))
    assert table["columns"] == csv_rows[0] and table["data"] == csv_rows[1:]
    (html,) = (run / "files" / "media" / "html" / "eval").glob("summary_*.html")
    assert (out / "summary.md").read_text().splitlines()[0] in html.read_text()
    log = next(run.glob("run-*.wandb")).read_bytes()  # protobuf records: keys as plain bytes
    assert b"eval/bd_rate_vs_jpeg420/rgb/jpeg420" in log and b"tiny-eval" in log


# -- conf/eval/eval.yaml -------------------------------------------------------------------

def _compose(overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf" / "eval"), version_base="1.3"):
        return compose(config_name="eval", overrides=overrides, return_hydra_config=True)


def test_config_takes_logger_and_images_on_the_command_line():
    cfg = _compose([])
    assert cfg.logger == "none" and cfg.wandb.tags == ["eval"]
    cfg = _compose(["logger=wandb", "images.root=some/dir", "wandb.name=x"])
    assert (cfg.logger, cfg.images.root, cfg.wandb.name) == ("wandb", "some/dir", "x")
    assert cfg.hydra.job.chdir is False


def test_an_unknown_logger_is_refused_before_any_work(tmp_path):
    spec = importlib.util.spec_from_file_location("eval_entry_point", ROOT / "eval.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cfg = _compose(["logger=csv", f"images.root={tmp_path / 'missing'}"])
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(tmp_path)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    with pytest.raises(ValueError, match="logger=none or logger=wandb, got 'csv'"):
        module.main.__wrapped__(cfg)


def test_a_curve_given_as_null_is_that_curves_bundled_models():
    from rtaic import zoo

    spec = importlib.util.spec_from_file_location("eval_entry_point", ROOT / "eval.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cfg = _compose(["checkpoints={learned_ycbcr: null, learned: [a.ckpt]}"])
    out = module._checkpoints(cfg.checkpoints)
    assert out["learned_ycbcr"] == [str(p) for p in zoo.curves()["learned_ycbcr"]] and out["learned_ycbcr"]
    assert out["learned"][0].endswith("a.ckpt") and set(out) == {"learned_ycbcr", "learned"}
    with pytest.raises(ValueError, match="no bundled models for curve 'learned_nothing'"):
        module._checkpoints(_compose(["checkpoints={learned_nothing: null}"]).checkpoints)
