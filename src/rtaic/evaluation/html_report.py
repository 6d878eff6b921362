"""report.html: the RD plots, the summary tables and, per image, the codecs side by side at
about the same file size, in a browser with no network.

    records -> per image and target size, each codec's setting whose file bpp is closest
            -> that setting encoded again and decoded by the codec's own decoder (ours through
               the codec API, like the measurements) -> report_files/<image>/:
               the file itself, the decode as PNG (lossless), a difference image (PNG)
            -> report.html (plain HTML + JS, the pictures beside it), optionally W&B

Labels are the numbers of the file that is shown (its length, the metrics of its decode), not
read from the records; they agree with per_image.csv when the encoder is deterministic.
"""

from __future__ import annotations

import html
import json
import logging
import math
import re
import time
from pathlib import Path
from urllib.parse import quote

import numpy as np
from PIL import Image

from rtaic.evaluation.baselines import get_baseline
from rtaic.evaluation.measure import DEFAULT_LOADER, quality_metrics, to_tensor
from rtaic.evaluation.measure import header_bytes as learned_header_bytes
from rtaic.evaluation.measure import load as load_learned
from rtaic.evaluation.names import is_ours, label

log = logging.getLogger(__name__)

FILES = "report_files"  # the pictures' folder, beside report.html
CROP = 192  # side of the crop shown 1:1 (or zoomed), in image pixels
DIFF_GAIN = 4  # difference images show |decoded - original| per channel, times this
FAR = 1.3  # a pick whose bpp is off its target by more than this factor is marked
EXTENSION = {"JPEG": "jpg", "JPEG2000": "j2k", "WEBP": "webp", "AVIF": "avif", "JXL": "jxl", "HEIF": "heic"}


# --- choosing what to show -------------------------------------------------------------------

def pick(records: list[dict], sizes: list[float]) -> dict[str, list[tuple[float, list[dict]]]]:
    """{image: [(target bpp, [one record per codec]), ...]}: for each codec the record whose
    whole-file bpp is closest to the target (in ratio). Codecs in record order (ours first)."""
    by_image: dict[str, dict[str, list[dict]]] = {}
    for r in records:
        by_image.setdefault(r["image"], {}).setdefault(r["codec"], []).append(r)
    out = {}
    for image in sorted(by_image):
        codecs = by_image[image]
        order = sorted(codecs, key=lambda c: not is_ours(c))  # stable: ours first, then as given
        out[image] = [
            (float(t), [min(codecs[c], key=lambda r: (abs(math.log(r["bpp"] / t)), r["bpp"])) for c in order])
            for t in sizes
        ]
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def _setting(codec: str, quality: str) -> str:
    return Path(quality).stem if is_ours(codec) else f"q={quality}"


