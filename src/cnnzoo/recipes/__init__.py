"""Recipes: named, shipped training settings (TOML), each a TrainConfig plus what to expect of it.

A recipe file has top-level `description`, `expected_accuracy` (Fashion-MNIST or MNIST test
accuracy, a fraction), `expected_time` (free text, with the device) and a `[train]` table whose
keys are TrainConfig fields. A recipe that reproduces published work also has
`published_accuracy` (a fraction) and `published` (who published it, in what setting); the
course recipes (`*-course`, `lenet5-keras`) run the material's procedures exactly as written, and
their `fast_path = false` turns every fast-path piece off (fp32, eager), as the material runs.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from importlib import resources

from cnnzoo.errors import CnnzooError
from cnnzoo.train.config import NO_FAST_PATH, TrainConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_META = ("description", "expected_accuracy", "measured", "expected_time", "published_accuracy", "published",
         "fast_path", "train")


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    expected_accuracy: float | None
    expected_time: str
    config: TrainConfig
    measured: bool = False  # expected_accuracy is a measured mean (docs/RESULTS.md), not a target
    published_accuracy: float | None = None  # what the material (or the book it follows) reports
    published: str = ""  # where that number comes from


def list_recipes() -> list[str]:
    return sorted(p.name[: -len(".toml")] for p in resources.files(__package__).iterdir() if p.name.endswith(".toml"))


def load_recipe(name: str) -> Recipe:
    names = list_recipes()
    if name not in names:
        raise CnnzooError(f"Unknown recipe {name!r}; choose one of: {', '.join(names)}.")
    text = resources.files(__package__).joinpath(f"{name}.toml").read_text(encoding="utf-8")
    return parse_recipe(name, text)


def parse_recipe(name: str, text: str) -> Recipe:
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise CnnzooError(f"Recipe {name!r} is not valid TOML ({error}).") from None
    unknown = sorted(set(values) - set(_META))
    if unknown:
        raise CnnzooError(f"Recipe {name!r} has unknown top-level key(s) {', '.join(unknown)}; "
                          f"allowed: {', '.join(_META)}.")
    train = values.get("train", {})
    bad = sorted(set(train) - set(TrainConfig.field_names()))
    if bad:
        raise CnnzooError(f"Recipe {name!r} has unknown [train] field(s) {', '.join(bad)}; "
                          f"valid fields: {', '.join(TrainConfig.field_names())}.")
    fast_path = values.get("fast_path", True)
    if not isinstance(fast_path, bool):
        raise CnnzooError(f"Recipe {name!r} has fast_path = {fast_path!r}; it must be true or false.")
    if not fast_path:
        both = sorted(set(train) & set(NO_FAST_PATH))
        if both:
            raise CnnzooError(f"Recipe {name!r} has fast_path = false and sets {', '.join(both)} in [train] too; "
                              "keep one of them.")
        train = {**train, **NO_FAST_PATH}
    config = TrainConfig.from_dict({**train, "recipe": name}).validate()
    return Recipe(name=name, description=values.get("description", ""),
                  expected_accuracy=values.get("expected_accuracy"), expected_time=values.get("expected_time", ""),
                  config=config, measured=bool(values.get("measured", False)),
                  published_accuracy=values.get("published_accuracy"), published=values.get("published", ""))


def recipe_for(model: str, dataset: str) -> Recipe | None:
    """The shipped recipe named `<model>-<dataset>`, which `cnnzoo train --model` uses as its defaults."""
    name = f"{model}-{dataset}"
    return load_recipe(name) if name in list_recipes() else None
