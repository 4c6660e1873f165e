"""The image cache: golden images by recipe hash, built once, shared by every lab.

Layout: CACHE/<name>-<digest>/ holding `manifest.json` and the boot artifacts. A build
writes into a temporary sibling and renames it into place, so a crashed build never
leaves a half image that looks finished.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ..errors import XenlabError
from ..waiting import Progress, quiet
from .recipes import Recipe, load_recipes


def default_cache_dir() -> Path:
    env = os.environ.get("XENLAB_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "xenlab" / "images"



def publish(staging: Path, final: Path, manifest: dict) -> None:
    """A finished build becomes the cached entry at once: its manifest written last, the
    staging directory renamed over any older entry (a reader never sees half a build)."""
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2))
    if final.exists():
        shutil.rmtree(final)
    staging.rename(final)


@dataclass(frozen=True)
class BuiltImage:
    """A golden image on disk and the files a QEMU machine boots from."""

    name: str
    digest: str
    directory: Path
    boot: str
    built_at: float
    build_seconds: float

    def file(self, name: str) -> Path:
        path = self.directory / name
        if not path.exists():
            raise XenlabError(f"image {self.name} ({self.directory}) lacks {name}; rebuild with `xenlab images build {self.name} --force`")
        return path

    @property
    def disk(self) -> Path:
        return self.file("disk.qcow2")

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.directory.rglob("*") if p.is_file())


class ImageCache:
    def __init__(self, images_dir: Path | None = None, cache_dir: Path | None = None):
        self.recipes: dict[str, Recipe] = load_recipes(images_dir)
        self.cache_dir = cache_dir or default_cache_dir()

    def recipe(self, name: str) -> Recipe:
        try:
            return self.recipes[name]
        except KeyError:
            known = ", ".join(sorted(self.recipes))
            raise XenlabError(f"no image recipe {name!r} (recipes: {known})") from None

    def digest(self, name: str) -> str:
        recipe = self.recipe(name)
        return recipe.digest(self.digest(recipe.base) if recipe.base else "")

    def path_for(self, name: str) -> Path:
        return self.cache_dir / f"{name}-{self.digest(name)}"

    def lookup(self, name: str) -> BuiltImage | None:
        directory = self.path_for(name)
        manifest = directory / "manifest.json"
        if not manifest.exists():
            return None
        data = json.loads(manifest.read_text())
        return BuiltImage(name, data["digest"], directory, data["boot"], data["built_at"], data["build_seconds"])

    def ensure(self, name: str, progress: Progress = quiet, force: bool = False) -> BuiltImage:
        """The cached image for `name`, building it (and its base) first if needed."""
        recipe = self.recipe(name)
        base = self.ensure(recipe.base, progress) if recipe.base else None
        if not force and (found := self.lookup(name)):
            return found
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        lock_path = self.cache_dir / f".{name}.lock"
        with open(lock_path, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another xenlab may be building the same image
            if not force and (found := self.lookup(name)):
                return found
            from .build import build_image

            final = self.path_for(name)
            staging = final.with_name(final.name + f".building-{os.getpid()}")
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            started = time.monotonic()
            try:
                build_image(recipe, staging, base, progress)
                seconds = time.monotonic() - started
                publish(staging, final, {
                    "name": name, "digest": self.digest(name), "boot": recipe.boot,
                    "recipe": recipe.model_dump(), "built_at": time.time(), "build_seconds": round(seconds, 1),
                })
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
        found = self.lookup(name)
        assert found is not None
        return found

    def ensure_all(self, names: list[str], progress: Progress = quiet) -> dict[str, BuiltImage]:
        """Every named image, the missing ones built side by side.

        A build is mostly fetching and one single-threaded dpkg after another, so builds
        overlap well: xen-pool2's two images took 94-104 s side by side (mmdebstrap as
        root, a quiet 2-core machine, 2026-12-03). Each build takes its own lock and
        staging directory, as two xenlab processes building at once already do.
        If a build fails, the others still finish (their work is kept in the cache) and
        the first failure is raised.
        """
        wanted = sorted(set(names))
        missing = [n for n in wanted if self.lookup(n) is None]
        if len(missing) < 2:
            return {n: self.ensure(n, progress) for n in wanted}
        with ThreadPoolExecutor(max_workers=len(missing), thread_name_prefix="image-build") as pool:
            futures = {n: pool.submit(self.ensure, n, progress) for n in missing}
        errors = [f.exception() for f in futures.values() if f.exception() is not None]
        if errors:
            raise errors[0]
        return {n: self.ensure(n, progress) for n in wanted}

    def list(self) -> list[tuple[str, str, BuiltImage | None]]:
        """(name, current digest, its cached image or None) per recipe; stale builds are
        not listed here but by `stale_entries` (the cache is keyed by the current digest)."""
        return [(name, self.digest(name), self.lookup(name)) for name in sorted(self.recipes)]

    def key(self) -> str:
        """The key of this cache's contents as CI caches it (`xenlab cache key images`): every
        recipe's digest, which names its cached image; a changed recipe is a new key."""
        import hashlib

        material = "\n".join(f"{name} {digest}" for name, digest, _ in self.list())
        return "xenlab-images-" + hashlib.sha256(material.encode()).hexdigest()[:20]

    def stale_entries(self) -> list[Path]:
        """Cached images whose recipe changed or vanished (prune candidates)."""
        if not self.cache_dir.exists():
            return []
        current = {self.path_for(name).name for name in self.recipes}
        # A hardware variant (`IMAGE-DIGEST+kind-digest`, images/variant.py) lives and goes with its image.
        return sorted(p for p in self.cache_dir.iterdir()
                      if p.is_dir() and p.name not in current and p.name.partition("+")[0] not in current)

    def prune(self) -> list[Path]:
        removed = self.stale_entries()
        for path in removed:
            shutil.rmtree(path, ignore_errors=True)
        return removed
