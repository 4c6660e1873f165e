"""Image recipes (`images/*.yaml`): what goes into a golden image, validated like lab files."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

from pydantic import Field

from ..errors import XenlabError
from ..spec import Name, StrictModel, default_images_dir, validate_document
from ..yamlfile import load_located

FILES_DIR = Path(__file__).parent / "files"
# Bump when the builder changes what it produces from the same recipe.
BUILDER_VERSION = "3"
# The builder files each kind of image is made with: a change to one rebuilds only those.
FILES_BY_KIND = {
    "debootstrap": ("xenlab-seed.sh", "xenlab-seed.service", "10-mgmt.network", "sshd-xenlab.conf"),
    "initramfs": ("guest-init.sh", "guest-writer.sh", "guest-inittab", "heartbeat.c"),
}


class Recipe(StrictModel):
    name: Name
    kind: Literal["debootstrap", "initramfs"]
    boot: Literal["xen", "linux", "pv"]
    suite: str = "bookworm"
    size_gib: int = Field(4, ge=1, le=64)
    packages: list[str] = Field(default_factory=list)
    mask_units: list[str] = Field(default_factory=list)
    export_modules: list[str] = Field(default_factory=list)
    base: Name | None = None

    def digest(self, base_digest: str = "") -> str:
        """Hash of everything that shapes the image: recipe, builder files, base image."""
        h = hashlib.sha256()
        h.update(self.model_dump_json().encode())
        h.update(BUILDER_VERSION.encode())
        h.update(base_digest.encode())
        for name in FILES_BY_KIND[self.kind]:
            h.update(name.encode())
            h.update((FILES_DIR / name).read_bytes())
        return h.hexdigest()[:16]


def load_recipes(images_dir: Path | None = None) -> dict[str, Recipe]:
    """All recipes of a directory by name; a recipe's file name must match its name."""
    directory = images_dir or default_images_dir()
    if not directory.is_dir():
        raise XenlabError(f"no image recipes: {directory} is not a directory")
    recipes: dict[str, Recipe] = {}
    for path in sorted(directory.glob("*.yaml")):
        recipe = validate_document(Recipe, load_located(path))
        if recipe.name != path.stem:
            raise XenlabError(f"{path}: recipe name {recipe.name!r} does not match the file name")
        recipes[recipe.name] = recipe
    for recipe in recipes.values():
        if recipe.kind == "initramfs" and recipe.base not in recipes:
            raise XenlabError(f"{directory / recipe.name}.yaml: base image {recipe.base!r} has no recipe")
    return recipes
