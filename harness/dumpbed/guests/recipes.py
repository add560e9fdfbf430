"""The images/ recipes: how a guest image is built, and the cache of built images.

A recipe (`images/NAME/recipe.toml`, docs/guest-profiles.md) names its input files, the tools
whose versions matter, a build command and its outputs. A built image lives in the cache under
the hash of all of that, so it is built again only when one byte of an input changed (as QEMU's
functional tests cache their assets by hash): not on a `touch`, not in another checkout of the
same sources, and a build interrupted half-way is never taken for a built image (it is renamed
into place only when whole).

The sources come from the checkout, or, in an installed wheel, from the package's data
(`dumpbed/_data/`, copied there by setup.py): the same recipe builds the same image from both.
"""
from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from dumpbed.errors import DumpbedError

PACKAGE_DATA = Path(__file__).resolve().parents[1] / "_data"  # an installed wheel's guest/ and images/
CHECKOUT = Path(__file__).resolve().parents[3]  # harness/dumpbed/guests/recipes.py -> the checkout
KEEP_BUILDS = 3  # built images kept per recipe (the newest): older checkouts' builds go
LOCK_POLL = 0.2
_RECIPE_KEYS = {"name": str, "summary": str, "inputs": list, "tools": list, "build": list,
                "timeout_seconds": int, "kernel": str, "symbols": str, "initrd": str, "keep": list}
_OPTIONAL_KEYS = ("symbols", "initrd")


def source_root() -> Path:
    """Where the recipes and their sources are: the installed package's data, else the checkout."""
    for root in (PACKAGE_DATA, CHECKOUT):
        if (root / "images").is_dir():
            return root
    raise DumpbedError(f"no guest image recipes: neither {PACKAGE_DATA / 'images'} (an installed dumpbed) nor "
                       f"{CHECKOUT / 'images'} (a checkout) exists")


def cache_root() -> Path:
    """$DUMPBED_CACHE, else $XDG_CACHE_HOME/dumpbed, else ~/.cache/dumpbed."""
    if os.environ.get("DUMPBED_CACHE"):
        return Path(os.environ["DUMPBED_CACHE"]).absolute()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base).absolute() / "dumpbed"


@dataclass(frozen=True)
class Recipe:
    name: str
    summary: str
    inputs: tuple[str, ...]
    tools: tuple[tuple[str, ...], ...]
    build: tuple[str, ...]
    timeout_seconds: int
    kernel: str
    symbols: Optional[str]
    keep: tuple[str, ...]
    directory: Path  # images/NAME
    root: Path  # the source root the inputs' globs are under
    initrd: Optional[str] = None  # a bzImage's initrd, booted with it (-initrd)

    def input_files(self) -> list[Path]:
        """The recipe's own files and every file its globs match, sorted, each once."""
        files = {p for p in self.directory.rglob("*") if p.is_file()}
        for pattern in self.inputs:
            matched = [p for p in self.root.glob(pattern) if p.is_file()]
            if not matched:
                raise DumpbedError(f"recipe {self.name}: input {pattern!r} matches no file under {self.root}")
            files.update(matched)
        return sorted(files)

    def key(self) -> str:
        """The SHA-256 of the inputs' paths and bytes and the tools' version lines."""
        h = hashlib.sha256(b"dumpbed-image-1\0")
        for path in self.input_files():
            h.update(str(path.relative_to(self.root)).encode() + b"\0")
            h.update(hashlib.sha256(path.read_bytes()).digest())
        for argv in self.tools:
            h.update(" ".join(argv).encode() + b"\0" + _tool_version(tuple(argv)).encode() + b"\0")
        return h.hexdigest()

    def entry(self, key: Optional[str] = None) -> Path:
        return cache_root() / "images" / self.name / (key or self.key())[:20]


@dataclass(frozen=True)
class Image:
    """A built image in the cache."""
    recipe: str
    key: str
    directory: Path
    kernel: Path
    symbols: Optional[Path]
    built: bool  # built by this call (False: found in the cache)
    seconds: float  # how long its build took, when it was built
    initrd: Optional[Path] = None


@functools.lru_cache(maxsize=None)  # the tools do not change under a running dumpbed
def _tool_version(argv: tuple[str, ...]) -> str:
    if shutil.which(argv[0]) is None:
        return "missing"
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (proc.stdout or proc.stderr).strip().splitlines()[0] if (proc.stdout or proc.stderr).strip() else ""


def load(name: str, root: Optional[Path] = None) -> Recipe:
    root = Path(root) if root is not None else source_root()
    path = root / "images" / name / "recipe.toml"
    if not path.is_file():
        raise DumpbedError(f"no image recipe {name!r} (available: {', '.join(names(root)) or 'none'})")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DumpbedError(f"{path}: not valid TOML ({exc})") from None
    for key, kind in _RECIPE_KEYS.items():
        if key in _OPTIONAL_KEYS and key not in data:
            continue
        if not isinstance(data.get(key), kind):
            raise DumpbedError(f"{path}: {key} must be a {kind.__name__}")
    unknown = sorted(set(data) - set(_RECIPE_KEYS))
    if unknown:
        raise DumpbedError(f"{path}: unknown key(s) {', '.join(unknown)}")
    if data["name"] != name:
        raise DumpbedError(f"{path}: name {data['name']!r} is not its directory's {name!r}")
    if any(data.get(k) and data[k] not in data["keep"] for k in ("kernel", *_OPTIONAL_KEYS)):
        raise DumpbedError(f"{path}: keep must list the kernel, the symbols file and the initrd")
    return Recipe(name=name, summary=data["summary"], inputs=tuple(data["inputs"]),
                  tools=tuple(tuple(t) for t in data["tools"]), build=tuple(data["build"]),
                  timeout_seconds=data["timeout_seconds"], kernel=data["kernel"], symbols=data.get("symbols"),
                  keep=tuple(data["keep"]), directory=path.parent, root=root, initrd=data.get("initrd"))


