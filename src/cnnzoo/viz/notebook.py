"""What cnnzoo's objects look like in a notebook: HTML fragments and PNG images for their
`_repr_html_` / `_repr_png_` methods, and the text `print` shows.

Fragments are meant to sit inside a notebook page, so their CSS is scoped to a `cz` class (the
report's page-wide styles would restyle the whole notebook) and every value is escaped.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from typing import Any

from matplotlib.figure import Figure

from cnnzoo.train.evaluation import per_class_accuracy

NOTEBOOK_DPI = 80  # sharp at notebook width, small enough to redraw while training

CSS = """<style>
.cz{font:13px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;color:#1d2330;max-width:1100px}
.cz h4{font-size:14px;margin:6px 0 4px}
.cz table{border-collapse:collapse;margin:4px 0 8px}
.cz th,.cz td{padding:2px 8px;border-bottom:1px solid #e3e6eb;text-align:left}
.cz th{background:#f4f6f9}
.cz td.n,.cz th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.cz .cards{display:flex;flex-wrap:wrap;gap:8px;margin:6px 0}
.cz .card{background:#f4f6f9;border-radius:8px;padding:6px 10px;min-width:120px}
.cz .card b{display:block;font-size:18px;overflow-wrap:anywhere}
.cz .card span{color:#5b6475;font-size:12px}
.cz .bar{background:#e3e6eb;border-radius:3px;height:8px;width:100%;min-width:60px}
.cz .bar i{display:block;height:100%;background:#2ca02c;border-radius:3px}
.cz .progress{display:flex;align-items:center;gap:10px;font-variant-numeric:tabular-nums}
.cz .progress .bar{flex:1;max-width:420px;height:12px}
.cz .progress .bar i{background:#1f77b4}
.cz .note{color:#6b4200}
.cz img{max-width:100%;height:auto;display:block}
</style>"""


def escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


def figure_png(fig: Figure, dpi: int = NOTEBOOK_DPI) -> bytes:
    """`fig` as PNG bytes, drawn by matplotlib's Agg canvas (no pyplot, nothing left registered)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    return buffer.getvalue()


def show_figures_inline() -> None:
    """Let a notebook show every matplotlib Figure returned as a cell's last line.

    cnnzoo builds Figures without pyplot (nothing registered, nothing to close, no window). IPython
    learns to draw Figures only when pyplot starts its inline backend, so until then a returned
    Figure showed as `<Figure size ...>`. This teaches the running kernel, once, the same PNG drawing;
    it does nothing outside a kernel and leaves a printer pyplot already installed alone."""
    from cnnzoo.kernel import in_notebook

    if not in_notebook():
        return
    import IPython

    png = IPython.get_ipython().display_formatter.formatters["image/png"]
    try:
        png.lookup_by_type(Figure)
    except KeyError:
        png.for_type(Figure, lambda fig: figure_png(fig, dpi=90))


def img_tag(png: bytes, alt: str) -> str:
    return f'<img src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}" alt="{escape(alt)}">'


def fragment(body: str) -> str:
    return f'{CSS}<div class="cz">{body}</div>'


def percent(value: Any, digits: int = 2) -> str:
    try:
        return f"{float(value) * 100:.{digits}f}%"
    except (TypeError, ValueError):
        return "—"


def html_table(header: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[int] = ()) -> str:
    """A table; columns whose index is in `numeric` align right."""
    def cell(tag: str, index: int, value: Any) -> str:
        align = ' class="n"' if index in numeric else ""
        return f"<{tag}{align}>{escape(value)}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# ---- training history ---------------------------------------------------------------------------

EPOCH_HEADER = ("epoch", "train loss", "train acc", "val acc", "test acc", "time (s)", "images/s")


def epoch_cells(row: dict[str, Any]) -> tuple[str, ...]:
    """One epoch's metrics as people read them."""
    def number(key: str, fmt: str) -> str:
        value = row.get(key)
        return "—" if value in (None, "") else format(float(value), fmt)

    return (str(row.get("epoch", "")), number("train_loss", ".4f"), percent(row.get("train_acc")),
            percent(row.get("val_acc")), percent(row.get("test_acc")), number("time_s", ".1f"),
            number("images_per_s", ",.0f"))


def epoch_table_html(rows: Sequence[dict[str, Any]]) -> str:
    shown = [epoch_cells(r) for r in rows]
    has_val = any(r.get("val_acc") not in (None, "") for r in rows)
    columns = [i for i in range(len(EPOCH_HEADER)) if has_val or EPOCH_HEADER[i] != "val acc"]
    return html_table([EPOCH_HEADER[i] for i in columns], [[r[i] for i in columns] for r in shown],
                      numeric=range(len(columns)))


def epoch_table_text(rows: Sequence[dict[str, Any]]) -> str:
    shown = [epoch_cells(r) for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in shown)) for i, h in enumerate(EPOCH_HEADER)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(EPOCH_HEADER, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in shown]
    return "\n".join(lines)


def history_figure(history, epochs_planned: int | None = None) -> Figure:
    from cnnzoo.viz.plots import training_figure

    return training_figure(history.batch_loss, history.steps_per_epoch, history.rows(), epochs_planned)


def history_bundle(history) -> dict[str, Any]:
    """History's display: its curves (drawn once, shared by the PNG and the HTML) and the epoch table."""
    if not history.epochs:
        return {"text/plain": repr(history),
                "text/html": fragment('<p class="note">No epoch has finished yet: nothing to plot.</p>')}
    png = figure_png(history_figure(history))
    return {
        "text/plain": repr(history),
        "image/png": png,
        "text/html": fragment(img_tag(png, "training curves") + epoch_table_html(history.rows())),
    }


# ---- model summary ------------------------------------------------------------------------------

def summary_html(summary) -> str:
    rows = [(layer.name, layer.kind, str(list(layer.output_shape)), f"{layer.params:,}") for layer in summary.layers]
    totals = [("Total params", f"{summary.total_params:,}"), ("Trainable params", f"{summary.trainable_params:,}"),
              ("Non-trainable params", f"{summary.non_trainable_params:,}"),
              ("Params size (MB)", f"{summary.param_size_mb:.2f}"), ("Mult-adds", f"{summary.mult_adds:,}")]
    title = f"<h4>{escape(summary.model)}, input {escape(list(summary.input_shape))}</h4>"
    return fragment(title + html_table(("layer", "type", "output shape", "params"), rows, numeric=(3,))
                    + html_table(("", ""), totals, numeric=(1,)))


# ---- evaluation ---------------------------------------------------------------------------------

def class_names(classes: Sequence[str], count: int) -> list[str]:
    return list(classes) if len(classes) == count else [str(i) for i in range(count)]


def evaluation_text(accuracy: float, loss: float, confusion: Sequence[Sequence[int]], classes: Sequence[str],
                    split: str = "") -> str:
    """What `cnnzoo evaluate` prints: accuracy, per-class accuracy, the confusion matrix; `split` names
    the split measured in the first line ("test accuracy ...")."""
    names = class_names(classes, len(confusion))
    total = sum(map(sum, confusion))
    measured = f"{split} accuracy" if split else "accuracy"
    lines = [f"{measured} {accuracy * 100:.2f}%  loss {loss:.4f}  ({total} images)", "", "per-class accuracy"]
    width = max(map(len, names))
    lines += [f"  {name:<{width}}  {percent(a, 1):>6}" for name, a in zip(names, per_class_accuracy(confusion))]
    return "\n".join(lines) + "\n\n" + confusion_text(confusion, names)


def confusion_text(confusion: Sequence[Sequence[int]], names: Sequence[str]) -> str:
    """The confusion matrix as text, a heading first; each row ends with its class's name."""
    cell = max(len(str(v)) for row in confusion for v in row) + 1
    lines = ["confusion matrix (rows: true class, columns: predicted)",
             " " * 4 + "".join(f"{j:>{cell}}" for j in range(len(names)))]
    lines += [f"{i:>3} " + "".join(f"{v:>{cell}}" for v in row) + f"   {names[i]}" for i, row in enumerate(confusion)]
    return "\n".join(lines)


def per_class_html(confusion: Sequence[Sequence[int]], names: Sequence[str]) -> str:
    rows = []
    for name, accuracy, row, k in zip(names, per_class_accuracy(confusion), confusion, range(len(names))):
        rows.append(f'<tr><td>{escape(name)}</td><td class="n">{escape(percent(accuracy, 1))}</td>'
                    f'<td class="n">{int(row[k])} / {int(sum(row))}</td>'
                    f'<td style="width:160px"><div class="bar"><i style="width:{accuracy * 100:.1f}%"></i></div></td></tr>')
    return ('<table><thead><tr><th>class</th><th class="n">accuracy</th><th class="n">correct / total</th>'
            f'<th></th></tr></thead><tbody>{"".join(rows)}</tbody></table>')


def evaluation_bundle(accuracy: float, loss: float, confusion: Sequence[Sequence[int]],
                      classes: Sequence[str]) -> dict[str, Any]:
    from cnnzoo.viz.plots import confusion_figure

    names = class_names(classes, len(confusion))
    png = figure_png(confusion_figure(confusion, names))
    total = sum(map(sum, confusion))
    head = (f'<div class="cards"><div class="card"><span>accuracy</span><b>{escape(percent(accuracy))}</b></div>'
            f'<div class="card"><span>loss</span><b>{loss:.4f}</b></div>'
            f'<div class="card"><span>images</span><b>{total:,}</b></div></div>')
    return {
        "text/plain": evaluation_text(accuracy, loss, confusion, names),
        "image/png": png,
        "text/html": fragment(head + "<h4>Accuracy per class</h4>" + per_class_html(confusion, names)
                              + "<h4>Confusion matrix</h4>" + img_tag(png, "confusion matrix")),
    }
