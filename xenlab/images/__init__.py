"""Golden host images built from Debian packages, cached by recipe hash; per-host identity."""

from .cache import ImageCache, BuiltImage
from .recipes import Recipe, load_recipes

__all__ = ["ImageCache", "BuiltImage", "Recipe", "load_recipes"]