def names(root: Optional[Path] = None) -> list[str]:
    root = Path(root) if root is not None else source_root()
    return sorted(p.parent.name for p in (root / "images").glob("*/recipe.toml"))


def cached(recipe: Recipe, key: Optional[str] = None) -> Optional[Image]:
    """The recipe's image built from these very inputs, if the cache has it."""
    key = key or recipe.key()
    entry = recipe.entry(key)
    try:
        manifest = json.loads((entry / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("key") != key or not all((entry / f).is_file() for f in recipe.keep):
        return None
    return Image(recipe.name, key, entry, entry / recipe.kernel, entry / recipe.symbols if recipe.symbols else None,
                 built=False, seconds=float(manifest.get("seconds", 0.0)),
                 initrd=entry / recipe.initrd if recipe.initrd else None)


def build(recipe: Recipe, force: bool = False) -> Image:
    """The recipe's image: from the cache when its inputs are unchanged, else built now. One
    process builds at a time (a lock per recipe); the others wait for it, then find it cached."""
    key = recipe.key()
    if not force:
        hit = cached(recipe, key)
        if hit is not None:
            return hit
    missing = [argv[0] for argv in recipe.tools if shutil.which(argv[0]) is None]
    if missing:
        raise DumpbedError(f"building the {recipe.name} image needs {', '.join(missing)} (make setup installs them)")
    home = recipe.entry(key).parent
    home.mkdir(parents=True, exist_ok=True)
    with _locked(home / ".lock", recipe.timeout_seconds, recipe.name):
        if not force:
            hit = cached(recipe, key)  # built by the process we waited for
            if hit is not None:
                return hit
        image = _build_locked(recipe, key, home)
        _prune(home, keep=image.directory)
        return image


def _build_locked(recipe: Recipe, key: str, home: Path) -> Image:
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=home))
    try:
        argv = [a.replace("{src}", str(recipe.root)).replace("{out}", str(work)) for a in recipe.build]
        t0 = time.monotonic()
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=recipe.timeout_seconds)
        except subprocess.TimeoutExpired:
            raise DumpbedError(f"building the {recipe.name} image took longer than {recipe.timeout_seconds} s") from None
        seconds = time.monotonic() - t0
        if proc.returncode != 0:
            last = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["no output"]
            raise DumpbedError(f"building the {recipe.name} image failed: {last[0]}")
        for name in recipe.keep:
            if not (work / name).is_file():
                raise DumpbedError(f"building the {recipe.name} image did not produce {name}")
        final = Path(tempfile.mkdtemp(prefix=".entry-", dir=home))
        for name in recipe.keep:
            os.replace(work / name, final / name)
        (final / "manifest.json").write_text(json.dumps({
            "recipe": recipe.name, "key": key, "seconds": round(seconds, 3), "built_at": time.time(),
            "source_root": str(recipe.root), "inputs": len(recipe.input_files()),
            "tools": {" ".join(t): _tool_version(t) for t in recipe.tools}}, indent=1) + "\n")
        entry = recipe.entry(key)
        if entry.exists():  # --force over an image that was there: the new one takes its place
            shutil.rmtree(entry)
        os.replace(final, entry)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        for stale in home.glob(".entry-*"):
            shutil.rmtree(stale, ignore_errors=True)
    return Image(recipe.name, key, entry, entry / recipe.kernel, entry / recipe.symbols if recipe.symbols else None,
                 built=True, seconds=seconds, initrd=entry / recipe.initrd if recipe.initrd else None)


def _prune(home: Path, keep: Path) -> None:
    """Keep the newest KEEP_BUILDS images of a recipe (and the one just built)."""
    entries = sorted((p for p in home.iterdir() if p.is_dir() and not p.name.startswith(".")),
                     key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[KEEP_BUILDS:]:
        if old != keep:
            shutil.rmtree(old, ignore_errors=True)


class _locked:
    """An exclusive flock on PATH, waited for at most `seconds` (a build as long as the recipe allows)."""

    def __init__(self, path: Path, seconds: float, what: str):
        self.path, self.seconds, self.what = path, seconds, what
        self.fd = -1

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.seconds
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(self.fd)
                    raise DumpbedError(f"another dumpbed has been building the {self.what} image for over "
                                       f"{self.seconds} s ({self.path} is locked)") from None
                time.sleep(LOCK_POLL)

    def __exit__(self, *exc):
        os.close(self.fd)  # closing drops the lock
