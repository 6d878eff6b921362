"""The rtaic command line: files, stdin/stdout, several inputs, errors and exit codes."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from codec_helpers import make_checkpoint, photo
from rtaic.cli import main
from rtaic.codec import load_codec

RUN = [sys.executable, "-c", "import sys; from rtaic.cli import main; sys.exit(main())"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return str(make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"))


@pytest.fixture
def png(tmp_path):
    path = tmp_path / "photo.png"
    photo(37, 21).save(path)
    return path


def test_compress_then_decompress_files(ckpt, png, tmp_path, capsys):
    out = tmp_path / "photo.rtaic"
    assert main(["compress", str(png), "-o", str(out), "--model", ckpt]) == 0
    report = capsys.readouterr().err
    assert f"{out.stat().st_size} bytes" in report and "bpp" in report
    codec = load_codec(ckpt)
    assert out.read_bytes() == codec.compress(Image.open(png))  # CLI == API, byte for byte
    rec = tmp_path / "rec.png"
    assert main(["decompress", str(out), "-o", str(rec), "--model", ckpt, "-q"]) == 0
    assert capsys.readouterr().err == ""
    expected = codec.decompress(out.read_bytes())
    assert np.array_equal(np.asarray(Image.open(rec)), np.asarray(expected))


def _script() -> list[str]:
    """The installed console script, else the same entry point through python -c."""
    script = shutil.which("rtaic", path=str(Path(sys.executable).parent))
    return [script] if script else RUN


def test_stdin_to_stdout_through_the_console_script(ckpt, png):
    data = subprocess.run(_script() + ["compress", "-", "--model", ckpt], input=png.read_bytes(),
                          capture_output=True, check=True, timeout=120).stdout  # fmt: skip
    assert data[:4] == b"RTAI"
    assert data == load_codec(ckpt).compress(Image.open(png))


def test_decompress_stdin_to_stdout(ckpt, png, monkeypatch, capsys):
    data = load_codec(ckpt).compress(Image.open(png))
    stdin, stdout = io.BytesIO(data), io.BytesIO()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(stdin))
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(stdout))
    assert main(["decompress", "-", "-m", ckpt, "-q"]) == 0
    assert capsys.readouterr().err == ""
    image = Image.open(io.BytesIO(stdout.getvalue()))
    assert image.format == "PNG" and image.size == (37, 21)


def test_several_files_with_derived_names_and_an_output_directory(ckpt, tmp_path):
    names = []
    for i, size in enumerate([(9, 9), (20, 11), (1, 1)]):
        names.append(tmp_path / f"img{i}.png")
        photo(*size, seed=i).save(names[-1])
    assert main(["compress", *map(str, names), "-m", ckpt, "-q"]) == 0
    coded = [p.with_suffix(".rtaic") for p in names]
    assert all(p.exists() for p in coded)
    outdir = tmp_path / "out"
    outdir.mkdir()
    assert main(["decompress", *map(str, coded), "-o", str(outdir), "-m", ckpt, "-q"]) == 0
    assert sorted(p.name for p in outdir.iterdir()) == ["img0.png", "img1.png", "img2.png"]
    assert Image.open(outdir / "img2.png").size == (1, 1)


def test_derived_outputs_are_not_overwritten_without_force(ckpt, png, capsys):
    assert main(["compress", str(png), "-m", ckpt, "-q"]) == 0
    assert main(["compress", str(png), "-m", ckpt, "-q"]) == 1
    assert "exists (use --force" in capsys.readouterr().err
    assert main(["compress", str(png), "-m", ckpt, "-q", "--force"]) == 0


def test_one_bad_file_fails_the_run_but_not_the_others(ckpt, png, tmp_path, capsys):
    missing = tmp_path / "missing.png"
    assert main(["compress", str(missing), str(png), "-m", ckpt, "-q"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("rtaic: ") and "missing.png" in err
    assert png.with_suffix(".rtaic").exists()


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "bad magic"),
        (b"hello world, not rtaic", "bad magic"),
        (b"RTAI\x07" + bytes(40), "version 7"),
        (b"RTAI\x01" + bytes(10), "truncated"),
    ],
)
def test_invalid_rtaic_files(ckpt, tmp_path, capsys, content, message):
    bad = tmp_path / "bad.rtaic"
    bad.write_bytes(content)
    assert main(["decompress", str(bad), "-m", ckpt]) == 1
    err = capsys.readouterr().err
    assert err.startswith("rtaic: ") and "invalid rtaic file" in err and message in err
    assert not bad.with_suffix(".png").exists()


def test_flipped_bit_and_wrong_model(ckpt, png, tmp_path, capsys):
    good = load_codec(ckpt).compress(Image.open(png))
    flipped = bytearray(good)
    flipped[-3] ^= 0x10
    (tmp_path / "flip.rtaic").write_bytes(bytes(flipped))
    assert main(["decompress", str(tmp_path / "flip.rtaic"), "-m", ckpt]) == 1
    assert "checksum" in capsys.readouterr().err
    (tmp_path / "good.rtaic").write_bytes(good)
    other = str(make_checkpoint(tmp_path / "other.ckpt", seed=5))
    assert main(["decompress", str(tmp_path / "good.rtaic"), "-m", other]) == 1
    assert "different model" in capsys.readouterr().err


def test_not_an_image_transparency_and_bad_model(ckpt, tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert main(["compress", str(text), "-m", ckpt]) == 1
    assert "not a readable image" in capsys.readouterr().err
    rgba = photo(8, 8).convert("RGBA")
    rgba.putpixel((0, 0), (0, 0, 0, 0))
    rgba.save(tmp_path / "alpha.png")
    assert main(["compress", str(tmp_path / "alpha.png"), "-m", ckpt]) == 1
    assert "transparency" in capsys.readouterr().err
    assert main(["compress", str(tmp_path / "alpha.png"), "-m", str(text)]) == 1
    assert "cannot load model" in capsys.readouterr().err


def test_usage_errors(ckpt, png, monkeypatch, capsys):
    from rtaic import zoo

    monkeypatch.delenv("RTAIC_MODEL", raising=False)
    monkeypatch.setattr(zoo, "MANIFEST", Path(str(png) + ".none.json"))
    assert main(["compress", str(png)]) == 2
    assert "no model" in capsys.readouterr().err
    assert main(["compress", str(png), str(png), "-o", "not-a-dir", "-m", ckpt]) == 2
    with pytest.raises(SystemExit) as e:
        main(["explode"])
    assert e.value.code == 2


def test_model_from_the_environment(ckpt, png, monkeypatch):
    monkeypatch.setenv("RTAIC_MODEL", ckpt)
    assert main(["compress", str(png), "-q"]) == 0
    assert main(["decompress", str(png.with_suffix(".rtaic")), "-o", str(png) + ".bmp", "-q"]) == 0
    assert Image.open(str(png) + ".bmp").format == "BMP"


def test_export_then_bundled_models_are_found_without_model_argument(ckpt, png, tmp_path,
                                                                      monkeypatch):  # fmt: skip
    import json

    from rtaic import zoo
    from rtaic.codec import load_codec

    models = tmp_path / "models"
    assert main(["export", ckpt, "-o", str(models / "m.ckpt")]) == 0
    exported = load_codec(models / "m.ckpt")
    assert exported.fingerprint == load_codec(ckpt).fingerprint
    assert (models / "m.ckpt").stat().st_size < Path(ckpt).stat().st_size * 1.01
    manifest = {"default": "m", "models": {"m": {"file": "m.ckpt", "target_bpp": 0.1,
                                                   "fingerprint": exported.fingerprint.hex()}}}
    (models / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setattr(zoo, "MODELS_DIR", models)
    monkeypatch.setattr(zoo, "MANIFEST", models / "manifest.json")
    monkeypatch.delenv("RTAIC_MODEL", raising=False)
    out = tmp_path / "a.rtaic"
    assert main(["compress", str(png), "-o", str(out), "-q"]) == 0
    assert main(["decompress", str(out), "-o", str(tmp_path / "a.png"), "-q"]) == 0
    assert Image.open(tmp_path / "a.png").size == Image.open(png).size
    monkeypatch.setattr(zoo, "MANIFEST", tmp_path / "missing.json")
    assert main(["decompress", str(out), "-o", str(tmp_path / "b.png"), "-q"]) == 1


def test_shipped_manifest_matches_the_bundled_model_files():
    """decompress finds a file's model by the manifest's fingerprint: it must be the file's."""
    from rtaic import zoo
    from rtaic.codec import load_codec

    entries = zoo.manifest()["models"]
    assert zoo.manifest()["default"] in entries
    for name, entry in entries.items():
        codec = load_codec(zoo.model_path(name))
        assert codec.fingerprint.hex() == entry["fingerprint"], name
        assert codec.architecture.color_space == entry["color_space"], name


