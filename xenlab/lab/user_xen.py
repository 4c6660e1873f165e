"""The Xen a host runs when its lab file says which (`xen:`, `packages:`, `provision:`, see
xen_spec.py): its image layer made or found (images/userlayer.py), and what it is made of
and where each part came from, for `xenlab status` and the results' inventory."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import XenlabError
from ..images.cache import BuiltImage, ImageCache
from ..images.userlayer import LayerRequest, ensure_packages_image, ensure_user_layer
from ..plan import LabPlan, MachinePlan
from ..waiting import Progress
from ..xen_spec import PVH_TCG_REASON, resolve, user_files


def layer_request(machine: MachinePlan, base: Path) -> LayerRequest:
    """What `machine`'s layer is made of: its lab file's files, resolved from the file's directory."""
    xen, provision = machine.xen, machine.provision
    dom0 = xen.dom0 if xen is not None else None
    return LayerRequest(
        hypervisor=resolve(xen.hypervisor, base) if xen is not None and xen.hypervisor else None,
        tools=resolve(xen.tools, base) if xen is not None and xen.tools else None,
        debs=tuple(resolve(d, base) for d in (xen.debs or [])) if xen is not None else (),
        kernel=resolve(dom0.kernel, base) if dom0 is not None and dom0.kernel else None,
        modules=resolve(dom0.modules, base) if dom0 is not None and dom0.modules else None,
        files=tuple((resolve(s, base), d) for s, d in sorted(provision.files.items())) if provision else (),
        run=tuple(provision.run) if provision else (),
        digests=tuple((f.role, f.digest) for f in user_files(xen, provision, base)),
    )


def ensure_host_images(plan: LabPlan, built: dict[str, BuiltImage], cache: ImageCache, base: Path,
                       progress: Progress) -> dict[str, BuiltImage]:
    """`MachinePlan.image_key` -> the layer it boots, for every host with one of its own."""
    found: dict[str, BuiltImage] = {}
    for machine in plan.hosts:
        if not machine.own_layer:
            continue
        image = built[machine.image]
        if machine.packages:
            image = ensure_packages_image(cache, machine.image, machine.packages, progress)
        found[machine.image_key] = ensure_user_layer(image, layer_request(machine, base), progress, machine.name)
    return found


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def provenance(image_dir: Path) -> dict:
    """Where a host's hypervisor and dom0 kernel came from and the digests of the user's files,
    from the image (or layer) directory it boots."""
    manifest = {}
    try:
        manifest = json.loads((image_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        pass
    if "+user-" not in image_dir.name:
        name = manifest.get("name", image_dir.name)
        return {"xen_origin": f"image {name} ({_read(image_dir / 'xen-version')} from Debian's packages)",
                "dom0_kernel_origin": f"image {name} ({_read(image_dir / 'kernel-version')})", "user_files": []}
    return {"xen_origin": _read(image_dir / "xen-origin"), "dom0_kernel_origin": _read(image_dir / "kernel-origin"),
            "layer": image_dir.name, "user_files": list(manifest.get("files", []))}


def refuse_pvh_dom0_under_tcg(plan: LabPlan, accel: str) -> None:
    """A lab file that asks for a PVH dom0 says `accel: kvm` (xen_spec checks it); `up --accel tcg`
    would still pick TCG: refused here, before anything starts."""
    pvh = [m.name for m in plan.hosts if m.dom0_mode == "pvh"]
    if pvh and accel == "tcg":
        raise XenlabError(f"{', '.join(pvh)}: dom0 mode pvh under TCG: {PVH_TCG_REASON}")
