"""The CLI's one table layout and its short form of big numbers, checked against hand-written output."""

import pytest

from cnnzoo.cli.format import human, print_table


@pytest.mark.parametrize("n, text", [
    (0, "0"), (7, "7"), (999, "999"), (999.7, "999"),  # below a thousand: the whole number, no unit
    (1_000, "1.00K"), (61_706, "61.71K"), (44_878, "44.88K"),
    (1_000_000, "1.00M"), (11_689_512, "11.69M"), (138_357_544, "138.36M"),
    (1_000_000_000, "1.00G"), (15_470_264_320, "15.47G"), (2.5e12, "2500.00G"),  # G is the largest unit
])
def test_human_picks_the_largest_unit_with_two_decimals(n, text):
    assert human(n) == text


@pytest.mark.parametrize("n, text", [(999_999, "1.00M"), (999_999_000, "1.00G"), (999_994, "999.99K")])
def test_human_never_prints_a_thousand_of_a_unit(n, text):
    # Rounding to two decimals can reach 1000 of a unit; that is the next unit's 1.00.
    assert human(n) == text


def test_columns_are_as_wide_as_their_widest_cell_and_right_columns_align_right(capsys):
    rows = [("lenet5", f"{61_706:,}", human(421_642)), ("vgg16", f"{138_357_544:,}", human(15_470_264_320))]
    print_table(("model", "params", "mult-adds"), rows, right=(1, 2))
    assert capsys.readouterr().out.splitlines() == [
        "model        params  mult-adds",
        "------  -----------  ---------",
        "lenet5       61,706    421.64K",
        "vgg16   138,357,544     15.47G",
    ]


def test_the_header_can_be_the_widest_cell_and_cells_need_not_be_strings(capsys):
    print_table(("name", "classes"), [("a", 10), ("bb", 1000)], right=(1,))
    assert capsys.readouterr().out.splitlines() == [
        "name  classes",
        "----  -------",
        "a          10",
        "bb       1000",
    ]


def test_no_line_ends_in_spaces_even_with_a_short_last_column(capsys):
    print_table(("class", "note"), [("T-shirt/top", ""), ("Bag", "best")])
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["class        note", "-----------  ----", "T-shirt/top", "Bag          best"]
    assert not any(line.endswith(" ") for line in lines)


def test_an_empty_table_is_its_header_and_rule(capsys):
    print_table(("recipe", "accuracy"), [], right=(1,))
    assert capsys.readouterr().out == "recipe  accuracy\n------  --------\n"
