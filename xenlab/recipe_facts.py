"""What the image recipes (`images/*.yaml`) declare, as far as a lab file's validation
needs it: each image's boot kind and the guest types a Xen image can run.

Read here, below the image builder, so that a lab file is checked against its images
without building them; `images.load_recipes` validates the recipes themselves.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, get_args

from .errors import SpecError
from .yamlfile import load_located

HOST_BOOT, SERVICES_BOOT = "xen", "linux"  # what an image recipe's `boot` must be for each role
# How a guest is virtualized: PV (paravirtualized kernel, no hardware virtualization), PVH
# (PV drivers in an HVM container, no device model) or HVM (full emulation with a device
# model in dom0). A Xen host image declares which of them it can run.
GuestType = Literal["pv", "pvh", "hvm"]
GUEST_TYPES: tuple[str, ...] = get_args(GuestType)
DEFAULT_GUEST_TYPES: tuple[str, ...] = ("pv",)  # a Xen image that declares nothing runs PV guests


def default_images_dir() -> Path:
    """XENLAB_IMAGES, else ./images, else the images/ of the source tree xenlab runs from."""
    env = os.environ.get("XENLAB_IMAGES")
    if env:
        return Path(env)
    here = Path.cwd() / "images"
    if here.is_dir():
        return here
    return Path(__file__).resolve().parents[1] / "images"


def runnable_guest_types(declared: tuple[str, ...], virt_caps: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The guest types a host runs: what its image declares, as far as Xen's `virt_caps`
    allow (PVH and HVM need `hvm`: hardware virtualization, nested here). Unknown caps
    (a host not asked yet) leave the declaration as it is."""
    if not virt_caps:
        return declared
    needs = {"pv": "pv", "pvh": "hvm", "hvm": "hvm"}
    return tuple(t for t in declared if needs[t] in virt_caps)


def _recipe_documents(images_dir: Path | None) -> dict[str, dict]:
    directory = images_dir or default_images_dir()
    found: dict[str, dict] = {}
    for path in sorted(directory.glob("*.yaml")) if directory.is_dir() else []:
        try:
            data = load_located(path).data
        except SpecError:
            continue
        if isinstance(data, dict):
            found[path.stem] = data
    return found


def image_boots(images_dir: Path | None = None) -> dict[str, str]:
    """Recipe name -> its `boot` (xen, linux, pv), for the recipes of the images directory.

    A recipe that cannot be read is left out here; `images.load_recipes` reports it.
    """
    return {name: data["boot"] for name, data in _recipe_documents(images_dir).items()
            if isinstance(data.get("boot"), str)}


def image_guest_types(images_dir: Path | None = None) -> dict[str, tuple[str, ...]]:
    """Xen image name -> the guest types it declares it can run (`guest_types` in its recipe).

    Only known type names are kept; `images.load_recipes` refuses a recipe with others.
    """
    found: dict[str, tuple[str, ...]] = {}
    for name, data in _recipe_documents(images_dir).items():
        if data.get("boot") != HOST_BOOT:
            continue
        declared = data.get("guest_types")
        if not isinstance(declared, list):
            found[name] = DEFAULT_GUEST_TYPES
        else:
            found[name] = tuple(t for t in GUEST_TYPES if t in declared)
    return found
