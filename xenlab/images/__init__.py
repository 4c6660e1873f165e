"""Golden host images built from Debian packages, cached by recipe hash; per-host identity."""

from .cache import BuiltImage, ImageCache
from .recipes import Recipe, load_recipes

__all__ = ["BuiltImage", "ImageCache", "Recipe", "load_recipes"]