def test_quality_and_model_names_pick_bundled_models(png, tmp_path, monkeypatch, capsys):
    import json

    from rtaic import zoo

    models = tmp_path / "models"
    models.mkdir()
    entries = {}
    # two RGB models, one legacy and one YCbCr: --quality counts only the current models of
    # the default model's family
    for seed, (name, extra) in enumerate([("high", {"target_bpp": 1.0}), ("low", {"target_bpp": 0.1}),
                                          ("old", {"target_bpp": 0.05, "legacy": True}),
                                          ("ycc", {"target_bpp": 0.2, "curve": "learned_ycbcr"})]):
        make_checkpoint(models / f"{name}.ckpt", seed=seed)
        entries[name] = {"file": f"{name}.ckpt", "fingerprint": load_codec(models / f"{name}.ckpt").fingerprint.hex(),
                         **extra}
    (models / "manifest.json").write_text(json.dumps({"default": "low", "models": entries}))
    monkeypatch.setattr(zoo, "MODELS_DIR", models)
    monkeypatch.setattr(zoo, "MANIFEST", models / "manifest.json")
    monkeypatch.setenv("RTAIC_MODEL", str(models / "ycc.ckpt"))  # --quality wins over the environment
    assert zoo.quality_ladder() == ["low", "high"]
    assert zoo.curves() == {"learned": [models / "low.ckpt", models / "high.ckpt"],
                            "learned_ycbcr": [models / "ycc.ckpt"]}
    # the ladder is the default model's family
    (models / "manifest.json").write_text(json.dumps({"default": "ycc", "models": entries}))
    assert zoo.quality_ladder() == ["ycc"]
    # ... unless the manifest names the ladder's curve (a fast default outside it)
    (models / "manifest.json").write_text(json.dumps({"default": "ycc", "ladder": "learned", "models": entries}))
    assert zoo.quality_ladder() == ["low", "high"] and zoo.default_model() == models / "ycc.ckpt"
    (models / "manifest.json").write_text(json.dumps({"default": "low", "models": entries}))
    for args, name in ((["--quality", "2"], "high"), (["--quality", "1"], "low"), (["--model", "old"], "old")):
        out = tmp_path / f"{name}.rtaic"
        assert main(["compress", str(png), "-o", str(out), "-q", *args]) == 0
        assert out.read_bytes() == load_codec(models / f"{name}.ckpt").compress(Image.open(png))
    assert main(["compress", str(png), "-o", str(tmp_path / "x.rtaic"), "--quality", "3"]) == 2
    assert "--quality must be 1..2" in capsys.readouterr().err
    assert main(["compress", str(png), "--quality", "1", "--model", "low"]) == 2


