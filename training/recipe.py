"""A training recipe: every choice that decides a model, read from configs/recipes/NAME.yaml.

One file per shipped model version; `python -m training.train --recipe FILE` trains it and the
file is stored, as read, in the model's metadata. Unknown fields and bad values are one-line
errors naming the file and the field.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from liveness.crop import CROP_BORDERS, CROP_RESIZES
from training.backbone import TOTAL_BLOCKS
from training.data import REPO_ROOT

DEFAULT_RECIPE = REPO_ROOT / "configs" / "recipes" / "2.0.yaml"


class RecipeError(ValueError):
    """A recipe file that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class Recipe:
    """How a liveness model is trained (configs/recipes/*.yaml documents each field)."""

    version: str = "2.0"
    size: int = 96
    scales: list[float] = field(default_factory=lambda: [1.5, 2.7])
    crop_border: str = "fit"
    crop_resize: str = "area"
    levels: list[int] = field(default_factory=lambda: [9, 12])
    l2: float = 1.0
    mask_p: float = 0.5
    jitter: int = 2
    tune_blocks: int = 0
    epochs: int = 0
    samples_per_epoch: int = 2048
    batch_size: int = 32
    learning_rate: float = 3e-4
    seed: int = 7

    def problems(self) -> list[str]:
        """What is wrong with the values, one phrase per field."""
        found = []
        if not 32 <= self.size <= 512:
            found.append(f"size: {self.size} is not in 32..512")
        if not self.scales or any(not (s == 0 or 0.5 <= s <= 8) for s in self.scales):
            found.append(f"scales: {self.scales} must be numbers in 0.5..8, or 0 (a patch of native pixels)")
        if self.crop_border not in CROP_BORDERS:
            found.append(f"crop_border: {self.crop_border!r} is not one of {', '.join(CROP_BORDERS)}")
        if self.crop_resize not in CROP_RESIZES:
            found.append(f"crop_resize: {self.crop_resize!r} is not one of {', '.join(CROP_RESIZES)}")
        if not self.levels or any(not 1 <= level <= TOTAL_BLOCKS for level in self.levels):
            found.append(f"levels: {self.levels} must be block counts in 1..{TOTAL_BLOCKS}")
        if not 0 <= self.tune_blocks <= max(self.levels or [0]):
            found.append(f"tune_blocks: {self.tune_blocks} must be in 0..{max(self.levels or [0])}")
        if self.l2 < 0 or not 0 <= self.mask_p <= 1 or self.learning_rate <= 0:
            found.append("l2 >= 0, mask_p in 0..1 and learning_rate > 0 are required")
        if min(self.jitter, self.epochs) < 0 or min(self.samples_per_epoch, self.batch_size) < 1:
            found.append("jitter and epochs >= 0, samples_per_epoch and batch_size >= 1 are required")
        if self.epochs and not self.tune_blocks:
            found.append("epochs: fine-tuning needs tune_blocks > 0")

        return found

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_recipe(path: Path) -> Recipe:
    """The recipe in a YAML file (RecipeError: 'FILE: field: problem')."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except OSError as error:
        raise RecipeError(f"{path}: cannot read ({error.strerror})") from None
    except yaml.YAMLError as error:
        raise RecipeError(f"{path}: not YAML ({str(error).splitlines()[0]})") from None
    return recipe_from_dict(raw if raw is not None else {}, str(path))


def recipe_from_dict(raw: Any, where: str = "recipe") -> Recipe:
    """A Recipe from a mapping (as stored in a model's metadata), checked like a file."""
    if not isinstance(raw, dict):
        raise RecipeError(f"{where}: must be a mapping of recipe fields")
    known = {f.name: f for f in fields(Recipe)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise RecipeError(f"{where}: {unknown[0]}: unknown field (known: {', '.join(known)})")
    values: dict[str, Any] = {}
    for name, value in raw.items():
        default = getattr(Recipe(), name)
        try:
            if isinstance(default, list):
                kind = type(default[0])
                if not isinstance(value, list):
                    raise TypeError
                values[name] = [kind(v) for v in value]
            elif isinstance(value, bool):
                raise TypeError
            else:
                values[name] = type(default)(value) if not isinstance(default, str) else str(value)
                if isinstance(default, int) and float(value) != int(value):
                    raise TypeError
        except (TypeError, ValueError):
            raise RecipeError(f"{where}: {name}: {value!r} is not a {type(default).__name__}") from None
    recipe = Recipe(**values)
    problems = recipe.problems()
    if problems:
        raise RecipeError(f"{where}: {problems[0]}")
    return recipe
