"""Reading a user's image file for ``cnnzoo predict``: any Pillow-readable file to a 28x28
white-on-black uint8 tensor like the training data."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from cnnzoo.errors import CnnzooError

__all__ = ["FRAMINGS", "MAX_IMAGE_PIXELS", "load_image", "to_grayscale_array"]

# Refuse images above this many pixels before decoding them (a 50-megapixel grayscale image
# already takes 50 MB; a malicious header could claim far more).
MAX_IMAGE_PIXELS = 50_000_000
_SIZE = 28
# The box each data set's makers scaled the object into: Fashion-MNIST's longer side fills the
# frame; MNIST digits fit 20x20, leaving a 4-pixel border for the centre-of-mass shift.
FRAMINGS = {"fashion-mnist": 28, "mnist": 20}
INVERT_CHOICES = ("auto", "yes", "no")  # what the command line offers; the API also takes True/False
_INVERT_WORDS = {"auto": "auto", "true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def _resolve_invert(invert):
    if isinstance(invert, bool):
        return invert
    if isinstance(invert, str) and invert.strip().lower() in _INVERT_WORDS:
        return _INVERT_WORDS[invert.strip().lower()]
    raise CnnzooError(f"invert must be 'auto', True or False, got {invert!r}.")


def to_grayscale_array(img: Image.Image) -> np.ndarray:
    """A decoded Pillow image of any common mode -> uint8 (H, W), transparency composited on
    white and 16/32-bit or float images scaled to 8 bits."""
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return (np.asarray(img).astype(np.float64) / 257.0).round().clip(0, 255).astype(np.uint8)
    if mode == "I":  # 32-bit ints: 16-bit data in practice; 8-bit data if nothing exceeds 255
        a = np.asarray(img).astype(np.float64)
        if a.size and a.max() > 255:
            a = a / 257.0
        return a.round().clip(0, 255).astype(np.uint8)
    if mode == "F":  # floats: [0, 1] if they fit there, else [0, 255]
        a = np.nan_to_num(np.asarray(img).astype(np.float64))
        if a.size and a.max() <= 1.0:
            a = a * 255.0
        return a.round().clip(0, 255).astype(np.uint8)
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode in ("P", "L", "RGB") and "transparency" in img.info):
        rgba = img.convert("RGBA")
        # The backdrop that contrasts with what is drawn: a light stroke on a transparent canvas
        # (a common export of digit-drawing apps) would vanish on white.
        alpha = np.asarray(rgba)[..., 3].astype(np.float64)
        drawn = np.asarray(rgba.convert("RGB").convert("L")).astype(np.float64)
        light = alpha.sum() > 0 and (drawn * alpha).sum() / alpha.sum() > 127.5
        backdrop = Image.new("RGBA", rgba.size, (0, 0, 0, 255) if light else (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(backdrop, rgba).convert("L"))
    if mode in ("L", "1", "P", "RGB"):
        return np.asarray(img.convert("L"))
    # CMYK, YCbCr, LAB, HSV, ...: through RGB
    return np.asarray(img.convert("RGB").convert("L"))


def load_image(path, invert="auto", framing: str = "fashion-mnist") -> torch.Tensor:
    """Load an image file as uint8 (1, 28, 28), white on black like MNIST/Fashion-MNIST.

    Any file Pillow can read works (PNG, JPEG, BMP, GIF (first frame), TIFF, WebP...), in any
    common mode: transparency is composited on a contrasting backdrop, 16-bit images are scaled
    to 8 bits, colour becomes grayscale, and EXIF rotation is honoured.

    ``invert``: ``True``/``False``, or ``"auto"`` to invert dark-on-light images (border
    pixels averaging above 127) so the object is light on a dark background.

    ``framing``: how an image of another size is fitted into 28x28, as the data set's makers
    did (a 28x28 file is taken as it is). The margins are trimmed to the object's bounding box,
    then ``"fashion-mnist"`` scales its longer side to 28 pixels and centres it, and ``"mnist"``
    scales it into a 20x20 box and puts its centre of mass at the centre (LeCun et al.).

    Raises CnnzooError (one sentence naming the file) when the file is missing, empty, not an
    image, truncated or damaged, or larger than ``MAX_IMAGE_PIXELS`` pixels (checked before
    decoding).
    """
    invert = _resolve_invert(invert)
    if framing not in FRAMINGS:
        raise CnnzooError(f"framing must be one of {', '.join(FRAMINGS)}, got {framing!r}.")
    p = Path(os.fspath(path)).expanduser()
    if not p.exists():
        raise CnnzooError(f"Image file {p} does not exist; check the path.")
    if not p.is_file():
        raise CnnzooError(f"{p} is not a file; give the path of an image file.")
    if p.stat().st_size == 0:
        raise CnnzooError(f"Image file {p} is empty (0 bytes); give a real image file.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(p) as img:
                width, height = img.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise CnnzooError(
                        f"Image file {p} is too large ({width}x{height} pixels, more than the "
                        f"{MAX_IMAGE_PIXELS // 1_000_000} megapixel limit); shrink it first."
                    )
                if width < 1 or height < 1:
                    raise CnnzooError(f"Image file {p} has no pixels ({width}x{height}).")
                if img.format == "JPEG":
                    # Let libjpeg decode at a reduced scale (>= 4x our target, keeps quality).
                    img.draft("L", (_SIZE * 4, _SIZE * 4))
                img.seek(0)
                img.load()
                img = ImageOps.exif_transpose(img)
                gray = to_grayscale_array(img)
    except CnnzooError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise CnnzooError(f"Image file {p} is too large to decode safely ({exc}); shrink it first.") from None
    except UnidentifiedImageError:
        raise CnnzooError(f"{p} is not an image file Pillow can read (PNG, JPEG, BMP, GIF, TIFF, WebP...).") from None
    except MemoryError:
        raise CnnzooError(f"Image file {p} is too large to decode in memory; shrink it first.") from None
    except OSError as exc:
        msg = str(exc)
        if "truncated" in msg.lower():
            raise CnnzooError(f"Image file {p} is truncated ({msg}); the file is incomplete.") from None
        raise CnnzooError(f"Image file {p} could not be read or decoded ({msg}).") from None
    except Exception as exc:  # decoders raise ValueError, SyntaxError, struct.error, ... on damaged files
        raise CnnzooError(f"Image file {p} is damaged and could not be decoded ({type(exc).__name__}: {exc}).") from None
    return _fit(gray, invert, framing)


def _fit(gray: np.ndarray, invert, framing: str) -> torch.Tensor:
    h, w = gray.shape
    if invert == "auto":
        ring = max(1, round(min(h, w) * 0.05))
        border = np.concatenate(
            [gray[:ring].ravel(), gray[-ring:].ravel(), gray[:, :ring].ravel(), gray[:, -ring:].ravel()]
        )
        invert = float(border.mean()) > 127.0
    if invert:
        gray = 255 - gray
    if (h, w) != (_SIZE, _SIZE):
        gray = _frame(_trim(gray), FRAMINGS[framing], centre_of_mass=framing == "mnist")
    return torch.from_numpy(np.ascontiguousarray(gray, dtype=np.uint8).copy()).unsqueeze(0)


def _trim(gray: np.ndarray) -> np.ndarray:
    """The bounding box of the object (pixels above a fifth of the brightest; the darker rest is
    background or compression noise); the whole image when nothing stands out."""
    rows, cols = np.nonzero(gray > max(gray.max() * 0.2, 1))
    if rows.size == 0:
        return gray
    return gray[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


def _frame(gray: np.ndarray, box: int, centre_of_mass: bool) -> np.ndarray:
    """Scale ``gray`` so its longer side is ``box`` pixels and place it on a black 28x28 canvas,
    centred geometrically or by its centre of mass."""
    h, w = gray.shape
    scale = box / max(h, w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    small = np.asarray(
        Image.fromarray(np.ascontiguousarray(gray, dtype=np.uint8)).resize(
            (new_w, new_h), Image.Resampling.LANCZOS, reducing_gap=3.0
        )
    )
    top, left = (_SIZE - new_h) / 2, (_SIZE - new_w) / 2
    mass = small.astype(np.float64)
    if centre_of_mass and mass.sum() > 0:
        # MNIST's centres of mass sit on pixel (14, 14): 13.996 and 14.007 on average over the
        # training set, every one of them within half a pixel.
        top = _SIZE // 2 - (mass.sum(1) * np.arange(new_h)).sum() / mass.sum()
        left = _SIZE // 2 - (mass.sum(0) * np.arange(new_w)).sum() / mass.sum()
    top = int(np.clip(round(top), 0, _SIZE - new_h))
    left = int(np.clip(round(left), 0, _SIZE - new_w))
    canvas = np.zeros((_SIZE, _SIZE), dtype=np.uint8)
    canvas[top : top + new_h, left : left + new_w] = small
    return canvas
