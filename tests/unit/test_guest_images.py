"""images/ recipes and the image cache (dumpbed.guests.recipes), the kernel files QEMU is given
(dumpbed.guests.kernelfile) and the guest profiles' checks (dumpbed.guests.profiles, boot)."""
from __future__ import annotations

import dataclasses
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from dumpbed.errors import DumpbedError
from dumpbed.guests import boot, kernelfile, profiles, recipes
from dumpbed.guests.kernelfile import KernelFormat
from dumpbed.scenario import crash as crash_mod
from dumpbed.scenario.spec import Scenario, check_scenario

# A recipe of its own: "builds" a kernel by copying its source and counting its builds, so a
# test sees whether a call built or took the cache.
RECIPE = """
name = "toy"
summary = "a toy image"
inputs = ["src/*.txt"]
tools = [["sh", "-c", "echo toy-tool 1"]]
build = ["sh", "-c", "cat {src}/src/*.txt > {out}/toy.elf && cp {out}/toy.elf {out}/toy.elf64 && echo x >> {src}/builds"]
timeout_seconds = 60
kernel = "toy.elf"
symbols = "toy.elf64"
keep = ["toy.elf", "toy.elf64"]
"""


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("DUMPBED_CACHE", str(tmp_path / "cache"))
    r = tmp_path / "root"
    (r / "images" / "toy").mkdir(parents=True)
    (r / "images" / "toy" / "recipe.toml").write_text(RECIPE)
    (r / "src").mkdir()
    (r / "src" / "a.txt").write_text("one\n")
    return r


def builds(root: Path) -> int:
    path = root / "builds"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_an_image_is_built_once_then_taken_from_the_cache(root, tmp_path):
    first = recipes.build(recipes.load("toy", root))
    assert first.built and builds(root) == 1
    assert first.kernel.read_text() == "one\n" and first.symbols.is_file()
    assert first.directory.parent == tmp_path / "cache" / "images" / "toy"
    again = recipes.build(recipes.load("toy", root))
    assert not again.built and again.kernel == first.kernel and builds(root) == 1
    assert sorted(p.name for p in first.directory.iterdir()) == ["manifest.json", "toy.elf", "toy.elf64"]


def test_the_key_is_the_inputs_bytes_not_their_times(root):
    recipe = recipes.load("toy", root)
    key = recipe.key()
    a = root / "src" / "a.txt"
    os.utime(a, (1, 1))  # a touch: the same bytes
    assert recipe.key() == key
    a.write_text("two\n")  # one byte of an input
    assert recipe.key() != key
    a.write_text("one\n")
    assert recipe.key() == key
    (root / "src" / "b.txt").write_text("")  # a new file the glob matches, even empty
    assert recipe.key() != key
    (root / "src" / "b.txt").unlink()
    (root / "images" / "toy" / "recipe.toml").write_text(RECIPE.replace("timeout_seconds = 60", "timeout_seconds = 61"))
    assert recipes.load("toy", root).key() != key  # the recipe itself is an input


def test_a_changed_source_builds_anew_and_old_images_are_pruned(root):
    seen = []
    for n in range(recipes.KEEP_BUILDS + 2):
        (root / "src" / "a.txt").write_text(f"version {n}\n")
        image = recipes.build(recipes.load("toy", root))
        assert image.built and image.kernel.read_text() == f"version {n}\n"
        seen.append(image.directory)
        os.utime(image.directory, (1000 + n, 1000 + n))  # their order, whatever the clock's grain
    assert builds(root) == recipes.KEEP_BUILDS + 2
    kept = sorted(p for p in seen[0].parent.iterdir() if not p.name.startswith("."))
    assert kept == sorted(seen[-recipes.KEEP_BUILDS:])


def test_a_failed_build_leaves_no_image_and_says_why(root):
    (root / "images" / "toy" / "recipe.toml").write_text(
        RECIPE.replace("cat {src}/src/*.txt", "echo 'toy.c:3: error: expected ;' >&2; exit 1; cat"))
    recipe = recipes.load("toy", root)
    with pytest.raises(DumpbedError, match=r"building the toy image failed: toy.c:3: error: expected ;"):
        recipes.build(recipe)
    assert recipes.cached(recipe) is None
    assert [p.name for p in recipe.entry().parent.iterdir()] == [".lock"]  # no half-built entry, no temp dir


