"""How the CLI prints: one aligned table and one short form of big numbers, for every command."""

from __future__ import annotations


def human(n: int | float) -> str:
    if n < 1e3:
        return str(int(n))
    for unit, size in (("K", 1e3), ("M", 1e6), ("G", 1e9)):
        # Judged after rounding: 999,999 is "1.00M", never "1000.00K".
        text = f"{n / size:.2f}"
        if float(text) < 1000 or unit == "G":
            return f"{text}{unit}"


def print_table(header, rows, right=()) -> None:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]

    def line(values):
        return "  ".join(str(v).rjust(w) if i in right else str(v).ljust(w)
                         for i, (v, w) in enumerate(zip(values, widths))).rstrip()

    print(line(header))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row))
