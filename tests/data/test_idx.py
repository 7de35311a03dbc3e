"""The IDX / gzip reader on bytes, including random and hostile input."""

import gzip
import struct

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnzoo.data import IdxFormatError, decode_idx_gz, parse_idx
from cnnzoo.errors import CnnzooError


def test_parse_idx_roundtrip(idx_bytes):
    a = np.random.default_rng(0).integers(0, 256, size=(3, 4, 5), dtype=np.uint8)
    t = parse_idx(idx_bytes(a), expect_magic=2051)
    assert t.dtype == torch.uint8 and t.shape == (3, 4, 5) and np.array_equal(t.numpy(), a)
    assert parse_idx(idx_bytes(np.arange(7)), expect_magic=2049).tolist() == list(range(7))
    assert decode_idx_gz(gzip.compress(b"abc") + gzip.compress(b"def")) == b"abcdef"


@pytest.mark.parametrize(
    "data, match",
    [
        (b"", "only 0 bytes"),
        (b"\x00\x00\x08", "only 3 bytes"),
        (struct.pack(">IIII", 2050, 1, 2, 2) + b"\0" * 4, "wrong magic number 2050 .expected 2051"),
        (struct.pack(">I", 0x00000D03) + b"\0" * 12, "wrong magic number"),
        (struct.pack(">IIII", 2051, 2, 3, 3) + b"\0" * 17, "truncated: its header .2, 3, 3. needs 18"),
        (struct.pack(">IIII", 2051, 2, 3, 3) + b"\0" * 19, "wrong size"),
        (struct.pack(">III", 2051, 2, 3), "truncated: its header needs 16 bytes"),
        (struct.pack(">IIII", 2051, 2**32 - 1, 2**32 - 1, 2**32 - 1), "truncated"),
    ],
)
def test_parse_idx_errors(data, match):
    with pytest.raises(IdxFormatError, match=match) as err:
        parse_idx(data, name="thing.idx", expect_magic=2051)
    assert str(err.value).startswith("thing.idx ")


def test_decode_gz_errors():
    good = gzip.compress(b"x" * 1000)
    with pytest.raises(IdxFormatError, match="is empty"):
        decode_idx_gz(b"", name="f.gz")
    with pytest.raises(IdxFormatError, match="truncated"):
        decode_idx_gz(good[:-4], name="f.gz")
    with pytest.raises(IdxFormatError, match="garbage"):
        decode_idx_gz(good + b"junk", name="f.gz")
    with pytest.raises(IdxFormatError, match="more than 100 bytes"):
        decode_idx_gz(good, name="f.gz", max_bytes=100)
    bad_crc = bytearray(good)
    bad_crc[-8] ^= 0xFF
    with pytest.raises(IdxFormatError, match="damaged gzip"):
        decode_idx_gz(bytes(bad_crc), name="f.gz")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300), st.sampled_from([None, 2049, 2051]), st.booleans())
def test_random_bytes_only_raise_cnnzoo_errors(data, magic, as_gzip):
    if as_gzip:  # sometimes a plausible gzip header, sometimes raw junk
        data = b"\x1f\x8b\x08\x00" + data if data[:1] == b"\x00" else data
        try:
            data = decode_idx_gz(data, name="junk.gz")
        except CnnzooError:
            return
    try:
        out = parse_idx(data, name="junk", expect_magic=magic)
    except CnnzooError:
        return
    assert out.dtype == torch.uint8


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=0, max_size=200), st.integers(0, 2**32 - 1), st.integers(1, 4))
def test_random_idx_headers(payload, dim, ndim):
    data = struct.pack(">BBBB", 0, 0, 8, ndim) + struct.pack(">I", dim) * ndim + payload
    try:
        out = parse_idx(data, name="junk")
    except CnnzooError:
        return
    assert out.numel() == len(payload)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=400))
def test_random_gzip_members(payload):
    """Valid gzip around random content, then damaged at a random spot."""
    blob = bytearray(gzip.compress(payload))
    if len(blob) > 12:
        blob[len(payload) % (len(blob) - 10) + 10] ^= 0x5A
    try:
        parse_idx(decode_idx_gz(bytes(blob), name="junk.gz"), name="junk")
    except CnnzooError:
        pass
