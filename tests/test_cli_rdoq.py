"""``rtaic compress --rdoq LAMBDA``: the API's RDOQ bytes, decoded by the plain decompress."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from codec_helpers import make_checkpoint, photo
from rtaic.cli import _Encoding, main
from rtaic.codec import load_codec


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return str(make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"))


@pytest.fixture
def png(tmp_path):
    path = tmp_path / "photo.png"
    photo(64, 48, seed=5).save(path)
    return path


def test_compress_rdoq_writes_the_apis_bytes_and_decodes_plainly(ckpt, png, tmp_path, capsys):
    codec = load_codec(ckpt)
    image = Image.open(png)
    out = tmp_path / "r.rtaic"
    assert main(["compress", str(png), "-o", str(out), "-m", ckpt, "--rdoq", "2", "-q"]) == 0
    data = out.read_bytes()
    assert data == codec.compress(image, rdoq=2.0) and len(data) < len(codec.compress(image))
    rec = tmp_path / "r.png"
    assert main(["decompress", str(out), "-o", str(rec), "-m", ckpt, "-q"]) == 0  # no option needed
    assert np.array_equal(np.asarray(Image.open(rec)), np.asarray(codec.decompress(data)))
    # 0 is off: the plain bytes
    assert main(["compress", str(png), "-o", str(out), "-m", ckpt, "--rdoq", "0", "-q"]) == 0
    assert out.read_bytes() == codec.compress(image)
    # with a size: the longest cut of the RDOQ file that fits
    target = len(data) * 2 // 3
    assert main(["compress", str(png), "-o", str(out), "-m", ckpt, "--rdoq", "2", "--size", str(target),
                 "-q"]) == 0  # fmt: skip
    assert out.read_bytes() == codec.compress(image, max_bytes=target, rdoq=2.0)


@pytest.mark.parametrize("value", ["-0.1", "abc", "inf", "nan"])
def test_bad_lambdas_are_usage_errors(ckpt, png, value, capsys):
    with pytest.raises(SystemExit) as e:
        main(["compress", str(png), "-m", ckpt, f"--rdoq={value}"])
    assert e.value.code == 2
    assert "--rdoq" in capsys.readouterr().err


def test_size_among_models_encodes_with_rdoq(ckpt, png):
    from rtaic.sizing import fit_to_size

    codec = load_codec(ckpt)
    image = Image.open(png)
    prog = codec.encode_progressive(image, rdoq=2.0)
    target = prog.size() - 40
    choice = fit_to_size(image, target, [("tiny", _Encoding(codec, 2.0, 0))])
    assert choice.data == prog.data(prog.cut_for(target))


def test_compress_refine_writes_the_apis_bytes(ckpt, png, tmp_path, capsys):
    codec = load_codec(ckpt)
    image = Image.open(png)
    out = tmp_path / "r.rtaic"
    assert main(["compress", str(png), "-o", str(out), "-m", ckpt, "--refine", "3", "-q"]) == 0
    assert out.read_bytes() == codec.compress(image, refine=3)
    assert main(["compress", str(png), "-o", str(out), "-m", ckpt, "--refine", "3", "--rdoq", "2", "-q"]) == 0
    assert out.read_bytes() == codec.compress(image, rdoq=2.0, refine=3)
    for value in ("-1", "1.5", "x"):
        with pytest.raises(SystemExit) as e:
            main(["compress", str(png), "-m", ckpt, f"--refine={value}"])
        assert e.value.code == 2 and "--refine" in capsys.readouterr().err
