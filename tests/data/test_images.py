"""load_image: user image files for `cnnzoo predict`."""

import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from cnnzoo.data import load_image, load_split
from cnnzoo.errors import CnnzooError


@pytest.fixture(scope="module")
def sample(data_root):
    """The first Fashion-MNIST test image (an ankle boot), uint8 (28, 28)."""
    return load_split("fashion-mnist", "test", root=data_root).images[0, 0].numpy()


def test_png_roundtrip(tmp_path, sample):
    path = tmp_path / "boot.png"
    Image.fromarray(sample).save(path)
    out = load_image(path)
    assert out.dtype == torch.uint8 and out.shape == (1, 28, 28)
    assert np.array_equal(out[0].numpy(), sample)  # dark background: auto does not invert
    assert np.array_equal(load_image(str(path), invert=False)[0].numpy(), sample)
    assert np.array_equal(load_image(path, invert=True)[0].numpy(), 255 - sample)


def test_inverted_photo_is_auto_inverted(tmp_path, sample):
    path = tmp_path / "dark_on_light.png"
    Image.fromarray(255 - sample).save(path)
    assert np.array_equal(load_image(path)[0].numpy(), sample)
    assert np.array_equal(load_image(path, invert=False)[0].numpy(), 255 - sample)


def test_rgba_composited_on_white(tmp_path, sample):
    # black object, opacity = the sample: on white that is exactly 255 - sample, then auto-inverted
    rgba = np.zeros((28, 28, 4), dtype=np.uint8)
    rgba[..., 3] = sample
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(path)
    out = load_image(path)[0].numpy().astype(int)
    assert np.abs(out - sample.astype(int)).max() <= 1


def test_light_strokes_on_a_transparent_canvas_are_composited_on_black(tmp_path, sample):
    # What digit-drawing apps export: a white stroke whose opacity carries the shape. On white it
    # would vanish; on black it is exactly the sample.
    la = np.stack([np.full_like(sample, 255), sample], axis=-1)
    path = tmp_path / "la.png"
    Image.fromarray(la, "LA").save(path)
    assert np.abs(load_image(path)[0].numpy().astype(int) - sample).max() <= 1
    box = np.zeros((56, 84, 4), np.uint8)
    box[10:46, 20:60] = 255  # an opaque white box on a transparent background
    Image.fromarray(box, "RGBA").save(tmp_path / "box.png")
    out = load_image(tmp_path / "box.png")[0].numpy()
    assert out.max() == 255 and out[0].max() == 0  # a white box on black, not a blank image


def test_16bit(tmp_path, sample):
    path = tmp_path / "deep.png"
    Image.fromarray(sample.astype(np.uint16) * 257).save(path)
    assert Image.open(path).mode.startswith("I")
    assert np.array_equal(load_image(path)[0].numpy(), sample)


def test_palette(tmp_path, sample):
    path = tmp_path / "palette.png"
    Image.fromarray(sample).convert("P").save(path)
    assert Image.open(path).mode == "P"
    assert np.array_equal(load_image(path)[0].numpy(), sample)


def test_palette_gif_and_bmp(tmp_path, sample):
    for name in ("x.gif", "x.bmp"):
        Image.fromarray(sample).save(tmp_path / name)
        assert np.array_equal(load_image(tmp_path / name)[0].numpy(), sample)


def test_cmyk_jpeg(tmp_path, sample):
    path = tmp_path / "cmyk.jpg"
    Image.fromarray(sample).convert("CMYK").save(path, quality=95)
    out = load_image(path)[0].numpy().astype(int)
    assert np.abs(out - sample).mean() < 8


def test_jpeg_large_photo_dark_on_light_is_trimmed_to_the_object(tmp_path, sample):
    """A big RGB JPEG of a dark object on a wide light background: Fashion-MNIST's makers trimmed
    the margins and scaled the object's longer side to 28 pixels, and so does load_image."""
    big = Image.fromarray(255 - sample).resize((560, 560), Image.Resampling.BILINEAR).convert("RGB")
    canvas = Image.new("RGB", (1120, 700), (255, 255, 255))
    canvas.paste(big, (280, 70))
    path = tmp_path / "photo.jpg"
    canvas.save(path, quality=90)
    out = load_image(path)[0].numpy().astype(int)
    assert out.shape == (28, 28)
    rows, cols = np.nonzero(out > 50)
    assert max(np.ptp(rows), np.ptp(cols)) >= 26  # the object fills the frame, the margins are gone
    # The boot itself fills the sample's width: trimming the photo gives back the sample's framing.
    assert np.abs(out - sample.astype(int)).mean() < 20


