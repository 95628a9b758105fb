"""The installed package's version, in a module of its own: modules that
``sitechat/__init__.py`` imports (the crawler's default User-Agent) read it from here."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["__version__"]

try:
    __version__ = version("sitechat")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"
