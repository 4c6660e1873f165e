"""The CLI's cache commands: golden images and warm lab states (a face, like cli.py)."""

from __future__ import annotations

import json
import time

import click
from rich.markup import escape
from rich.table import Table

from .cli_output import _timed_progress, console, out


def _mib(size: int | None) -> str:
    return f"{size / 2**20:.0f} MiB" if size else "-"


def _ago(at: float) -> str:
    seconds = max(0.0, time.time() - at)
    for unit, span in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= span:
            return f"{seconds / span:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


@click.group()
def images() -> None:
    """Golden images built from the recipes in images/."""


@images.command("list")
@click.option("--json", "as_json", is_flag=True)
def images_list(as_json: bool) -> None:
    from .images import ImageCache

    cache = ImageCache()
    rows = []
    for name, digest, built in cache.list():
        rows.append({"name": name, "digest": digest, "built": built is not None,
                     "path": str(built.directory) if built else None,
                     "size_bytes": built.size_bytes() if built else None,
                     "build_seconds": built.build_seconds if built else None})
    if as_json:
        out.print_json(json.dumps({"schema": "xenlab.images/1", "cache": str(cache.cache_dir), "images": rows}))
        return
    table = Table("image", "digest", "state", "size", "built in", box=None)
    for r in rows:
        size = f"{r['size_bytes'] / 2**20:.0f} MiB" if r["size_bytes"] else "-"
        table.add_row(r["name"], r["digest"], "cached" if r["built"] else "not built", size,
                      f"{r['build_seconds']:.0f}s" if r["build_seconds"] else "-")
    out.print(table)
    stale = cache.stale_entries()
    if stale:
        out.print(f"{len(stale)} stale cache entries; `xenlab images prune` removes them")


@images.command("build")
@click.argument("names", nargs=-1)
@click.option("--force", is_flag=True, help="rebuild even if the cached image is current")
def images_build(names: tuple[str, ...], force: bool) -> None:
    """Build NAMES (default: every recipe)."""
    from .images import ImageCache

    cache = ImageCache()
    progress = _timed_progress()
    for name in names or sorted(cache.recipes):
        image = cache.ensure(name, force=force, progress=progress)
        console.print(f"{escape(name)}: {escape(str(image.directory))}")


@images.command("prune")
def images_prune() -> None:
    """Remove cached images whose recipe changed or is gone."""
    from .images import ImageCache

    removed = ImageCache().prune()
    console.print(f"removed {len(removed)} stale images" + "".join(f"\n  {p}" for p in removed))


@click.group()
def cache() -> None:
    """What xenlab keeps between runs: golden images and warm lab states."""


@cache.command("list")
@click.option("--json", "as_json", is_flag=True, help="machine-readable (schema xenlab.cache/1)")
def cache_list(as_json: bool) -> None:
    """Images and warm lab states, with sizes and ages; which ones a running lab uses."""
    from .images import ImageCache
    from .lab.warm import WarmCache, cache_limit_bytes

    images = ImageCache()
    states = WarmCache()
    used = states.in_use()
    image_rows = [{"name": name, "digest": digest, "path": str(built.directory), "size_bytes": built.size_bytes(),
                   "built_at": built.built_at} for name, digest, built in images.list() if built]
    state_rows = [{"lab": e.lab, "key": e.key, "path": str(e.dir), "size_bytes": e.size_bytes(),
                   "created_at": e.created_at, "last_used": e.last_used, "in_use": e.dir in used,
                   "problems": e.problems()} for e in states.entries()]
    if as_json:
        out.print_json(json.dumps({"schema": "xenlab.cache/1", "images": image_rows, "lab_states": state_rows,
                                   "stale_images": [str(p) for p in images.stale_entries()],
                                   "lab_state_limit_bytes": cache_limit_bytes()}))
        return
    table = Table("kind", "name", "size", "age", "last used", "", box=None)
    for r in image_rows:
        table.add_row("image", escape(f"{r['name']}-{r['digest'][:12]}"), _mib(r["size_bytes"]), _ago(r["built_at"]), "", "")
    for r in state_rows:
        note = "in use" if r["in_use"] else ("broken: " + "; ".join(r["problems"]) if r["problems"] else "")
        table.add_row("lab state", escape(f"{r['lab']} ({r['key'][:12]})"), _mib(r["size_bytes"]),
                      _ago(r["created_at"]), _ago(r["last_used"]), escape(note))
    out.print(table)
    total = sum(r["size_bytes"] for r in state_rows)
    out.print(f"lab states: {_mib(total)} of at most {_mib(cache_limit_bytes())} (XENLAB_CACHE_MAX_GB); "
              f"images: {_mib(sum(r['size_bytes'] for r in image_rows))}", markup=False)


@cache.command("prune")
@click.option("--max-gb", type=float, help="keep lab states within this many GiB (default: XENLAB_CACHE_MAX_GB or 20)")
@click.option("--lab", "lab_name", help="forget every warm state of this lab")
def cache_prune(max_gb: float | None, lab_name: str | None) -> None:
    """Remove stale images and lab states: broken or unfinished ones, then the least
    recently used until the rest fit; nothing a running lab uses is removed."""
    from .images import ImageCache
    from .lab.warm import WarmCache

    states = WarmCache()
    removed = [e.dir for e in states.forget(lab_name)] if lab_name else []
    removed += states.prune(None if max_gb is None else int(max_gb * (1 << 30)))
    removed += ImageCache().prune()
    console.print(f"removed {len(removed)} cache entries" + "".join(f"\n  {escape(str(p))}" for p in removed))


@cache.command("key")
@click.argument("what", type=click.Choice(["images", "labs"]))
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--matrix", "matrices", multiple=True, type=click.Path(dir_okay=False),
              help="with `labs`: every combination of this hardware matrix file too")
def cache_key(what: str, files: tuple[str, ...], matrices: tuple[str, ...]) -> None:
    """The key a CI cache keeps xenlab's caches under (docs/ci.md): `images` (the golden images,
    $XENLAB_CACHE), `labs LAB_FILE... [--matrix F]` (those labs' warm states, $XENLAB_LAB_CACHE)."""
    from .errors import InvalidInput
    from .images import ImageCache

    images_key = ImageCache().key()
    if what == "images":
        if files or matrices:
            raise InvalidInput("`xenlab cache key images` takes no files: the images' key is every recipe's")
        out.print(images_key, markup=False)
        return
    from .lab.warm import archive_key
    from .matrix import load_matrix
    from .spec import load_lab

    if not files and not matrices:
        raise InvalidInput("`xenlab cache key labs` needs the lab files (or --matrix files) whose states to keep")
    specs = [load_lab(f) for f in files]
    specs += [c.spec for m in matrices for c in load_matrix(m).combinations]
    out.print(archive_key(specs, images_key), markup=False)