def test_a_build_without_its_outputs_is_refused(root):
    (root / "images" / "toy" / "recipe.toml").write_text(RECIPE.replace("cp {out}/toy.elf {out}/toy.elf64", "true"))
    with pytest.raises(DumpbedError, match="did not produce toy.elf64"):
        recipes.build(recipes.load("toy", root))


def test_concurrent_builds_build_once(root, tmp_path):
    """Two processes asking for the same image at once: one builds, the other waits on the
    recipe's lock and takes the image from the cache."""
    (root / "images" / "toy" / "recipe.toml").write_text(RECIPE.replace("cat {src}", "sleep 1; cat {src}"))
    code = ("import sys; from pathlib import Path; from dumpbed.guests import recipes; "
            "i = recipes.build(recipes.load('toy', Path(sys.argv[1]))); print(i.built, i.kernel)")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(root)], stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=60)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(o[0] for o in outs) == ["False", "True"] and outs[0][1] == outs[1][1]
    assert builds(root) == 1


@pytest.mark.parametrize("change, pattern", [
    (lambda t: t.replace('inputs = ["src/*.txt"]', 'inputs = ["src/*.c"]'), r"input 'src/\*.c' matches no file"),
    (lambda t: t.replace('kernel = "toy.elf"', 'kernel = 5'), r"kernel must be a str"),
    (lambda t: t + 'colour = "red"\n', r"unknown key\(s\) colour"),
    (lambda t: t.replace('name = "toy"', 'name = "other"'), r"name 'other' is not its directory's 'toy'"),
    (lambda t: t.replace('keep = ["toy.elf", "toy.elf64"]', 'keep = ["toy.elf"]'), r"keep must list the kernel"),
    (lambda t: t + "[[[", r"not valid TOML"),
])
def test_a_bad_recipe_is_one_clear_error(root, change, pattern):
    (root / "images" / "toy" / "recipe.toml").write_text(change(RECIPE))
    with pytest.raises(DumpbedError, match=pattern):
        recipes.build(recipes.load("toy", root))


def test_an_unknown_recipe_names_the_known(root):
    with pytest.raises(DumpbedError, match=r"no image recipe 'nope' \(available: toy\)"):
        recipes.load("nope", root)


def test_dumpbeds_own_recipe_covers_every_guest_source():
    """Every source file of guest/ is an input of the dumpbed-guest recipe (a file outside its
    globs could change the kernel without a rebuild), and the profile names that recipe."""
    recipe = recipes.load(profiles.DUMPBED.recipe, recipes.CHECKOUT)
    inputs = set(recipe.input_files())
    sources = {p for p in (recipes.CHECKOUT / "guest").rglob("*")
               if p.is_file() and "build" not in p.relative_to(recipes.CHECKOUT / "guest").parts}
    assert sources <= inputs, sorted(str(p) for p in sources - inputs)
    assert recipe.name == profiles.DUMPBED.recipe


# --- kernel files --------------------------------------------------------------------------

def multiboot(offset: int = 4096, checksum_ok: bool = True) -> bytes:
    flags = 0x00010003
    checksum = (-(kernelfile.MULTIBOOT_MAGIC + flags)) & 0xFFFFFFFF
    head = bytearray(b"\x7fELF" + bytes(offset - 4 + 64))
    struct.pack_into("<III", head, offset, kernelfile.MULTIBOOT_MAGIC, flags, checksum ^ (0 if checksum_ok else 1))
    return bytes(head)


def bzimage() -> bytes:
    head = bytearray(8192)
    head[0x1FE:0x200] = b"\x55\xaa"
    head[0x202:0x206] = b"HdrS"
    return bytes(head)


@pytest.mark.parametrize("content, fmt", [(multiboot(), KernelFormat.MULTIBOOT), (multiboot(8180), KernelFormat.MULTIBOOT),
                                          (bzimage(), KernelFormat.BZIMAGE)])
def test_kernel_formats_are_recognised(tmp_path, content, fmt):
    path = tmp_path / "k"
    path.write_bytes(content)
    assert kernelfile.identify(path) is fmt


@pytest.mark.parametrize("content", [b"", b"\x7fELF" + bytes(9000), multiboot(checksum_ok=False), multiboot(8192),
                                     bzimage()[:0x204]], ids=["empty", "elf-without-header", "bad-checksum",
                                                              "header-past-8k", "truncated-bzimage"])
