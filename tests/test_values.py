"""The shared type checks: a bool is never a count or a number, whatever Python's int says."""

import math

import numpy as np
import pytest

from cnnzoo.values import is_number, is_whole


@pytest.mark.parametrize("value, whole, number", [
    (0, True, True), (-3, True, True), (2**70, True, True), (True, False, False), (False, False, False),
    (1.0, False, True), (math.nan, False, True), (math.inf, False, True), ("1", False, False), (None, False, False),
    ([1], False, False), (np.int64(1), False, False),
])
def test_whole_numbers_and_numbers_are_never_bools(value, whole, number):
    assert (is_whole(value), is_number(value)) == (whole, number)
