"""report.html: eval.py on two small images (one wider than the page, so it is shown scaled),
JPEG 4:2:0 and WebP and a fake learned codec; the pictures must be the real decodes of the
files beside them, and (slow test) a headless Chromium must load every picture and switch
codecs by key and by click."""

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rtaic.evaluation import html_report
from rtaic.evaluation.baselines import get_baseline
from rtaic.evaluation.wandb_log import WandbReport

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from fake_codec import load_fake  # noqa: E402

LOADER = "fake_codec:load_fake"
SIZES = [0.25, 0.5, 1.0]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _image(w: int, h: int, seed: int) -> Image.Image:
    yy, xx = np.mgrid[0:h, 0:w] / 14.0
    rng = np.random.default_rng(seed)
    base = np.stack([np.sin(xx * (c + 1) / 3 + seed) * np.cos(yy / (c + 1) - c) for c in range(3)], -1)
    arr = 128 + 80 * base + rng.normal(0, 6, base.shape)
    arr[h // 3: h // 3 + 24, w // 2: w // 2 + 30] = rng.integers(0, 256, (24, 30, 3))  # a hard patch
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """One eval.py run; returns its output folder."""
    tmp = tmp_path_factory.mktemp("html")
    images = tmp / "images"
    images.mkdir()
    _image(200, 150, 0).save(images / "small.png")
    _image(1500, 180, 1).save(images / "wide.png")  # wider than its pane: shown scaled
    (tmp / "q30.ckpt").write_text("30")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "eval.py", f"images.root={images}", "codecs=[jpeg420,webp]",
           "qualities={jpeg420: [10, 30, 60, 90], webp: [10, 40, 80]}", f"cache_dir={tmp / 'cache'}",
           f"hydra.run.dir={tmp / 'out'}", "workers=1", "progress=false", f"html_sizes={SIZES}",
           f"checkpoints=[{tmp / 'q30.ckpt'}]", f"learned_loader={LOADER}"]
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, timeout=600)
    return tmp / "out"


def _data(out: Path) -> dict:
    text = (out / "report.html").read_text()
    m = re.search(r'<script id="report-data" type="application/json">(.*?)</script>', text, re.S)
    return json.loads(m.group(1).replace("<\\/", "</"))


def _records(out: Path) -> list[dict]:
    with open(out / "per_image.csv") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["bpp"], r["file_bytes"] = float(r["bpp"]), int(r["file_bytes"])
    return rows


def test_pick_takes_each_codecs_closest_file_size():
    recs = [{"image": "a.png", "codec": c, "quality": str(q), "bpp": b}
            for c, q, b in [("webp", 10, 0.12), ("webp", 20, 0.2), ("webp", 30, 0.4),
                            ("learned", "x.ckpt", 0.3), ("jpeg420", 5, 0.6)]]
    (t1, low), (t2, high) = html_report.pick(recs, [0.1, 0.45])["a.png"]
    assert (t1, t2) == (0.1, 0.45)
    assert [(r["codec"], r["quality"]) for r in low] == [("learned", "x.ckpt"), ("webp", "10"), ("jpeg420", "5")]
    assert [(r["codec"], r["quality"]) for r in high] == [("learned", "x.ckpt"), ("webp", "30"), ("jpeg420", "5")]


def test_crop_goes_where_the_errors_differ_most():
    ours, avif = np.zeros((300, 400)), np.zeros((300, 400))
    ours[:] = 1.0  # same everywhere ...
    avif[:] = 1.0
    ours[200:260, 40:100] = 9.0  # ... except here
    crop, why = html_report.choose_crop({"learned": ours, "avif": avif}, size=64)
    assert (crop["w"], crop["h"]) == (64, 64)
    assert crop["x"] <= 40 and crop["x"] + 64 >= 100 and crop["y"] <= 200 and crop["y"] + 64 >= 260
    assert "Ours (rtaic)" in why and "AVIF" in why
    assert html_report._crop_order(["learned", "jpeg420", "avif"]) == ["learned", "avif"]
    small, _ = html_report.choose_crop({"webp": np.ones((50, 80))}, size=64)
    assert (small["w"], small["h"]) == (64, 50)  # clipped to the image