def choose_crop(errors: dict[str, np.ndarray], size: int = CROP) -> tuple[dict, str]:
    """The square window (side ``size``, clipped to the image) where the first two codecs'
    mean absolute errors differ most (ours against AVIF when both are there: ``errors`` is
    given in that order), or where the only codec's error is largest."""
    names = list(errors)
    h, w = errors[names[0]].shape
    cw, ch = min(size, w), min(size, h)
    if len(names) >= 2:
        score_map = errors[names[0]] - errors[names[1]]
        why = f"where the errors of {label(names[0])} and {label(names[1])} differ most"
    else:
        score_map = errors[names[0]]
        why = f"where the error of {label(names[0])} is largest"
    integral = np.pad(score_map.astype(np.float64), ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    sums = integral[ch:, cw:] - integral[:-ch, cw:] - integral[ch:, :-cw] + integral[:-ch, :-cw]
    y, x = np.unravel_index(np.argmax(np.abs(sums)), sums.shape)
    return {"x": int(x), "y": int(y), "w": int(cw), "h": int(ch)}, why


def _crop_order(codecs: list[str]) -> list[str]:
    """Whose errors choose the crop: ours and AVIF if there, else the first two codecs."""
    ours = [c for c in codecs if is_ours(c)]
    others = [c for c in codecs if not is_ours(c)]
    first = ours[:1] or others[:1]
    second = (["avif"] if "avif" in others else []) + [c for c in codecs if c not in first]
    return (first + second)[:2]


# --- making the pictures (a worker job per image) --------------------------------------------

def _codec_io(codec: str, quality: str, loader: str):
    """(encode(image) -> bytes, decode(bytes) -> image, header_bytes(bytes), file extension)."""
    if is_ours(codec):
        c = load_learned(quality, loader)
        return c.compress, c.decompress, (lambda data: learned_header_bytes(c, data)), "rtaic"
    b = get_baseline(codec)
    b.setup()
    q = float(quality)
    return (lambda im: b.encode(im, q)), b.decode, b.header_bytes, EXTENSION.get(b.format, "bin")


def render_image(path: str, picks: list[tuple[float, list[tuple[str, str]]]], files_dir: str,
                 rel_dir: str, loader: str = DEFAULT_LOADER) -> dict:
    """Encode and decode each picked (codec, quality) of one image once; write the file, the
    decode (PNG) and the difference image (PNG) into ``files_dir``; choose a crop per size."""
    out = Path(files_dir)
    out.mkdir(parents=True, exist_ok=True)
    with Image.open(path) as im:
        image = im.convert("RGB")
    original = np.asarray(image)
    image.save(out / "original.png")
    orig_t = to_tensor(image)
    entries, errors = {}, {}
    for _, chosen in picks:
        for codec, quality in chosen:
            key = f"{codec}|{quality}"
            if key in entries:
                continue
            encode, decode, header, ext = _codec_io(codec, quality, loader)
            data = encode(image)
            decoded = decode(data).convert("RGB")
            if decoded.size != image.size:
                raise ValueError(f"{codec} {quality} decoded {decoded.size}, expected {image.size}")
            stem = _slug(f"{codec}_{Path(quality).stem if is_ours(codec) else 'q' + quality}")
            (out / f"{stem}.{ext}").write_bytes(data)
            decoded.save(out / f"{stem}.png")
            arr = np.asarray(decoded)
            diff = np.abs(arr.astype(np.int16) - original.astype(np.int16))
            Image.fromarray(np.clip(DIFF_GAIN * diff, 0, 255).astype(np.uint8)).save(out / f"{stem}_diff.png")
            errors[key] = diff.mean(-1)
            pixels = image.width * image.height
            head = header(data)
            entries[key] = {
                "codec": codec, "label": label(codec), "quality": quality, "setting": _setting(codec, quality),
                "bytes": len(data), "header_bytes": head,
                "bpp": 8 * len(data) / pixels, "bpp_payload": 8 * (len(data) - head) / pixels,
                **quality_metrics(orig_t, to_tensor(decoded)),
                "src": f"{rel_dir}/{stem}.png", "diff": f"{rel_dir}/{stem}_diff.png",
                "file": f"{rel_dir}/{stem}.{ext}",
            }
    sizes = []
    for target, chosen in picks:
        keys = [f"{c}|{q}" for c, q in chosen]
        codecs = [c for c, _ in chosen]
        crop, why = choose_crop({c: errors[f"{c}|{dict(chosen)[c]}"] for c in _crop_order(codecs)})
        sizes.append({"target": target, "keys": keys, "crop": crop, "crop_why": why})
    return {"width": image.width, "height": image.height, "original": f"{rel_dir}/original.png",
            "entries": entries, "sizes": sizes}


# --- the page --------------------------------------------------------------------------------

def _inline(text: str) -> str:
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(text, quote=False))