def test_mnist_framing_recovers_the_digit_from_a_large_dark_on_light_scan(tmp_path, data_root):
    # The digit's bounding box, 10x larger, dark on white, off-centre on a big page: framed as
    # MNIST was made (20x20 box, centre of mass at the centre) it comes back close to the original.
    digit = load_split("mnist", "test", root=data_root).images[0, 0].numpy()
    rows, cols = np.nonzero(digit)
    crop = digit[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    scan = Image.fromarray(255 - crop).resize((crop.shape[1] * 10, crop.shape[0] * 10), Image.Resampling.BICUBIC)
    page = Image.new("L", (600, 500), 255)
    page.paste(scan, (40, 100))
    page.save(tmp_path / "scan.png")
    out = load_image(tmp_path / "scan.png", framing="mnist")[0].numpy().astype(float)
    r, c = np.nonzero(out > 50)
    assert max(np.ptp(r), np.ptp(c)) + 1 <= 20
    centre = [(out.sum(1) * np.arange(28)).sum() / out.sum(), (out.sum(0) * np.arange(28)).sum() / out.sum()]
    assert np.allclose(centre, 14, atol=0.5)  # pixel (14, 14), where MNIST puts every digit's
    assert np.abs(out - digit).mean() < 5  # the original, up to resampling
    fitted = load_image(tmp_path / "scan.png")[0].numpy()  # Fashion-MNIST's framing fills all 28 rows
    assert np.ptp(np.nonzero(fitted.max(axis=1) > 50)[0]) + 1 >= 27


def test_unknown_framing_is_refused(tmp_path, sample):
    Image.fromarray(sample).save(tmp_path / "x.png")
    with pytest.raises(CnnzooError, match="framing"):
        load_image(tmp_path / "x.png", framing="cifar")


def test_aspect_kept_and_centred(tmp_path):
    img = np.zeros((10, 40), dtype=np.uint8)
    img[:, :] = 200
    path = tmp_path / "wide.png"
    Image.fromarray(img).save(path)
    out = load_image(path, invert=False)[0].numpy()
    rows = np.nonzero(out.max(axis=1))[0]
    assert out[:, 0].max() > 0 and len(rows) == 7 and rows[0] == 10  # 40x10 -> 28x7, centred


def test_errors(tmp_path):
    with pytest.raises(CnnzooError, match="does not exist"):
        load_image(tmp_path / "nope.png")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(CnnzooError, match="empty") as err:
        load_image(empty)
    assert str(empty) in str(err.value)
    text = tmp_path / "notes.png"
    text.write_text("hello, I am not an image\n")
    with pytest.raises(CnnzooError, match="not an image") as err:
        load_image(text)
    assert str(text) in str(err.value)
    with pytest.raises(CnnzooError, match="not a file"):
        load_image(tmp_path)
    with pytest.raises(CnnzooError, match="invert"):
        load_image(text, invert="sometimes")


def test_truncated(tmp_path, sample):
    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 256, size=(200, 200), dtype=np.uint8)
    for name in ("t.png", "t.jpg"):
        path = tmp_path / name
        Image.fromarray(noisy).save(path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        with pytest.raises(CnnzooError, match="truncated|damaged|could not") as err:
            load_image(path)
        assert str(path) in str(err.value)


def _png_header_only(width, height):
    """A PNG that claims width x height (1-bit) but holds almost no data: never decoded."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [20000, 100000])
def test_huge_dimensions_refused_before_decoding(tmp_path, side):
    path = tmp_path / "huge.png"
    path.write_bytes(_png_header_only(side, side))
    assert path.stat().st_size < 1000
    with pytest.raises(CnnzooError, match="too large") as err:
        load_image(path)
    assert str(path) in str(err.value)
