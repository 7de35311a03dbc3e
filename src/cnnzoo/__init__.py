"""cnnzoo: the classic CNNs on Fashion-MNIST and MNIST, built, trained, inspected and compared.

    import cnnzoo
    data = cnnzoo.load_data("fashion-mnist")
    model = cnnzoo.build_model("lenet5")
    history = cnnzoo.fit(model, data, cnnzoo.TrainConfig(model="lenet5", epochs=10, lr=0.9))
    history          # in a notebook: the curves and the epoch table (history.plot() is the Figure)
    cnnzoo.open_run("runs/<name>")   # a run directory's report card
"""

from importlib import import_module

__version__ = "0.1.0"

_API = {
    "build_model": "cnnzoo.models", "list_models": "cnnzoo.models", "get_model_spec": "cnnzoo.models",
    "summarize": "cnnzoo.models.summary",
    "load_data": "cnnzoo.data", "load_split": "cnnzoo.data", "load_image": "cnnzoo.data",
    "BatchIterator": "cnnzoo.data",
    "TrainConfig": "cnnzoo.train", "fit": "cnnzoo.train", "evaluate": "cnnzoo.train", "predict": "cnnzoo.train",
    "train_run": "cnnzoo.workflows", "resume_run": "cnnzoo.workflows", "load_trained": "cnnzoo.workflows",
    "History": "cnnzoo.train", "Callback": "cnnzoo.train", "FitState": "cnnzoo.train",
    "EarlyStopping": "cnnzoo.train", "TensorBoardLogger": "cnnzoo.train", "MLflowLogger": "cnnzoo.train",
    "lr_find": "cnnzoo.train", "LRFinderResult": "cnnzoo.train", "CnnzooError": "cnnzoo.errors",
    "open_run": "cnnzoo.viz.run_card",
}

__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str):
    # Lazy so that `cnnzoo --help` and `import cnnzoo` stay fast; torch loads on first real use.
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'cnnzoo' has no attribute {name!r}")