def markdown_to_html(md: str) -> str:
    """The subset summary.md uses: headings, paragraphs, pipe tables, inline code."""
    out, table = [], []

    def flush():
        if table:
            head, rows = table[0], table[2:]
            out.append("<table class='summary'><thead><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head)
                       + "</tr></thead><tbody>" + "".join(
                           "<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in rows)
                       + "</tbody></table>")
            table.clear()

    for line in md.splitlines():
        if line.startswith("|"):
            table.append([c.strip() for c in line.strip().strip("|").split("|")])
            continue
        flush()
        if m := re.match(r"(#+) (.*)", line):
            level = min(len(m.group(1)) + 2, 6)  # the page has its own h1 and h2
            out.append(f"<h{level}>{_inline(m.group(2))}</h{level}>")
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
    flush()
    return "\n".join(out)


def _num(v, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def _viewer(i: int, name: str, item: dict) -> str:
    e = item["entries"]
    first = e[item["sizes"][0]["keys"][0]]
    url = lambda p: html.escape(quote(p))  # noqa: E731
    tables = []
    for s, size in enumerate(item["sizes"]):
        rows = [f"<tr data-row='0' class='on'><td>0</td><td>Original</td><td></td>"
                f"<td colspan='6'>{item['width']}&times;{item['height']} px</td></tr>"]
        for j, key in enumerate(size["keys"], 1):
            r = e[key]
            far = abs(math.log(r["bpp"] / size["target"])) > math.log(FAR)
            mark = " class='far' title='no setting of this codec within 30% of the target'" if far else ""
            rows.append(
                f"<tr data-row='{j}'{mark}>"
                f"<td>{j}</td><td>{html.escape(r['label'])}</td><td>{html.escape(r['setting'])}</td>"
                f"<td>{r['bytes']:,}</td><td>{r['bpp']:.3f}</td><td>{r['msssim_rgb']:.4f}</td>"
                f"<td>{r['psnr_rgb']:.2f}</td><td>{r['ciede2000']:.2f}</td>"
                f"<td><a href='{url(r['file'])}' download>{html.escape(r['file'].rsplit('.', 1)[-1])}</a></td></tr>")
        tables.append(
            f"<table class='picks' data-size='{s}'{'' if s == 0 else ' hidden'}><thead><tr><th>key</th>"
            "<th>codec</th><th>setting</th><th>bytes</th><th>bpp</th><th>MS-SSIM RGB</th>"
            "<th>PSNR RGB (dB)</th><th>CIEDE2000</th><th>file</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")
    sizes = "".join(f"<button data-size='{s}'{' class=on' if s == 0 else ''}>{size['target']:g} bpp</button>"
                    for s, size in enumerate(item["sizes"]))
    orig = url(item["original"])
    return f"""
<section class="viewer" id="img-{i}" data-index="{i}" tabindex="0">
 <h3>{html.escape(name)} <small>{item['width']}&times;{item['height']} px</small></h3>
 <div class="controls">Target size: {sizes}
  <span class="zoom">crop: <button data-zoom="1">1:1</button><button data-zoom="2" class="on">2&times;</button><button data-zoom="4">4&times;</button></span>
  <button class="diffbtn" title="d">difference</button></div>
 {"".join(tables)}
 <div class="panes">
  <figure><figcaption>Original</figcaption><img class="orig" src="{orig}" alt="original"></figure>
  <figure><figcaption class="cap">Original</figcaption><img class="main" src="{orig}" alt="decoded"></figure>
 </div>
 <p class="why"></p>
 <div class="crops">
  <figure><figcaption>Original</figcaption><div class="crop"><img class="c-orig" src="{orig}" alt="original crop"></div></figure>
  <figure><figcaption class="capc">Original</figcaption><div class="crop"><img class="c-main" src="{orig}" alt="decoded crop"></div></figure>
  <figure><figcaption class="capd">difference</figcaption><div class="crop"><img class="c-diff" src="{url(first['diff'])}" alt="difference crop"></div></figure>
 </div>
</section>"""


CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0 auto;max-width:1600px;padding:0 16px;color:#222}
nav{position:sticky;top:0;background:#fff;border-bottom:1px solid #ccc;padding:6px 0;z-index:2}
nav a{margin-right:12px}
.help{color:#555}
.viewer{scroll-margin-top:40px;border:2px solid #ddd;border-radius:6px;padding:8px 12px;margin:16px 0}
.viewer.active{border-color:#3a6ea5}
.viewer:focus{outline:none}
.controls button,.viewer button{margin:0 2px;padding:2px 8px;cursor:pointer;border:1px solid #999;background:#f4f4f4;border-radius:3px}
.viewer button.on{background:#3a6ea5;color:#fff;border-color:#3a6ea5}
.zoom{margin-left:24px}
table{border-collapse:collapse;margin:8px 0}
td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}
td:nth-child(2),th:nth-child(2){text-align:left}
table.picks tbody tr{cursor:pointer}
table.picks tr.on{background:#dce8f5;font-weight:600}
table.picks tr.far td:nth-child(5){color:#b00}
.panes{display:flex;gap:8px}
.panes figure{flex:1;margin:0;min-width:0}
.panes img{max-width:100%;height:auto;display:block;cursor:crosshair}
figcaption{font-weight:600;margin:4px 0}
.crops{display:flex;gap:8px;flex-wrap:wrap}
.crops figure{margin:0;width:min-content}
.crop{overflow:hidden;position:relative;border:1px solid #888}
.crop img{position:absolute;image-rendering:pixelated;max-width:none}
.why{color:#555;margin:4px 0}
.plots img{max-width:48%;margin:4px}
table.summary td,table.summary th{font-size:12px}
"""

JS = r"""
(function () {
  const DATA = JSON.parse(document.getElementById('report-data').textContent);
  const viewers = Array.from(document.querySelectorAll('.viewer'));
  let active = viewers[0];
  const state = new Map();

  function setActive(v) {
    if (active) active.classList.remove('active');
    active = v; v.classList.add('active');
  }
  function rowsOf(v, st) { return v.querySelectorAll('table.picks[data-size="' + st.size + '"] tbody tr'); }

  function render(v) {
    const st = state.get(v), item = DATA.images[v.dataset.index], size = item.sizes[st.size];
    const key = st.row > 0 ? size.keys[st.row - 1] : null, e = key ? item.entries[key] : null;
    const src = e ? (st.diff ? e.diff : e.src) : item.original;
    const main = v.querySelector('img.main');
    if (main.getAttribute('src') !== src) main.src = src;
    const capText = e ? e.label + ' ' + e.setting + ' \u2014 ' + e.bytes.toLocaleString('en') + ' bytes, ' +
      e.bpp.toFixed(3) + ' bpp, MS-SSIM ' + e.msssim_rgb.toFixed(4) + ', PSNR ' + e.psnr_rgb.toFixed(2) + ' dB' +
      (st.diff ? ' (difference \u00d7' + DATA.diff_gain + ')' : '') : 'Original';
    v.querySelector('.cap').textContent = capText;
    v.querySelector('.capc').textContent = e ? e.label + ' ' + e.setting : 'Original';
    const shown = e || item.entries[size.keys[0]];
    v.querySelector('.capd').textContent = 'difference \u00d7' + DATA.diff_gain + ': ' + shown.label + ' ' + shown.setting;
    v.querySelector('.why').textContent = 'Crop (' + size.crop.w + '\u00d7' + size.crop.h + ' at ' + size.crop.x +
      ',' + size.crop.y + '): ' + (st.custom ? 'where you clicked' : size.crop_why) +
      '. Keys: \u2190/\u2192 or 0-9 codec, \u2191/\u2193 size, d difference, z zoom; click a picture to move the crop.';
    const crop = st.custom || size.crop, z = st.zoom;
    const srcs = {'c-orig': item.original, 'c-main': e ? e.src : item.original, 'c-diff': shown.diff};
    for (const cls in srcs) {
      const img = v.querySelector('img.' + cls);
      if (img.getAttribute('src') !== srcs[cls]) img.src = srcs[cls];
      img.style.width = (item.width * z) + 'px'; img.style.height = (item.height * z) + 'px';
      img.style.left = (-crop.x * z) + 'px'; img.style.top = (-crop.y * z) + 'px';
      const box = img.parentElement;
      box.style.width = (crop.w * z) + 'px'; box.style.height = (crop.h * z) + 'px';
    }
    v.querySelectorAll('table.picks').forEach(t => { t.hidden = +t.dataset.size !== st.size; });
    rowsOf(v, st).forEach(r => r.classList.toggle('on', +r.dataset.row === st.row));
    v.querySelectorAll('button[data-size]').forEach(b => b.classList.toggle('on', +b.dataset.size === st.size));
    v.querySelectorAll('button[data-zoom]').forEach(b => b.classList.toggle('on', +b.dataset.zoom === z));
    v.querySelector('.diffbtn').classList.toggle('on', st.diff);
  }

  function select(v, change) {
    const st = state.get(v), n = DATA.images[v.dataset.index].sizes[0].keys.length + 1;
    Object.assign(st, change);
    st.row = ((st.row % n) + n) % n;
    st.size = Math.max(0, Math.min(DATA.sizes.length - 1, st.size));
    render(v);
  }

  viewers.forEach(v => {
    state.set(v, {size: 0, row: 1, diff: false, zoom: 2, custom: null});
    v.addEventListener('mouseenter', () => setActive(v));
    v.addEventListener('click', () => setActive(v));
    v.querySelectorAll('table.picks tbody tr').forEach(r =>
      r.addEventListener('click', () => select(v, {row: +r.dataset.row})));
    v.querySelectorAll('button[data-size]').forEach(b =>
      b.addEventListener('click', () => select(v, {size: +b.dataset.size, custom: null})));
    v.querySelectorAll('button[data-zoom]').forEach(b =>
      b.addEventListener('click', () => select(v, {zoom: +b.dataset.zoom})));
    v.querySelector('.diffbtn').addEventListener('click', () => select(v, {diff: !state.get(v).diff}));
    v.querySelectorAll('.panes img').forEach(img => img.addEventListener('click', ev => {
      const item = DATA.images[v.dataset.index], size = item.sizes[state.get(v).size];
      const r = img.getBoundingClientRect(), s = item.width / r.width;
      const cx = (ev.clientX - r.left) * s, cy = (ev.clientY - r.top) * s, w = size.crop.w, h = size.crop.h;
      select(v, {custom: {w: w, h: h,
        x: Math.round(Math.max(0, Math.min(item.width - w, cx - w / 2))),
        y: Math.round(Math.max(0, Math.min(item.height - h, cy - h / 2)))}});
    }));
    render(v);
  });
  if (active) setActive(active);

  document.addEventListener('keydown', ev => {
    if (!active || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const st = state.get(active), k = ev.key;
    if (k === 'ArrowRight') select(active, {row: st.row + 1});
    else if (k === 'ArrowLeft') select(active, {row: st.row - 1});
    else if (k === 'ArrowUp') select(active, {size: st.size - 1, custom: null});
    else if (k === 'ArrowDown') select(active, {size: st.size + 1, custom: null});
    else if (k === 'd') select(active, {diff: !st.diff});
    else if (k === 'z') select(active, {zoom: st.zoom === 4 ? 1 : st.zoom * 2});
    else if (/^[0-9]$/.test(k) && +k <= DATA.images[active.dataset.index].sizes[0].keys.length) select(active, {row: +k});
    else return;
    ev.preventDefault();
  });
})();
"""


def page(title: str, items: list[tuple[str, dict]], sizes: list[float], plots: list[str], summary_md: str) -> str:
    data = {"sizes": sizes, "diff_gain": DIFF_GAIN, "images": [item for _, item in items]}
    data_json = json.dumps(data).replace("</", "<\\/")
    nav = " ".join(f"<a href='#img-{i}'>{html.escape(name)}</a>" for i, (name, _) in enumerate(items))
    plot_html = "".join(f"<a href='{html.escape(quote(p))}'><img src='{html.escape(quote(p))}' alt='{html.escape(p)}'></a>"
                        for p in plots)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{CSS}</style></head><body>
<h1>{html.escape(title)}</h1>
<nav><a href="#comparisons">Comparisons</a> <a href="#plots">RD plots</a> <a href="#tables">Tables</a> | {nav}</nav>
<h2 id="comparisons">Reconstructions at about the same file size</h2>
<p class="help">For each image and target size ({", ".join(f"{s:g}" for s in sizes)} bpp, whole file), each codec's
setting whose file comes closest (red bpp: none within 30%). Every picture is a real decode of the file linked in its row
(ours through the codec API, the others through their own decoders), stored as PNG. Numbers are of that file and decode.
Point at an image's box, then: &larr;/&rarr; or 0-9 switch codec (0 = original), &uarr;/&darr; size, d difference
(|error| &times;{DIFF_GAIN} per channel), z crop zoom; or click the rows and buttons. Click a picture to move the crop.</p>
{"".join(_viewer(i, name, item) for i, (name, item) in enumerate(items))}
<h2 id="plots">RD plots</h2>
<div class="plots">{plot_html}</div>
<h2 id="tables">Summary tables</h2>
{markdown_to_html(summary_md)}
<script id="report-data" type="application/json">{data_json}</script>
<script>{JS}</script>
</body></html>
"""


def write_html(records: list[dict], image_paths: list[Path], out_dir: Path, sizes: list[float],
               loader: str = DEFAULT_LOADER, workers: int = 1, progress: bool = True, logger=None) -> Path:
    """Write ``out_dir/report.html`` and ``out_dir/report_files/``; returns the page's path."""
    from rtaic.evaluation.pool import run_jobs

    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    sizes = [float(s) for s in sizes]
    picks = pick(records, sizes)
    paths = {Path(p).name: str(p) for p in image_paths}
    names = [n for n in picks if n in paths]
    jobs = []
    for n, name in enumerate(names):
        rel = f"{FILES}/{n:03d}_{_slug(Path(name).stem)}"
        chosen = [(t, [(r["codec"], r["quality"]) for r in recs]) for t, recs in picks[name]]
        jobs.append((paths[name], chosen, str(out_dir / rel), rel, loader))
    done = {job[2]: result for job, result in run_jobs(render_image, jobs, workers, "report.html", progress)}
    items = [(name, done[job[2]]) for name, job in zip(names, jobs, strict=True)]
    for name, item in items:
        measured = {f"{r['codec']}|{r['quality']}": r["file_bytes"] for _, recs in picks[name] for r in recs}
        for key, e in item["entries"].items():
            if e["bytes"] != measured[key]:
                log.warning("%s %s on %s: %d bytes now, %d when measured (encoder not deterministic?)",
                            e["codec"], e["quality"], name, e["bytes"], measured[key])
    plots = sorted(p.name for p in out_dir.glob("*.png"))
    md = out_dir / "summary.md"
    title = f"Evaluation report ({len(items)} image{'s' if len(items) != 1 else ''})"
    path = out_dir / "report.html"
    path.write_text(page(title, items, sizes, plots, md.read_text() if md.exists() else ""))
    log.info("wrote %s (%d images, %.1f s)", path, len(items), time.perf_counter() - t0)
    if logger is not None and hasattr(logger, "log_comparison"):
        logger.log_comparison(comparison_rows(items, out_dir))
    return path


def comparison_rows(items: list[tuple[str, dict]], out_dir: Path) -> list[dict]:
    """One row per (image, target size, codec), with the paths of the pictures and the crop
    box, for a logger (W&B table)."""
    rows = []
    for name, item in items:
        for size in item["sizes"]:
            c = size["crop"]
            box = (c["x"], c["y"], c["x"] + c["w"], c["y"] + c["h"])
            for key in size["keys"]:
                e = item["entries"][key]
                rows.append({"image": name, "target_bpp": size["target"], **{k: e[k] for k in (
                    "codec", "label", "setting", "bytes", "bpp", "msssim_rgb", "psnr_rgb", "ciede2000")},
                    "picture": out_dir / e["src"], "difference": out_dir / e["diff"],
                    "original": out_dir / item["original"], "crop_box": box})
    return rows