def test_report_html_has_everything_beside_it(report):
    text = (report / "report.html").read_text()
    assert "://" not in text  # nothing from the network
    refs = set(re.findall(r"(?:src|href)='([^'#]+)'", text)) | set(re.findall(r'src="([^"]+)"', text))
    data = _data(report)
    for item in data["images"]:
        refs.add(item["original"])
        for e in item["entries"].values():
            refs |= {e["src"], e["diff"], e["file"]}
    assert len(refs) > 20
    for ref in refs:
        assert (report / ref).is_file(), ref
    for plot in ("msssim_vs_bpp_rgb.png", "timing_encode.png"):
        assert f"src='{plot}'" in text
    assert "MS-SSIM at fixed bpp" in text and "<table class='summary'>" in text
    assert len(data["images"]) == 2 and data["sizes"] == SIZES
    for item in data["images"]:
        assert [s["target"] for s in item["sizes"]] == SIZES
        for s in item["sizes"]:
            assert [item["entries"][k]["codec"] for k in s["keys"]] == ["learned", "jpeg420", "webp"]
            c = s["crop"]
            assert 0 <= c["x"] <= item["width"] - c["w"] and 0 <= c["y"] <= item["height"] - c["h"]


def test_pictures_are_real_decodes_of_the_closest_setting(report):
    records = _records(report)
    data = _data(report)
    for name, item in zip(["small.png", "wide.png"], data["images"], strict=True):
        original = np.asarray(Image.open(report / item["original"]))
        assert original.shape == (item["height"], item["width"], 3)
        for size in item["sizes"]:
            for key in size["keys"]:
                e = item["entries"][key]
                data_bytes = (report / e["file"]).read_bytes()
                assert len(data_bytes) == e["bytes"]
                if e["codec"] == "learned":
                    decoded = load_fake(e["quality"]).decompress(data_bytes)
                else:
                    decoded = get_baseline(e["codec"]).decode(data_bytes)
                shown = np.asarray(Image.open(report / e["src"]))
                assert np.array_equal(shown, np.asarray(decoded))  # lossless, nothing re-encoded
                diff = np.asarray(Image.open(report / e["diff"]))
                err = np.abs(shown.astype(int) - original.astype(int))
                assert np.array_equal(diff, np.clip(html_report.DIFF_GAIN * err, 0, 255))
                mine = [r for r in records if r["image"] == name and r["codec"] == e["codec"]]
                rec = next(r for r in mine if r["quality"] == e["quality"])
                assert rec["file_bytes"] == e["bytes"]  # the measured point, re-made
                assert abs(np.log(rec["bpp"] / size["target"])) == min(
                    abs(np.log(r["bpp"] / size["target"])) for r in mine)
    # The page shows the numbers of the file next to it.
    text = (report / "report.html").read_text()
    e = data["images"][0]["entries"][data["images"][0]["sizes"][0]["keys"][1]]
    assert f"<td>{e['bytes']:,}</td><td>{e['bpp']:.3f}</td><td>{e['msssim_rgb']:.4f}</td>" in text


class _Recorder:
    def __init__(self):
        self.logged = []

    def log(self, d):
        self.logged.append(d)


class _FakeWandb:
    class Table:
        def __init__(self, columns):
            self.columns, self.data = columns, []

        def add_data(self, *row):
            assert len(row) == len(self.columns)
            self.data.append(row)

    class Image:
        def __init__(self, x):
            self.image = Image.open(x) if isinstance(x, str) else x


def test_wandb_gets_the_comparison_as_a_table(report, tmp_path):
    records = _records(report)
    shutil.copy(report / "summary.md", tmp_path / "summary.md")

    class Logger:
        rows = None

        def log_comparison(self, rows):
            Logger.rows = rows

    images = sorted((report.parent / "images").iterdir())
    html_report.write_html(records, images, tmp_path, [0.5], loader=LOADER, workers=1,
                           progress=False, logger=Logger())
    assert (tmp_path / "report.html").is_file()
    rows = Logger.rows
    assert len(rows) == 2 * 3 and {r["codec"] for r in rows} == {"learned", "jpeg420", "webp"}
    w = WandbReport.__new__(WandbReport)
    w.wandb, w.run = _FakeWandb, _Recorder()
    w.log_comparison(rows)
    table = w.run.logged[0]["eval/comparison"]
    assert len(table.data) == 6
    row = dict(zip(table.columns, table.data[0], strict=True))
    box = rows[0]["crop_box"]
    assert row["crop"].image.size == (box[2] - box[0], box[3] - box[1])
    assert row["decoded"].image.size == row["difference"].image.size


