"""Image recipes (`images/*.yaml`): what goes into a golden image, validated like lab files."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from ..errors import XenlabError
from ..recipe_facts import DEFAULT_GUEST_TYPES, GuestType, default_images_dir
from ..spec import Name
from ..validation import StrictModel, validate_document
from ..yamlfile import load_located

FILES_DIR = Path(__file__).parent / "files"
# Bump when the builder changes what it produces from the same recipe.
BUILDER_VERSION = "7"
# The builder files each kind of image is made with: a change to one rebuilds only those.
FILES_BY_KIND = {
    "debootstrap": ("xenlab-seed.sh", "xenlab-seed.service", "10-mgmt.network", "sshd-xenlab.conf", "boot-init.sh",
                    "xenlab-dom0-weight.service"),
    "initramfs": ("guest-init.sh", "guest-writer.sh", "guest-inittab", "heartbeat.c", "traffic.c"),
}


class Recipe(StrictModel):
    name: Name
    kind: Literal["debootstrap", "initramfs"]
    boot: Literal["xen", "linux", "pv"]
    suite: str = "bookworm"
    size_gib: int = Field(4, ge=1, le=64)
    packages: list[str] = Field(default_factory=list)
    mask_units: list[str] = Field(default_factory=list)
    disable_units: list[str] = Field(
        default_factory=list, description="units installed but not started at boot (started on demand, e.g. the "
        "cluster stack by form_pool): their enablement links are removed, they are not masked")
    export_modules: list[str] = Field(default_factory=list)
    base: Name | None = None
    guest_types: list[GuestType] | None = Field(
        None, description="a Xen image: the guest types it can run (default: pv); hvm needs a device model")

    @model_validator(mode="after")
    def _guest_types_fit(self) -> Recipe:
        if self.guest_types is not None:
            if self.boot != "xen":
                raise ValueError(f"guest_types is for Xen host images (boot: xen); this image boots {self.boot}")
            if not self.guest_types:
                raise ValueError("guest_types is empty: a Xen host runs at least pv guests")
            if "hvm" in self.guest_types and "qemu-system-xen" not in self.packages:
                raise ValueError("hvm guests need a device model in dom0: add qemu-system-xen to packages")
        return self

    @property
    def runs(self) -> tuple[str, ...]:
        """The guest types a Xen host of this image runs."""
        return tuple(self.guest_types) if self.guest_types is not None else DEFAULT_GUEST_TYPES

    def digest(self, base_digest: str = "") -> str:
        """Hash of everything that shapes the image: recipe, builder files, base image.
        (`guest_types` declares what the image can do; it does not shape it.)"""
        h = hashlib.sha256()
        # disable_units came later: left out while empty, so older recipes keep their digests
        unshaping = {"guest_types"} | (set() if self.disable_units else {"disable_units"})
        h.update(self.model_dump_json(exclude=unshaping).encode())
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