def test_what_is_no_kernel_is_refused(tmp_path, content):
    path = tmp_path / "k"
    path.write_bytes(content)
    with pytest.raises(DumpbedError, match=r"--kernel .*/k: neither a multiboot kernel"):
        kernelfile.identify(path)


# --- profiles --------------------------------------------------------------------------------

@pytest.fixture
def narrow_profile(monkeypatch):
    """The dumpbed profile as a guest that crashes only by NMI and takes interrupts in its dump."""
    narrow = dataclasses.replace(profiles.DUMPBED, name="narrow", crashes=("nmi",),
                                 not_applicable={"no-interrupts": "its dump takes interrupts"})
    monkeypatch.setitem(profiles.PROFILES, "narrow", narrow)
    return narrow


def test_a_crash_kind_the_profile_lacks_is_refused(tmp_path, narrow_profile):
    check_scenario(Scenario(out_dir=tmp_path, profile="narrow", crash="nmi"))
    with pytest.raises(DumpbedError, match=r"--crash panic: guest profile narrow has no such crash \(its crash "
                                           r"kinds: nmi\)"):
        check_scenario(Scenario(out_dir=tmp_path, profile="narrow", crash="panic"))


def test_an_unknown_profile_is_refused(tmp_path):
    with pytest.raises(DumpbedError, match=r"unknown guest profile 'plan9' \(available: dumpbed"):
        check_scenario(Scenario(out_dir=tmp_path, profile="plan9"))


def test_the_profile_decides_the_command_line_words(tmp_path):
    assert profiles.DUMPBED.word_problem("testfault=irq-on") is None
    assert "not KEY=VALUE" in profiles.DUMPBED.word_problem("quiet")
    assert "dumpbed sets dumpdev= itself" in profiles.DUMPBED.word_problem("dumpdev=nvme")


def test_a_bzimage_and_its_initrd_are_given_to_qemu(tmp_path):
    from dumpbed.machine.qemu import Machine, MachineConfig

    kernel, initrd = tmp_path / "bzImage", tmp_path / "initrd.img"
    kernel.write_bytes(bzimage())
    initrd.write_bytes(b"070701")
    boot.check(profiles.DUMPBED, kernel, initrd, crash_mod.get("nmi"))
    files = boot.prepare(profiles.DUMPBED, kernel, initrd)
    assert files.format is KernelFormat.BZIMAGE and files.recipe is None and files.symbols is None
    argv = Machine(MachineConfig(kernel=files.kernel, initrd=files.initrd, cmdline="a=b", memory_bytes=64 << 20,
                                 accel="tcg"), tmp_path).argv(3, 4)
    i = argv.index("-kernel")
    assert argv[i:i + 6] == ["-kernel", str(kernel), "-initrd", str(initrd), "-append", "a=b"]


def test_a_recipes_initrd_is_kept_and_booted_with_its_kernel(root):
    """A bzImage recipe's initrd (the linux-kdump image's): kept in the cache beside the kernel,
    found again from the cache, and it must be listed in keep."""
    text = RECIPE.replace('echo x >> {src}/builds"]', 'echo x >> {src}/builds && echo rd > {out}/toy.rd"]')
    (root / "images" / "toy" / "recipe.toml").write_text(
        text.replace('keep = ["toy.elf", "toy.elf64"]', 'initrd = "toy.rd"\nkeep = ["toy.elf", "toy.elf64", "toy.rd"]'))
    built = recipes.build(recipes.load("toy", root))
    assert built.initrd == built.directory / "toy.rd" and built.initrd.read_text() == "rd\n"
    again = recipes.build(recipes.load("toy", root))
    assert not again.built and again.initrd == built.initrd
    (root / "images" / "toy" / "recipe.toml").write_text(text.replace('keep = ["toy.elf", "toy.elf64"]',
                                                                      'initrd = "toy.rd"\nkeep = ["toy.elf", "toy.elf64"]'))
    with pytest.raises(DumpbedError, match="keep must list the kernel, the symbols file and the initrd"):
        recipes.load("toy", root)
    assert recipes.load("dumpbed-guest").initrd is None  # dumpbed's own guest takes none