# --- in a browser ----------------------------------------------------------------------------

def _browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    if CHROMIUM is None:
        pytest.skip("no Chromium (apt-get install chromium)")
    return sync_api


@pytest.mark.slow
def test_report_in_headless_chromium(report, tmp_path):
    sync_api = _browser()
    args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((report / "report.html").as_uri())
        all_loaded = "Array.from(document.images).every(i => i.complete)"
        page.wait_for_function(all_loaded)
        broken = page.evaluate("Array.from(document.images).filter(i => !(i.naturalWidth > 0)).map(i => i.src)")
        assert broken == [] and page.evaluate("document.images.length") >= 2 * 5 + 8

        viewer = page.locator("section.viewer").nth(0)
        main = viewer.locator("img.main")
        viewer.hover()

        def shown():
            page.wait_for_function(all_loaded)
            assert main.evaluate("i => i.naturalWidth") > 0
            return main.get_attribute("src"), np.asarray(Image.open(io.BytesIO(main.screenshot())))

        src0, pix0 = shown()  # ours, first size
        assert "learned_q30.png" in src0
        page.keyboard.press("ArrowRight")  # next codec: JPEG
        src1, pix1 = shown()
        assert "jpeg420_q" in src1 and src1 != src0
        assert pix1.shape == pix0.shape and not np.array_equal(pix1, pix0)  # other pixels on screen
        assert "JPEG 4:2:0" in viewer.locator("figcaption.cap").first.inner_text()
        viewer.locator("table.picks:not([hidden]) tr[data-row='3']").click()  # click: WebP
        src3, pix3 = shown()
        assert "webp_q" in src3 and not np.array_equal(pix3, pix1)
        assert "WebP" in viewer.locator("figcaption.cap").first.inner_text()
        page.keyboard.press("0")
        assert shown()[0] == viewer.locator("img.orig").get_attribute("src")
        page.keyboard.press("2")
        page.keyboard.press("d")  # difference image
        assert shown()[0].endswith("_diff.png")
        page.keyboard.press("d")
        page.keyboard.press("ArrowDown")  # next size: its own table and pick
        assert viewer.locator("table.picks[data-size='1']").is_visible()
        assert not viewer.locator("table.picks[data-size='0']").is_visible()

        # Every picture of every viewer, size and codec loads when switched to.
        data = _data(report)
        for v, item in enumerate(data["images"]):
            section = page.locator("section.viewer").nth(v)
            section.hover()
            for s in range(len(item["sizes"])):
                section.locator(f"button[data-size='{s}']").click()
                for row in range(len(item["sizes"][s]["keys"]) + 1):
                    section.locator(f"table.picks:not([hidden]) tr[data-row='{row}']").click()
                    page.wait_for_function(all_loaded)
                    bad = section.evaluate(
                        "v => Array.from(v.querySelectorAll('img')).filter(i => !(i.naturalWidth > 0)).length")
                    assert bad == 0, (v, s, row)

        # The wide image is scaled to its pane; its crop at 1:1 shows image pixels 1:1.
        wide = page.locator("section.viewer").nth(1)
        wide.scroll_into_view_if_needed()
        wide.locator("button[data-size='0']").click()
        wide.locator("button[data-zoom='1']").click()
        scaled = wide.locator("img.main").evaluate("i => [i.getBoundingClientRect().width, i.naturalWidth]")
        assert scaled[0] < scaled[1] == 1500
        crop = wide.locator("img.c-main").evaluate("i => [i.getBoundingClientRect().width, i.naturalWidth]")
        assert crop[0] == crop[1]
        box = wide.locator("div.crop").nth(1).bounding_box()
        c = item["sizes"][0]["crop"]
        assert (round(box["width"]), round(box["height"])) == (c["w"] + 2, c["h"] + 2)  # + border

        assert errors == []
        page.locator("section.viewer").nth(0).scroll_into_view_if_needed()
        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot))
        assert Image.open(shot).size == (1400, 1000)
        browser.close()
