"""The evaluation's RDOQ curve (``eval.py rdoq=LAMBDA``): learned_rdoq, real bytes."""

from __future__ import annotations

from pathlib import Path

import pytest

from codec_helpers import make_checkpoint, photo
from rtaic.codec import load_codec
from rtaic.evaluation import measure
from rtaic.evaluation.measure import rdoq_name, split_rdoq, with_rdoq
from rtaic.evaluation.names import RDOQ_CURVE, label


def test_rdoq_names_round_trip(tmp_path):
    name = rdoq_name("dir/rgb_bpp0.5.ckpt", 0.03)
    assert name == "dir/rgb_bpp0.5+rdoq0.03.ckpt"
    assert split_rdoq(name) == ("dir/rgb_bpp0.5.ckpt", 0.03)
    assert split_rdoq(rdoq_name("m.ckpt", 2.5e-4)) == ("m.ckpt", 2.5e-4)
    assert split_rdoq("dir/rgb_bpp0.5.ckpt") == ("dir/rgb_bpp0.5.ckpt", None)
    real = tmp_path / "odd+rdoq1.ckpt"  # an existing file is itself, whatever its name
    real.write_text("x")
    assert split_rdoq(real) == (str(real), None)
    with pytest.raises(ValueError):
        rdoq_name("m.ckpt", 0)


def test_with_rdoq_adds_each_colour_space_curve_encoding_with_rdoq():
    ours = {"learned": ["a.ckpt", "b.ckpt"], "learned_gan": ["g.ckpt"], "learned_ycbcr": ["y.ckpt"],
            "learned_ycbcr_plain": ["p.ckpt"]}
    out = with_rdoq(ours, 0.03)
    assert out[RDOQ_CURVE] == ["a+rdoq0.03.ckpt", "b+rdoq0.03.ckpt"]
    assert out["learned_ycbcr_rdoq"] == ["y+rdoq0.03.ckpt"]  # not the GAN or the replaced models
    assert {k: v for k, v in out.items() if k not in (RDOQ_CURVE, "learned_ycbcr_rdoq")} == ours
    assert with_rdoq({"learned_ycbcr": ["y.ckpt"]}, 0.1) == {"learned_ycbcr": ["y.ckpt"],
                                                            "learned_ycbcr_rdoq": ["y+rdoq0.1.ckpt"]}
    assert with_rdoq(["a.ckpt"], 0.1) == {"learned": ["a.ckpt"], RDOQ_CURVE: ["a+rdoq0.1.ckpt"]}
    assert with_rdoq(ours, None) is ours and with_rdoq(ours, 0) is ours and with_rdoq(ours, []) is ours
    # several lambdas: every model at each (as hydra passes a list, e.g. rdoq=[0.03,0.1])
    from omegaconf import OmegaConf

    dense = with_rdoq({"learned_ycbcr": ["y.ckpt", "z.ckpt"]}, OmegaConf.create([0.03, 0.1]))
    assert dense["learned_ycbcr_rdoq"] == ["y+rdoq0.03.ckpt", "y+rdoq0.1.ckpt", "z+rdoq0.03.ckpt", "z+rdoq0.1.ckpt"]
    assert label(RDOQ_CURVE) == "Ours (rtaic, RDOQ)"


def test_the_rdoq_curve_measures_real_rdoq_files(tmp_path):
    ckpt = str(make_checkpoint(tmp_path / "tiny.ckpt"))
    image_path = tmp_path / "img.png"
    photo(64, 48, seed=7).save(image_path)
    pairs = measure.curves_of(with_rdoq([ckpt], 2.0))
    records = measure.measure_checkpoints(str(image_path), "img.png", "0" * 64, pairs)
    by_curve = {r["codec"]: r for r in records}
    assert set(by_curve) == {"learned", RDOQ_CURVE}
    codec = load_codec(ckpt)
    image = photo(64, 48, seed=7)
    assert by_curve["learned"]["file_bytes"] == len(codec.compress(image))
    assert by_curve[RDOQ_CURVE]["file_bytes"] == len(codec.compress(image, rdoq=2.0))
    assert by_curve[RDOQ_CURVE]["file_bytes"] < by_curve["learned"]["file_bytes"]
    assert Path(by_curve[RDOQ_CURVE]["quality"]).name == "tiny+rdoq2.ckpt"


def test_refine_names_and_curves(tmp_path):
    from rtaic.evaluation.measure import refine_name, split_refine, with_refine
    from rtaic.evaluation.names import REFINE_CURVES

    assert refine_name("dir/m.ckpt", 30) == "dir/m+refine30.ckpt"
    assert split_refine("dir/m+refine30.ckpt") == ("dir/m.ckpt", 30)
    assert split_refine("dir/m+rdoq0.03.ckpt") == ("dir/m+rdoq0.03.ckpt", None)
    with pytest.raises(ValueError):
        refine_name("m.ckpt", 0)
    assert REFINE_CURVES == {"learned": "learned_refine", "learned_ycbcr": "learned_ycbcr_refine"}
    ours = {"learned": ["a.ckpt"], "learned_ycbcr": ["y.ckpt"], "learned_gan": ["g.ckpt"]}
    out = with_refine(with_rdoq(ours, 0.03), 30)
    assert out["learned_refine"] == ["a+refine30.ckpt"] and out["learned_ycbcr_refine"] == ["y+refine30.ckpt"]
    assert out["learned_rdoq"] == ["a+rdoq0.03.ckpt"] and with_refine(ours, None) is ours
    only = with_refine(ours, 30, ["learned_ycbcr"])
    assert "learned_refine" not in only and only["learned_ycbcr_refine"] == ["y+refine30.ckpt"]
    both = with_refine(with_rdoq(ours, 0.03), 30, ["learned_ycbcr_rdoq"])
    assert both["learned_ycbcr_rdoq_refine"] == ["y+rdoq0.03+refine30.ckpt"]
    assert split_refine("y+rdoq0.03+refine30.ckpt") == ("y+rdoq0.03.ckpt", 30)
    assert label("learned_ycbcr_rdoq_refine") == "Ours (rtaic, YCbCr, RDOQ, refined)"
    assert label("learned_ycbcr_refine") == "Ours (rtaic, YCbCr, refined)"


def test_the_refine_curve_measures_real_refined_files(tmp_path):
    from rtaic.evaluation.measure import with_refine

    ckpt = str(make_checkpoint(tmp_path / "tiny.ckpt"))
    image_path = tmp_path / "img.png"
    photo(64, 48, seed=7).save(image_path)
    pairs = measure.curves_of(with_refine([ckpt], 3))
    records = measure.measure_checkpoints(str(image_path), "img.png", "0" * 64, pairs)
    by_curve = {r["codec"]: r for r in records}
    assert set(by_curve) == {"learned", "learned_refine"}
    codec = load_codec(ckpt)
    assert by_curve["learned_refine"]["file_bytes"] == len(codec.compress(photo(64, 48, seed=7), refine=3))
    assert Path(by_curve["learned_refine"]["quality"]).name == "tiny+refine3.ckpt"
