"""The one build step pyproject.toml cannot say: an installed dumpbed carries the sources of its
guest images (guest/ and the images/ recipes) as package data, dumpbed/_data/, so that
`pip install dumpbed-*.whl` works outside a checkout: the first run builds the guest from them
into the image cache (docs/guest-profiles.md); and the schemas its code checks documents
against (docs/nightly.md's results.json). An editable install reads the checkout instead."""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
DATA_TREES = ("guest", "images")
DATA_FILES = ("docs/matrix-results.schema.json",)
SKIP = shutil.ignore_patterns("build", "__pycache__", "*.o", "*.d", "*.pyc")


class build_py_with_guest_sources(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return  # the package finds the checkout's guest/ and images/ itself
        target = Path(self.build_lib) / "dumpbed" / "_data"
        for tree in DATA_TREES:
            if (target / tree).exists():
                shutil.rmtree(target / tree)
            shutil.copytree(HERE / tree, target / tree, ignore=SKIP)
        for name in DATA_FILES:
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(HERE / name, target / name)


setup(cmdclass={"build_py": build_py_with_guest_sources})
