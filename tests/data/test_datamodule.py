import numpy as np
import pytest
import torch
from PIL import Image

from rtaic.data.datamodule import ImageDataModule
from rtaic.data.folders import find_images, read_rgb8
from rtaic.data.samples import sample_images


def _save(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path)
    return path


def test_reads_every_mode_as_8bit_rgb(tmp_path):
    g = np.random.default_rng(0)
    rgb = g.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    gray = _save(tmp_path / "g.png", rgb[..., 0])
    rgba = _save(tmp_path / "a.png", np.dstack([rgb, np.full((5, 7), 128, np.uint8)]))
    deep = tmp_path / "d.png"
    Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(deep)
    pal = tmp_path / "p.png"
    Image.fromarray(rgb).convert("P").save(pal)
    for p in (gray, rgba, deep, pal):
        a = read_rgb8(p)
        assert a.shape == (5, 7, 3) and a.dtype == np.uint8, p
    assert np.array_equal(read_rgb8(rgba), rgb)
    assert np.array_equal(read_rgb8(gray)[..., 1], rgb[..., 0])
    assert np.abs(read_rgb8(deep)[..., 0].astype(int) - rgb[..., 0]).max() <= 1


def _codec_input_as_8bit(path):
    """What the codec's networks see for a file (as ``rtaic compress`` opens it), in 8 bits."""
    from rtaic.imageio import prepare

    with Image.open(path) as img:
        prep = prepare(img)
        x = prep.tile(0, 0, *prep.size)[0].permute(1, 2, 0)
    return (x * 255).round().to(torch.uint8).numpy()


@pytest.mark.parametrize("peak", [65535, 255, 4095])
def test_sixteen_bit_files_are_read_as_the_codec_reads_them(tmp_path, peak):
    """One rule for 16-bit files, in training and in the codec: value / 65535 (a file whose
    values stay below 256 is dark, not guessed to be 8-bit; 12-bit data is not stretched)."""
    g = np.random.default_rng(peak)
    grey = g.integers(0, peak + 1, (9, 13)).astype(np.uint16)
    grey[0, :2] = (0, peak)
    if peak == 65535:
        grey[0, 2] = 128 * 257 + 128  # right between two 8-bit steps
    path = tmp_path / "deep.png"
    Image.fromarray(grey).save(path)
    with Image.open(path) as img:
        assert img.mode.startswith("I")  # a real 16-bit file
    training = read_rgb8(path)
    assert training.shape == (9, 13, 3) and training.dtype == np.uint8
    assert np.array_equal(training, _codec_input_as_8bit(path))
    assert np.array_equal(training[..., 0], np.rint(grey / 257.0).astype(np.uint8))


def test_every_mode_is_read_as_the_codec_reads_it(tmp_path):
    g = np.random.default_rng(2)
    rgb = g.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    files = {
        "rgb.png": Image.fromarray(rgb),
        "grey.png": Image.fromarray(rgb[..., 0]),
        "opaque.png": Image.fromarray(np.dstack([rgb, np.full((6, 5), 255, np.uint8)])),
        "pal.png": Image.fromarray(rgb).convert("P"),
        "float.tif": Image.fromarray(rgb[..., 1].astype(np.float32) + 0.25),  # Pillow's 0..255
        "int.tif": Image.fromarray(rgb[..., 2].astype(np.int32) * 257),
    }
    for name, image in files.items():
        image.save(tmp_path / name)
        assert np.array_equal(read_rgb8(tmp_path / name), _codec_input_as_8bit(tmp_path / name)), name
    assert np.array_equal(read_rgb8(tmp_path / "float.tif")[..., 0], rgb[..., 1])


def test_finds_images_recursively_and_only_images(tmp_path):
    img = np.zeros((4, 4, 3), np.uint8)
    _save(tmp_path / "a" / "b" / "x.png", img)
    _save(tmp_path / "y.JPG", img)
    (tmp_path / "notes.txt").write_text("no")
    assert [p.name for p in find_images(tmp_path)] == ["x.png", "y.JPG"]
    with pytest.raises(FileNotFoundError):
        find_images(tmp_path / "missing")


def test_datamodule_crops_pads_small_images_and_holds_out_validation(tmp_path):
    g = np.random.default_rng(1)
    for i in range(10):
        _save(tmp_path / f"{i}.png", g.integers(0, 256, (40 + i, 90, 3), dtype=np.uint8))
    dm = ImageDataModule(root=str(tmp_path), crop_size=64, val_crop_size=48, batch_size=3,
                         crops_per_epoch=9, val_fraction=0.2)
    train, val = dm.split()
    assert len(val) == 2 and not set(train) & set(val) and len(train) == 8
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (3, 3, 64, 64) and batch.dtype == torch.float32
    assert 0 <= float(batch.min()) and float(batch.max()) <= 1
    vb = next(iter(dm.val_dataloader()))
    assert vb.shape[-2:] == (48, 48)


def test_default_data_is_the_shipped_sample_images():
    train, val = ImageDataModule().split()
    assert len(train) >= 5 and len(val) >= 1 and all(p.is_file() for p in train + val)
    assert train == sample_images("train")
    assert read_rgb8(train[0]).shape[-1] == 3
