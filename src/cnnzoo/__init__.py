"""cnnzoo: the classic CNNs on Fashion-MNIST and MNIST, built, trained, inspected and compared.

    import cnnzoo
    data = cnnzoo.load_data("fashion-mnist")
    model = cnnzoo.build_model("lenet5")
    history = cnnzoo.fit(model, data, cnnzoo.TrainConfig(model="lenet5", epochs=10, lr=0.9))
    history          # in a notebook: the curves and the epoch table (history.plot() is the Figure)
    cnnzoo.open_run("runs/<name>")   # a run directory's report card
"""

from importlib import import_module

from cnnzoo import display as _display

__version__ = "0.1.0"

_API = {
    "build_model": "cnnzoo.models", "list_models": "cnnzoo.models", "get_model_spec": "cnnzoo.models",
    "summarize": "cnnzoo.models.summary",
    "load_data": "cnnzoo.data", "load_split": "cnnzoo.data", "load_image": "cnnzoo.data",
    "BatchIterator": "cnnzoo.data",
    "TrainConfig": "cnnzoo.train", "fit": "cnnzoo.train", "evaluate": "cnnzoo.train", "predict": "cnnzoo.train",
    "train_run": "cnnzoo.workflows", "resume_run": "cnnzoo.workflows", "load_trained": "cnnzoo.train",
    "History": "cnnzoo.train", "Callback": "cnnzoo.train", "FitState": "cnnzoo.train",
    "EarlyStopping": "cnnzoo.train", "TensorBoardLogger": "cnnzoo.train", "MLflowLogger": "cnnzoo.train",
    "lr_find": "cnnzoo.train", "LRFinderResult": "cnnzoo.train", "CnnzooError": "cnnzoo.errors",
    "open_run": "cnnzoo.viz.run_card",
    "inspect": "cnnzoo.workflows.look_inside",
}

# What train's and models' objects look like, drawn by viz: the layers below viz ask cnnzoo.display
# by name and never import viz; this root, which runs before them, says which viz function draws each.
_display.DRAWN_BY.update({
    "history_figure": "cnnzoo.viz.notebook:history_figure",  # History.plot()
    "history_bundle": "cnnzoo.viz.notebook:history_bundle",  # a History in a notebook
    "history_text": "cnnzoo.viz.notebook:epoch_table_text",  # str(History)
    "evaluation_bundle": "cnnzoo.viz.notebook:evaluation_bundle",
    "evaluation_text": "cnnzoo.viz.notebook:evaluation_text",
    "summary_html": "cnnzoo.viz.notebook:summary_html",
    "lr_find_figure": "cnnzoo.viz.plots:lr_find_figure",  # LRFinderResult.plot()
    "live_progress": "cnnzoo.viz.live:LiveProgress",  # fit's notebook progress (progress "plot" or "auto")
})

__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str):
    # Lazy so that `cnnzoo --help` and `import cnnzoo` stay fast; torch loads on first real use.
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'cnnzoo' has no attribute {name!r}")
