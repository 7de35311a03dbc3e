"""One self-contained HTML page per run: config, model summary, curves and evaluation.

Images are embedded as data URIs and the styling is inline, so the file can be mailed,
attached to an issue or opened offline and shows the same everywhere.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from cnnzoo.atomic import atomic_target
from cnnzoo.errors import CnnzooError
from cnnzoo.train.config import DEFAULT_MOMENTUM, OPTIONS, TrainConfig, model_from_config
from cnnzoo.train.rundir import RunDir
from cnnzoo.viz.notebook import class_names, escape, img_tag, per_class_html, percent
from cnnzoo.viz.plots import plot_run
from cnnzoo.viz.report_inside import inside_section
from cnnzoo.viz.run_card import Fact, image_counts, run_facts

_CSS = """
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
  color:#1d2330;background:#f4f6f9}
main{max-width:1100px;margin:0 auto;padding:12px}
header h1{font-size:1.5rem;margin:.3em 0 .1em;overflow-wrap:anywhere}
header p{margin:0;color:#5b6475;overflow-wrap:anywhere}
section{background:#fff;border-radius:10px;padding:14px;margin:14px 0;box-shadow:0 1px 3px rgba(0,0,0,.08)}
h2{font-size:1.15rem;margin:0 0 .6em}
h3{font-size:1rem;margin:1em 0 .4em}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:10px;margin-top:14px}
.card{background:#fff;border-radius:10px;padding:10px 12px;box-shadow:0 1px 3px rgba(0,0,0,.08)}
.card .v{display:block;font-size:1.35rem;font-weight:700;overflow-wrap:anywhere}
.card .k{color:#5b6475;font-size:.85rem}
img{display:block;max-width:100%;height:auto;margin:8px auto}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{padding:4px 8px;border-bottom:1px solid #e3e6eb;text-align:left;vertical-align:top}
th{background:#f4f6f9}
.num,.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.kv td:first-child{white-space:nowrap;color:#5b6475}
.kv td:last-child{overflow-wrap:anywhere}
pre{margin:0;font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.bar{background:#e3e6eb;border-radius:3px;height:8px;min-width:60px;margin-top:6px}
.bar i{display:block;height:100%;background:#2ca02c;border-radius:3px}
.note{color:#6b4200;background:#fff6e5;padding:8px 10px;border-radius:6px}
"""

_CURVES = (("loss", "Training loss per batch"), ("accuracy", "Accuracy per epoch"), ("lr", "Learning rate"))


def _stale(run: RunDir, evaluation: dict | None) -> bool:
    """Whether a figure is missing or older than the data it is drawn from."""
    sources = [p for p in (run.metrics_path, run.batch_loss_path, run.evaluation_path) if p.is_file()]
    newest = max((p.stat().st_mtime for p in sources), default=0.0)
    wanted = [run.plot_path("accuracy"), run.plot_path("lr")]
    if run.batch_loss_path.is_file():
        wanted.append(run.plot_path("loss"))
    if evaluation is not None:
        wanted.append(run.plot_path("confusion"))
        if evaluation.get("misclassified"):
            wanted.append(run.plot_path("misclassified"))
    return any(not p.is_file() or p.stat().st_mtime < newest for p in wanted)


def _model_summary(config: dict[str, Any], train_config: TrainConfig) -> str:
    """The Keras-like summary of the run's model, rebuilt from config.json on the meta device."""
    try:
        import torch

        from cnnzoo.data import InputSpec
        from cnnzoo.models import get_model_spec, summarize

        name = config["model"]
        spec = get_model_spec(name)
        input_shape = tuple(config.get("input_shape") or (spec.input_shape[0], *InputSpec.from_config(config).input_size))
        classes = config.get("classes")
        with torch.device("meta"):  # the weights are not needed, only the layers and shapes
            model = model_from_config(train_config, len(classes) if classes else spec.num_classes)
        summary = str(summarize(model, input_shape))
    except Exception as exc:  # noqa: BLE001 - whatever broke, the rest of the report is still worth having
        return f'<p class="note">The model could not be rebuilt from config.json to summarize it: {escape(exc)}</p>'
    return f'<div class="scroll"><pre>{escape(summary)}</pre></div>'


# config.json's fields that have no flag of their own (described, or set through another flag), by the
# section a reader looks in; every setting with a flag is listed in its flag's section (Option.group).
_NO_FLAG_SECTIONS = {"model_options": "what to train", "input_shape": "what to train", "num_params": "what to train",
                     "normalize_mean": "data", "normalize_std": "data", "finetune_from": "fine-tuning",
                     "world_size": "execution", "runtime": "execution",
                     "created": "provenance", "versions": "provenance"}
_SECTIONS = tuple(dict.fromkeys([option.group for option in OPTIONS.values()] + [*_NO_FLAG_SECTIONS.values(), "other"]))
# Shown elsewhere in the report (classes: the per-class table) or meaningless for the optimizer used.
_HIDDEN = ("classes",)


def _shown_config(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The config's meaningful fields by group: no nulls or empty values, no settings the run did not use."""
    def meaningful(key: str, value: Any) -> bool:
        if value is None or value == {} or value == [] or key in _HIDDEN:
            return False
        if key in ("momentum", "nesterov") and config.get("optimizer") not in DEFAULT_MOMENTUM:
            return False
        if key in ("sync_bn", "world_size") and (config.get("world_size") or 1) == 1:
            return False
        return not (key == "head_epochs" and not config.get("finetune_from"))

    grouped: dict[str, dict[str, Any]] = {section: {} for section in _SECTIONS}
    for key, value in config.items():
        if meaningful(key, value):
            section = OPTIONS[key].group if key in OPTIONS else _NO_FLAG_SECTIONS.get(key, "other")
            grouped[section][key] = value
    return {group: values for group, values in grouped.items() if values}


def _config_value(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {_config_value(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "×".join(map(str, value)) if all(isinstance(v, int) for v in value) else json.dumps(value)
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int):
        return f"{value:,}" if value >= 10_000 else str(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _config_tables(config: dict[str, Any]) -> str:
    parts = []
    for group, values in _shown_config(config).items():
        rows = "".join(f"<tr><td>{escape(k)}</td><td>{escape(_config_value(v))}</td></tr>" for k, v in values.items())
        parts.append(f'<h3>{escape(group)}</h3><div class="scroll"><table class="kv"><tbody>{rows}</tbody></table></div>')
    return "".join(parts)


# metrics.csv keeps full precision for machines; people read a few significant digits.
_CELL_FORMATS = {
    "train_loss": "{:.4f}", "train_acc": "{:.2%}", "val_acc": "{:.2%}", "test_acc": "{:.2%}",
    "lr": "{:.3g}", "time_s": "{:.1f}", "images_per_s": "{:,.0f}",
}


def _cell(column: str, value: int | float | None) -> str:
    if value is None:
        return ""
    return _CELL_FORMATS[column].format(value) if column in _CELL_FORMATS else str(value)


def _metrics_table(rows: list[dict[str, int | float | None]], counts: dict[str, int]) -> str:
    if not rows:
        return '<p class="note">No epoch has finished yet (metrics.csv is empty).</p>'
    # A column no epoch filled (val_acc without --val-split) says nothing.
    columns = [c for c in rows[0] if any(r.get(c) is not None for r in rows)]
    head = "".join(f'<th class="num">{escape(c)}</th>' for c in columns)
    body = "".join("<tr>" + "".join(f'<td class="num">{escape(_cell(c, r.get(c)))}</td>' for c in columns) + "</tr>"
                   for r in rows)
    measured = "; ".join(f"{column} on {counts[split]:,} {split} images" for column, split in
                         (("train_acc", "train"), ("val_acc", "val"), ("test_acc", "test"))
                         if column in columns and split in counts)
    note = f'<p class="k">{escape(measured)}.</p>' if measured else ""
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>{note}'


def _loss(value: Any) -> str:
    try:
        return f"{float(value):.4f}"
    except (TypeError, ValueError):
        return "—"


def _card(fact: Fact) -> str:
    value = f' data-value="{escape(fact.value)}"' if fact.value is not None else ""
    return (f'<div class="card"><span class="k">{escape(fact.label)}</span>'
            f'<span class="v" id="{escape(fact.name)}"{value}>{escape(fact.text)}</span></div>')


def render_report(run_dir: str | os.PathLike) -> str:
    """The report's HTML text; draws the run's figures first when they are missing or stale."""
    run_dir = Path(run_dir)
    run = RunDir(run_dir)
    if not run.config_path.is_file():
        raise CnnzooError(f"{str(run_dir)!r} has no {run.CONFIG}; pass a run directory written by `cnnzoo train`.")
    train_config, config = run.read_config()
    # Every file goes through the run directory's checked readers: a damaged one is one sentence.
    evaluation = run.read_evaluation() if run.evaluation_path.is_file() else None
    metrics = run.read_metrics() if run.metrics_path.is_file() else []
    if run.batch_loss_path.is_file():
        run.read_batch_loss()
    has_curves = run.metrics_path.is_file() or run.batch_loss_path.is_file()
    if has_curves and _stale(run, evaluation):
        plot_run(run_dir)

    counts = image_counts(evaluation)
    cards = [_card(fact) for fact in run_facts(train_config, config, metrics, evaluation)]

    model, dataset = config.get("model", "?"), config.get("dataset", "?")
    sections = [f'<section><h2>Metrics per epoch</h2>{_metrics_table(metrics, counts)}</section>']
    curves = "".join(f"<h3>{escape(title)}</h3>{img_tag(run.plot_path(kind).read_bytes(), title)}"
                     for kind, title in _CURVES if run.plot_path(kind).is_file())
    sections.append(f"<section><h2>Curves</h2>{curves or '<p class=note>No curves yet.</p>'}</section>")
    if evaluation is not None:
        split = evaluation.get("split", "test")
        confusion = evaluation["confusion"]
        names = class_names(evaluation.get("classes") or [], len(confusion))
        parts = [(f"<p>{escape(split)} accuracy <strong>{escape(percent(evaluation.get('accuracy')))}"
                  f"</strong>{escape(' on ' + format(counts[split], ',') + ' images' if split in counts else '')}, "
                  f"loss {escape(_loss(evaluation.get('loss')))}</p>"),
                 "<h3>Accuracy per class</h3>", f'<div class="scroll">{per_class_html(confusion, names)}</div>']
        if run.plot_path("confusion").is_file():
            parts += ["<h3>Confusion matrix</h3>", img_tag(run.plot_path("confusion").read_bytes(), "confusion matrix")]
        if run.plot_path("misclassified").is_file():
            parts += ["<h3>Most confident mistakes</h3>", img_tag(run.plot_path("misclassified").read_bytes(),
                                                                       "misclassified examples")]
        elif evaluation.get("misclassified"):
            parts.append('<p class="note">The misclassified images could not be drawn: the data set was not found '
                         "on this machine (see config.json's data_dir).</p>")
        sections.append(f"<section><h2>Evaluation</h2>{''.join(parts)}</section>")
    else:
        sections.append('<section><h2>Evaluation</h2><p class="note">No evaluation.json yet: the run is '
                        f"still training or was stopped; <code>cnnzoo train --resume {escape(run_dir)}</code> continues "
                        "or finishes it.</p></section>")
    sections.append(inside_section(run, evaluation))
    sections.append(f"<section><h2>Model</h2>{_model_summary(config, train_config)}</section>")
    sections.append(f"<section><h2>Configuration</h2>{_config_tables(config)}</section>")

    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(model)} on {escape(dataset)} — cnnzoo report</title>
<link rel="icon" href="data:,">
<style>{_CSS}</style>
</head>
<body>
<main>
<header><h1>{escape(model)} on {escape(dataset)}</h1><p>run {escape(run_dir.name)}{
    " · " + escape(config["created"]) if config.get("created") else ""}</p></header>
<div class="cards">{''.join(cards)}</div>
{''.join(sections)}
</main>
</body>
</html>
"""


def write_report(run_dir: str | os.PathLike, path: str | os.PathLike | None = None) -> Path:
    """Write the run's self-contained HTML report (default ``<run_dir>/report.html``)."""
    run = RunDir(run_dir)
    path = Path(path) if path is not None else run.report_path
    text = render_report(run_dir)
    with atomic_target(path, also_intact=run.disk_full_note(path)) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path