@pytest.fixture
def big_png(tmp_path):
    path = tmp_path / "big.png"
    photo(120, 90, seed=4).save(path)
    return path


def test_size_max_bytes_and_truncate(ckpt, big_png, tmp_path, capsys):
    codec = load_codec(ckpt)
    image = Image.open(big_png)
    whole = codec.compress(image)
    target = len(whole) // 2
    out = tmp_path / "half.rtaic"
    assert main(["compress", str(big_png), "-o", str(out), "-m", ckpt, "--size", str(target)]) == 0
    assert f"target {target} bytes" in capsys.readouterr().err
    assert out.read_bytes() == codec.compress(image, max_bytes=target)
    assert len(out.read_bytes()) <= target
    assert main(["compress", str(big_png), "-o", str(out), "-m", ckpt, "--bpp", "0.3", "-q"]) == 0
    assert out.read_bytes() == codec.compress(image, max_bytes=int(0.3 * 120 * 90 / 8))
    (tmp_path / "whole.rtaic").write_bytes(whole)
    rec = tmp_path / "prefix.png"
    assert main(["decompress", str(tmp_path / "whole.rtaic"), "-o", str(rec), "-m", ckpt,
                 "--max-bytes", f"{target / 1000}KB"]) == 0  # fmt: skip
    assert "from the first" in capsys.readouterr().err
    expected = codec.decompress(whole, max_bytes=target)
    assert np.array_equal(np.asarray(Image.open(rec)), np.asarray(expected))
    cut = tmp_path / "cut.rtaic"
    assert main(["truncate", str(tmp_path / "whole.rtaic"), "--bytes", str(target), "-o", str(cut),
                 "-m", ckpt, "-q"]) == 0  # fmt: skip
    assert cut.read_bytes() == codec.truncate(whole, target)
    assert main(["decompress", str(cut), "-o", str(tmp_path / "cut.png"), "-m", ckpt]) == 0
    assert "(a cut file)" in capsys.readouterr().err
    assert np.array_equal(np.asarray(Image.open(tmp_path / "cut.png")), np.asarray(expected))


