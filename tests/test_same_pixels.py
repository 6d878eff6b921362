"""The same pixels on any thread count and in any process, equal to the encoder's
reconstruction: on real photographs, with the bundled default model (and the tiny test
model for tiled images), not only on latents."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from codec_helpers import make_checkpoint
from rtaic import zoo
from rtaic.codec import load_codec


@pytest.fixture(scope="module")
def codec():
    path = zoo.default_model()
    if path is None:
        pytest.skip("no bundled default model")
    return load_codec(path)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


def _photo(name: str = "coffee") -> Image.Image:
    return Image.fromarray(getattr(skimage.data, name)())


class _threads:
    """torch.set_num_threads(n) for a block; restores the previous count."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __enter__(self):
        self.old = torch.get_num_threads()
        torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        torch.set_num_threads(self.old)


def _decode(codec, data: bytes, threads: int) -> np.ndarray:
    with _threads(threads):
        image = codec.decompress(data)
        assert torch.get_num_threads() == threads  # the caller's setting survives
    return np.asarray(image)


@pytest.mark.parametrize("name", ["coffee", "astronaut"])
def test_same_pixels_on_1_and_2_threads_and_as_the_encoder_predicts(codec, name):
    image = _photo(name)
    with _threads(2):
        result = codec.encode(image, reconstruct=True)
    with _threads(1):
        again = codec.encode(image, reconstruct=True)
    assert again.data == result.data  # the file does not depend on the thread count either
    expected = np.asarray(result.reconstruction)
    assert np.array_equal(np.asarray(again.reconstruction), expected)
    for threads in (1, 2, 3):
        assert np.array_equal(_decode(codec, result.data, threads), expected), threads


def test_tiled_image_same_pixels_on_any_thread_count(tiny):
    """Several tiles run at once on the caller's threads, each on one torch thread."""
    codec = load_codec(tiny, tile=256, margin=64)
    image = _photo("rocket")  # 640 x 427: 3 x 2 tiles
    with _threads(1):
        result = codec.encode(image, reconstruct=True)
    expected = np.asarray(result.reconstruction)
    for threads in (1, 2, 4):
        with _threads(threads):
            assert codec.compress(image) == result.data
        assert np.array_equal(_decode(codec, result.data, threads), expected), threads


def test_networks_run_on_one_torch_thread_per_task(codec, tiny):
    """Every layer sees one torch thread, whatever the caller set; tiles and the decoder's
    finest branch run on a second Python thread when the caller allows two."""
    seen: list[tuple[int, int]] = []

    def hook(module, args):
        seen.append((torch.get_num_threads(), threading.get_ident()))

    for c, image in ((codec, _photo("chelsea")), (load_codec(tiny, tile=256, margin=64), _photo("rocket"))):
        handles = [m.register_forward_pre_hook(hook) for m in c.autoencoder.modules()
                   if not list(m.children())]  # fmt: skip
        try:
            with _threads(2):
                seen.clear()
                result = c.encode(image, reconstruct=True)
                c.decompress(result.data)
        finally:
            for h in handles:
                h.remove()
        assert {n for n, _ in seen} == {1}
        assert len({ident for _, ident in seen}) >= 2


DECODE_ELSEWHERE = """
import sys, numpy as np, torch
torch.set_num_threads(int(sys.argv[3]))
from rtaic.codec import load_codec
image = load_codec(sys.argv[1]).decompress(open(sys.argv[2], "rb").read())
np.save(sys.argv[4], np.asarray(image))
"""


def test_same_pixels_in_other_processes(codec, tmp_path):
    """Fresh processes with 1 and 2 threads (and OMP_NUM_THREADS=1) decode a real photo to
    the encoder's reconstruction, made here."""
    result = codec.encode(_photo("astronaut"), reconstruct=True)
    path = tmp_path / "astronaut.rtaic"
    path.write_bytes(result.data)
    model = str(zoo.default_model())
    for i, (threads, env) in enumerate([(1, {}), (2, {}), (2, {"OMP_NUM_THREADS": "1"})]):
        out = tmp_path / f"out{i}.npy"
        subprocess.run([sys.executable, "-c", DECODE_ELSEWHERE, model, str(path), str(threads), str(out)],
                       check=True, timeout=300, env={**os.environ, **env})  # fmt: skip
        assert np.array_equal(np.load(out), np.asarray(result.reconstruction)), (threads, env)


def test_the_codecs_own_forwards_match_the_modules(codec, tiny):
    """The codec runs the encoder and decoder through its own copies of their forwards
    (finest branch on a second thread); a change to rtaic.nn must be made there too, or the
    codec falls back to the modules (same pixels, slower). This says which."""
    assert codec._branches_match()
    assert load_codec(tiny)._branches_match()


def test_patch_form_of_the_linear_path_decodes_what_the_encoder_predicts(tmp_path):
    """Architecture.patch (the linear path as a learned block transform, a lapped synthesis
    that reads one latent cell beyond each side): same pixels on any thread count and the
    codec's own forward equal to the modules', tiled or not."""
    from codec_helpers import TINY

    arch = type(TINY)(**{**TINY.to_dict(), "patch": True})
    path = make_checkpoint(tmp_path / "patch.ckpt", arch)
    image = _photo("rocket")  # 640 x 427
    whole = load_codec(path, tile=1024, margin=64)
    assert whole._branches_match()  # the codec's forward copies cover the patch form
    with _threads(1):
        result = whole.encode(image, reconstruct=True)
    expected = np.asarray(result.reconstruction)
    for threads in (1, 2):
        assert np.array_equal(_decode(whole, result.data, threads), expected)
    tiled = load_codec(path, tile=256, margin=64)  # 3 x 2 tiles, each on its own thread
    with _threads(2):
        tiled_result = tiled.encode(image, reconstruct=True)
    with _threads(1):
        assert np.array_equal(_decode(tiled, tiled_result.data, 1), np.asarray(tiled_result.reconstruction))
    # the tiles join without seams: the margin covers the synthesis's one-cell overhang
    seam = np.abs(np.asarray(tiled_result.reconstruction, np.float64) - expected).mean()
    assert seam < 2.0, seam


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_either_precision_decodes_what_its_encoder_predicts_and_they_agree(precision):
    """The decoder trunk in bfloat16 (the default where the CPU has bfloat16 units) or in
    float32: the same file (the encoder does not depend on it), each decoder equal to its
    own encoder's reconstruction, the two within one level of each other on a photo, and
    the same model fingerprint."""
    path = zoo.default_model()
    if path is None:
        pytest.skip("no bundled default model")
    reference = load_codec(path, precision="float32")
    codec = load_codec(path, precision=precision)
    assert codec.precision == precision and codec.fingerprint == reference.fingerprint
    image = _photo("astronaut").resize((256, 192))
    data = codec.compress(image)
    assert data == reference.compress(image)
    result = codec.encode(image, reconstruct=True)
    decoded = np.asarray(codec.decompress(data)).astype(int)
    assert np.array_equal(decoded, np.asarray(result.reconstruction))
    diff = np.abs(decoded - np.asarray(reference.decompress(data)).astype(int))
    assert diff.max() <= 2 and diff.mean() < 0.2
    if precision == "bfloat16":
        assert diff.max() > 0  # a different computation: the test sees which one ran


def test_precision_is_checked():
    from rtaic.codec import synthesis_precision

    assert synthesis_precision("float32") == "float32"
    assert synthesis_precision("auto") in ("float32", "bfloat16")
    with pytest.raises(ValueError, match="precision"):
        synthesis_precision("fp16")
