"""How the CLI prints: one aligned table and one short form of big numbers, for every command."""

from __future__ import annotations


def human(n: int | float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(int(n))


def print_table(header, rows, right=()) -> None:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]

    def line(values):
        return "  ".join(str(v).rjust(w) if i in right else str(v).ljust(w)
                         for i, (v, w) in enumerate(zip(values, widths))).rstrip()

    print(line(header))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row))
