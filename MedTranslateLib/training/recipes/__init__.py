"""Training recipes, one file each, all driven by the one trainer through the `Recipe` interface."""
from __future__ import annotations

import importlib
from typing import Dict, Type

from .base import Recipe, RecipeContext

# recipe name -> module in this package; each module defines the Recipe subclass `RECIPE`
RECIPES: Dict[str, str] = {"cyclegan": "cyclegan", "pix2pix": "pix2pix", "unet_l2": "unet_l2", "medgan": "medgan"}


def get_recipe(name: str) -> Type[Recipe]:
    """The Recipe class called `name`; KeyError for an unknown one."""
    return importlib.import_module(f"{__name__}.{RECIPES[name]}").RECIPE


__all__ = ["RECIPES", "Recipe", "RecipeContext", "get_recipe"]
