"""Building the package compiles the translation catalogs (``.po`` -> ``.mo``): the compiled files
are made here, never committed. Everything else is in pyproject.toml."""

from __future__ import annotations

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithCatalogs(build_py):
    """build_py, then each ``chatbot/translations/<lang>/LC_MESSAGES/messages.po`` compiled next to
    its copy in the build (or, for an editable install, next to the source)."""

    def run(self) -> None:
        super().run()
        from babel.messages.mofile import write_mo
        from babel.messages.pofile import read_po

        source = Path(__file__).resolve().parent / "chatbot" / "translations"
        target = source if self.editable_mode else Path(self.build_lib) / "chatbot" / "translations"
        for po in sorted(source.glob("*/LC_MESSAGES/*.po")):
            mo = target / po.relative_to(source).with_suffix(".mo")
            mo.parent.mkdir(parents=True, exist_ok=True)
            with po.open("rb") as src:
                catalog = read_po(src)
            with mo.open("wb") as out:
                write_mo(out, catalog)


setup(cmdclass={"build_py": BuildWithCatalogs})
