"""The files a run boots: the profile's own image (built through its recipe, or found in the
cache), or the user's --kernel (and --initrd), checked before anything is written."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from dumpbed.errors import DumpbedError
from dumpbed.guests import recipes
from dumpbed.guests.kernelfile import KernelFormat, identify
from dumpbed.guests.profiles import GuestProfile


@dataclass(frozen=True)
class BootFiles:
    kernel: Path
    format: KernelFormat
    initrd: Optional[Path]
    symbols: Optional[Path]  # the kernel's symbol table (the crash kinds' rip checks), or None
    recipe: Optional[str]  # the images/ recipe it was built by; None: the user's --kernel
    image_key: Optional[str]  # the hash of the recipe's inputs

    def to_json(self) -> dict:
        return {"kernel": str(self.kernel), "format": self.format.value,
                "initrd": str(self.initrd) if self.initrd else None,
                "symbols": str(self.symbols) if self.symbols else None,
                "recipe": self.recipe, "image_key": self.image_key}


def check(profile: GuestProfile, kernel: Optional[Path], initrd: Optional[Path], crash,
          options: tuple[str, str] = ("--kernel", "--initrd")) -> None:
    """Refuse a --kernel or --initrd this profile cannot boot, before anything is built or written
    (`options`: what the user calls them, e.g. the pytest plugin's --dumpbed-kernel), or lacking
    the symbols `crash` (a crash kind) checks; crash None: the crash is not known yet, no symbols
    asked for."""
    kopt, iopt = options
    if kernel is None:
        if initrd is not None:
            raise DumpbedError(f"{iopt} {initrd}: needs {kopt} (a Linux bzImage); the {profile.name} profile's "
                               f"own kernel takes none")
        return
    fmt = identify(kernel, kopt)
    if fmt not in profile.formats:
        raise DumpbedError(f"{kopt} {kernel}: a {fmt.value}, and guest profile {profile.name} boots "
                           f"{' or '.join(f.value for f in profile.formats)}")
    if initrd is not None:
        if fmt is not KernelFormat.BZIMAGE:
            raise DumpbedError(f"{iopt} {initrd}: goes with a Linux bzImage, and {kopt} {kernel} is a {fmt.value} "
                               "kernel")
        if not Path(initrd).is_file():
            raise DumpbedError(f"{iopt} {initrd}: no such file")
    if crash is not None and crash.needed_symbols() and profile.symbols(Path(kernel)) is None:
        raise DumpbedError(f"--crash {crash.name} checks where the crash happened against the kernel's symbols "
                           f"({', '.join(crash.needed_symbols())}): guest profile {profile.name} finds none for "
                           f"{kopt} {kernel} (dumpbed's guest: {Path(kernel).with_suffix('.elf64').name} beside it)")


def planned_kernel_path(profile: GuestProfile, kernel: Optional[Path]) -> Path:
    """The path QEMU will be given (the guest sees it first on a multiboot command line), known
    before the image is built: a --kernel's, or where the cache keeps the profile's image."""
    if kernel is not None:
        return Path(kernel).absolute()
    recipe = recipes.load(profile.recipe)
    return recipe.entry("0" * 64) / recipe.kernel


def prepare(profile: GuestProfile, kernel: Optional[Path], initrd: Optional[Path]) -> BootFiles:
    """The files to boot: the user's, or the profile's own image, built now if the cache lacks it."""
    if kernel is not None:
        kernel = Path(kernel).absolute()
        return BootFiles(kernel, identify(kernel), Path(initrd).absolute() if initrd else None,
                         profile.symbols(kernel), None, None)
    image = recipes.build(recipes.load(profile.recipe))
    return BootFiles(image.kernel, identify(image.kernel, "the image's kernel"), image.initrd, image.symbols,
                     image.recipe, image.key)