def test_size_errors(ckpt, big_png, tmp_path, capsys):
    from dataclasses import replace

    from rtaic.coding import bitstream
    from rtaic.coding.arithmetic import encode_planes
    from rtaic.coding.bitplanes import to_bitplanes

    with pytest.raises(SystemExit) as e:
        main(["compress", str(big_png), "-m", ckpt, "--size", "20XB"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["compress", str(big_png), "-m", ckpt, "--size", "2KB", "--bpp", "0.2"])
    assert e.value.code == 2
    capsys.readouterr()
    assert main(["compress", str(big_png), "-m", ckpt, "--size", "20", "-o", str(tmp_path / "x.rtaic")]) == 1
    assert "smallest rtaic file" in capsys.readouterr().err
    codec = load_codec(ckpt)
    whole = tmp_path / "whole.rtaic"
    whole.write_bytes(codec.compress(Image.open(big_png)))
    assert main(["truncate", str(whole), "--bytes", "30", "-o", str(tmp_path / "t.rtaic"), "-m", ckpt]) == 1
    assert "smallest file" in capsys.readouterr().err
    image = Image.open(big_png)
    header, _ = bitstream.unpack(whole.read_bytes())
    planes = to_bitplanes(codec.latent_levels(image), header.bits)
    v2 = bitstream.pack(replace(header, version=2), encode_planes(planes, codec.context_model, codec.table, 2)[0])
    (tmp_path / "v2.rtaic").write_bytes(v2)
    assert main(["decompress", str(tmp_path / "v2.rtaic"), "-m", ckpt, "--max-bytes", str(len(v2) - 100),
                 "-o", str(tmp_path / "v2.png")]) == 1  # fmt: skip
    assert "cannot be cut" in capsys.readouterr().err
    assert main(["decompress", str(tmp_path / "v2.rtaic"), "-m", ckpt, "-o", str(tmp_path / "v2.png")]) == 0


def test_size_chooses_among_the_bundled_models(big_png, tmp_path, monkeypatch, capsys):
    import json

    from rtaic import zoo
    from rtaic.sizing import fit_to_size

    models = tmp_path / "models"
    models.mkdir()
    entries = {}
    for seed, (name, bpp) in enumerate([("low", 0.1), ("high", 1.0)]):
        make_checkpoint(models / f"{name}.ckpt", seed=seed)
        entries[name] = {"file": f"{name}.ckpt", "target_bpp": bpp,
                         "fingerprint": load_codec(models / f"{name}.ckpt").fingerprint.hex()}
    (models / "manifest.json").write_text(json.dumps({"default": "low", "models": entries}))
    monkeypatch.setattr(zoo, "MODELS_DIR", models)
    monkeypatch.setattr(zoo, "MANIFEST", models / "manifest.json")
    monkeypatch.delenv("RTAIC_MODEL", raising=False)
    out = tmp_path / "sized.rtaic"
    assert main(["compress", str(big_png), "-o", str(out), "--size", "1KB"]) == 0
    assert "model " in capsys.readouterr().err
    assert out.read_bytes() == fit_to_size(Image.open(big_png), 1000).data
    assert len(out.read_bytes()) <= 1000
    rec = tmp_path / "sized.png"
    assert main(["decompress", str(out), "-o", str(rec), "-q"]) == 0  # the model by fingerprint
    assert Image.open(rec).size == (120, 90)
    assert main(["truncate", str(out), "--bytes", "500", "-o", str(tmp_path / "t.rtaic"), "-q"]) == 0
    assert len((tmp_path / "t.rtaic").read_bytes()) <= 500


def test_cmyk_round_trip_with_the_default_names(ckpt, tmp_path, capsys, monkeypatch):
    """PNG cannot store CMYK: the derived output (and stdout) is TIFF, in the same mode."""
    src = tmp_path / "print.tif"
    photo(30, 20).convert("CMYK").save(src)
    assert main(["compress", str(src), "-m", ckpt, "-q"]) == 0
    coded = tmp_path / "print.rtaic"
    assert main(["decompress", str(coded), "-m", ckpt]) == 0
    assert "print.tiff: 30x20 CMYK (TIFF: PNG cannot store CMYK)" in capsys.readouterr().err
    out = Image.open(tmp_path / "print.tiff")
    expected = load_codec(ckpt).decompress(coded.read_bytes())
    assert out.mode == expected.mode == "CMYK"
    assert np.array_equal(np.asarray(out), np.asarray(expected))
    assert main(["decompress", str(coded), "-m", ckpt, "-q"]) == 1  # derived names never overwrite
    assert "exists" in capsys.readouterr().err
    assert main(["decompress", str(coded), "-m", ckpt, "-o", str(tmp_path / "x.png")]) == 1
    err = capsys.readouterr().err
    assert "cannot save a CMYK image as PNG" in err and "TIFF" in err
    stdout = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(stdout))
    assert main(["decompress", str(coded), "-o", "-", "-m", ckpt, "-q"]) == 0
    assert Image.open(io.BytesIO(stdout.getvalue())).mode == "CMYK"


def test_clear_messages_for_a_wrong_model_file_and_an_unreadable_input(ckpt, png, tmp_path, capsys):
    """--model x.png said 'pop from empty list'; an unreadable input printed a BytesIO repr."""
    assert main(["compress", str(png), "--model", str(png), "-o", str(tmp_path / "a.rtaic")]) == 1
    err = capsys.readouterr().err
    assert "is not a model checkpoint" in err and "pop from" not in err and len(err) < 300
    coded = tmp_path / "b.rtaic"
    coded.write_bytes(load_codec(ckpt).compress(Image.open(png)))
    assert main(["decompress", str(coded), "--model", str(png), "-o", str(tmp_path / "b.png")]) == 1
    assert "is not a model checkpoint" in capsys.readouterr().err
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x89PNG not really")
    assert main(["compress", str(junk), "-m", ckpt, "-o", str(tmp_path / "c.rtaic")]) == 1
    err = capsys.readouterr().err
    assert "junk.png: not a readable image" in err and "BytesIO" not in err and " at 0x" not in err
