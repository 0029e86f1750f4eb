"""How the checkout becomes a wheel; the metadata is in pyproject.toml.

In the checkout (and when vendored) backstage is one file, ``backstage.py``, with
``backends/`` beside it.  Installed, it is the package ``backstage``:
``backstage/__init__.py`` is ``backstage.py`` unchanged, ``backstage/backends/`` the
backends, ``backstage/inspector_*.py`` the inspectors, and ``backstage/py.typed``
marks it typed.  A package, because mypy reads ``py.typed`` only in a package
(next to a single-file module in site-packages it still says ``import-untyped``);
and so nothing with a generic name (``backends``, ``inspector_curses``) lands at
the top level of site-packages.  Editable installs are not supported: work in
the checkout, where ``import backstage`` finds ``backstage.py``.
"""

import os

from setuptools import setup
from setuptools.command.build_py import build_py

PACKAGE = "backstage"
# Files of the checkout that go inside the package, under their own names.
INSPECTORS = ("inspector_curses.py", "inspector_prometheus.py")


class BuildPackage(build_py):
    """build_py that turns the single-file module into the package ``backstage``."""

    def get_module_outfile(self, build_dir, package, module):
        if module == PACKAGE and not "".join(package):
            return os.path.join(build_dir, PACKAGE, "__init__.py")
        return super().get_module_outfile(build_dir, package, module)

    def _extra_files(self):
        """(source, destination) of the inspectors present and the py.typed marker."""
        target = os.path.join(self.build_lib, PACKAGE)
        files = [(name, os.path.join(target, name)) for name in INSPECTORS
                 if os.path.exists(name)]
        return files, os.path.join(target, "py.typed")

    def run(self):
        super().run()
        files, marker = self._extra_files()
        for source, destination in files:
            self.copy_file(source, destination, preserve_mode=False)
        with open(marker, "w", encoding="utf-8"):
            pass                                    # PEP 561: an empty marker

    def get_outputs(self, include_bytecode=True):
        files, marker = self._extra_files()
        return super().get_outputs(include_bytecode) + [d for _, d in files] + [marker]


setup(cmdclass={"build_py": BuildPackage})
