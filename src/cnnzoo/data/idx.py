"""A strict in-memory reader of gzipped IDX files (the format of the MNIST family).

Every malformed input raises :class:`IdxFormatError` (a CnnzooError) naming the file and what is
wrong with it; nothing is extracted to disk, so a read-only folder of ``.gz`` files works as it is.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch

from cnnzoo.errors import CnnzooError

__all__ = ["IDX_IMAGES_MAGIC", "IDX_LABELS_MAGIC", "MAX_IDX_BYTES", "IdxFormatError", "decode_idx_gz", "parse_idx"]

IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned byte, 3 dimensions
IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned byte, 1 dimension
# The largest decompressed IDX file we accept (train images are 47,040,016 bytes): a guard
# against gzip bombs and absurd headers, not a limit anyone should meet with real data.
MAX_IDX_BYTES = 64 * 1024 * 1024
_GZIP_MAGIC = b"\x1f\x8b"


class IdxFormatError(CnnzooError):
    """A file is not the IDX (or gzipped IDX) file it should be; ``reason`` says why."""

    def __init__(self, name: str, reason: str, fix: str | None = None):
        self.name = name
        self.reason = reason
        message = f"{name} {reason}"
        if fix:
            message += f"; {fix}"
        super().__init__(message + ".")


def decode_idx_gz(data: bytes, *, name: str = "<bytes>", max_bytes: int = MAX_IDX_BYTES) -> bytes:
    """Decompress gzip ``data`` fully in memory (checking the CRC and length trailer of every
    member); raises :class:`IdxFormatError` for anything but a complete, valid gzip stream
    whose output is at most ``max_bytes``."""
    data = bytes(data)
    if len(data) == 0:
        raise IdxFormatError(name, "is empty")
    if data[:2] != _GZIP_MAGIC:
        raise IdxFormatError(name, "is not a gzip file (its first bytes are not the gzip signature 1f 8b)")
    out = bytearray()
    decomp = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    pending = data
    while True:
        try:
            chunk = decomp.decompress(pending, max_bytes + 1 - len(out))
        except zlib.error as exc:
            raise IdxFormatError(name, f"is a damaged gzip file ({exc})") from None
        out += chunk
        if len(out) > max_bytes:
            raise IdxFormatError(name, f"decompresses to more than {max_bytes} bytes, far more than any MNIST file")
        if decomp.eof:
            rest = decomp.unused_data
            if not rest:
                break
            if rest[:2] == _GZIP_MAGIC:  # another gzip member follows (allowed by the format)
                decomp = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
                pending = rest
                continue
            raise IdxFormatError(name, f"has {len(rest)} bytes of garbage after the end of its gzip stream")
        if decomp.unconsumed_tail:
            pending = decomp.unconsumed_tail
        elif chunk:
            pending = b""  # output was capped; let zlib continue with what it holds
        else:
            raise IdxFormatError(name, "is truncated (its gzip stream ends early)")
    return bytes(out)


def parse_idx(data: bytes, *, name: str = "<bytes>", expect_magic: int | None = None) -> torch.Tensor:
    """Parse an uncompressed IDX file of unsigned bytes into a uint8 tensor of its shape.

    Checks the magic number (type code 0x08, 1-4 dimensions, or exactly ``expect_magic``) and
    that the data is exactly ``prod(dims)`` bytes long; raises :class:`IdxFormatError`.
    """
    data = memoryview(bytes(data))
    if len(data) < 4:
        raise IdxFormatError(name, f"is not an IDX file: it is only {len(data)} bytes long, shorter than the 4-byte magic number")
    magic = int.from_bytes(data[:4], "big")
    if expect_magic is not None and magic != expect_magic:
        kind = {IDX_IMAGES_MAGIC: "images", IDX_LABELS_MAGIC: "labels"}.get(expect_magic, "this file")
        raise IdxFormatError(name, f"has the wrong magic number {magic} (expected {expect_magic} for {kind})")
    zero, type_code, ndim = int.from_bytes(data[:2], "big"), data[2], data[3]
    if zero != 0 or type_code != 0x08 or not 1 <= ndim <= 4:
        raise IdxFormatError(
            name,
            f"has the wrong magic number {magic} (expected 0x0000080N: unsigned bytes in N = 1 to 4 dimensions)",
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IdxFormatError(name, f"is truncated: its header needs {header} bytes but the file has {len(data)}")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(dims, dtype=object)) if dims else 0
    actual = len(data) - header
    if actual < expected:
        raise IdxFormatError(name, f"is truncated: its header {dims} needs {expected} data bytes but it has {actual}")
    if actual > expected:
        raise IdxFormatError(name, f"has the wrong size: its header {dims} needs {expected} data bytes but it has {actual}")
    array = np.frombuffer(data, dtype=np.uint8, count=expected, offset=header).reshape(dims)
    return torch.from_numpy(array.copy())
