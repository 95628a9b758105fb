"""Find providers through Python entry points, import only the one selected.

Four groups, name → class: ``sitechat.llm`` (:class:`BaseLLMService`),
``sitechat.embeddings`` (LangChain ``Embeddings``), ``sitechat.vectorstores``
(:class:`VectorStore`) and ``sitechat.chat`` (:class:`ChatService`). sitechat registers its
own providers in its ``pyproject.toml`` exactly as a plugin package does::

    [project.entry-points."sitechat.llm"]
    my-llm = "my_package.llm:MyLLMService"

Listing reads only package metadata; a provider module is imported when it is selected
(or when :func:`check_providers` is asked to verify everything). A plugin that fails to
import (even by calling ``sys.exit()``), whose class is not a subclass of its group's
base, or whose class leaves abstract methods unimplemented, is reported with its name,
distribution and reason (anything shaped like a secret masked), and never stops the other
providers from working.

A name registered by two distributions is logged naming both. sitechat's own provider
keeps its name (a plugin never replaces a built-in); between two plugins the name is
ambiguous, and selecting it is an error until one is uninstalled.
"""

from __future__ import annotations

import inspect
import logging
import re
from dataclasses import dataclass
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from sitechat._redact import redact
from sitechat.errors import PluginError, ProviderNotFoundError

__all__ = [
    "GROUPS",
    "ProviderInfo",
    "ProviderStatus",
    "available",
    "check_providers",
    "list_providers",
    "load_provider",
    "names_of_class",
    "refresh",
]

logger = logging.getLogger(__name__)

GROUPS: dict[str, str] = {
    "llm": "sitechat.llm",
    "embeddings": "sitechat.embeddings",
    "vectorstores": "sitechat.vectorstores",
    "chat": "sitechat.chat",
}


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    """A registered provider, known from package metadata alone."""

    group: str
    name: str
    target: str
    distribution: str
    version: str
    also_registered_by: tuple[str, ...] = ()
    """Other distributions (``"name version"``) registering the same name: ignored behind
    sitechat's own provider; between plugins the name is ambiguous and fails to load."""


@dataclass(frozen=True, slots=True)
class ProviderStatus:
    """The outcome of loading a provider: ``error`` is None when it is usable."""

    info: ProviderInfo
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None


def _base_class(group: str) -> type[Any]:
    # imported here so that listing providers never imports the heavy contracts
    if group == "llm":
        from sitechat.llm.base import BaseLLMService

        return BaseLLMService
    if group == "embeddings":
        from langchain_core.embeddings import Embeddings

        return Embeddings
    if group == "vectorstores":
        from sitechat.vectorstores.base import VectorStore

        return VectorStore
    if group == "chat":
        from sitechat.chat.base import ChatService

        return ChatService
    raise PluginError(f"Unknown provider group '{group}'. Known groups: {', '.join(GROUPS)}.")


_OWN_DISTRIBUTION = "sitechat"


@cache
def _registrations(group: str) -> dict[str, tuple[EntryPoint, ...]]:
    """Each name in ``group`` with every distribution's entry point for it, sitechat's own
    first, then by distribution name. A distribution installed twice counts once: the
    first on sys.path, as for imports. A name registered twice is logged, once."""
    if group not in GROUPS:
        raise PluginError(f"Unknown provider group '{group}'. Known groups: {', '.join(GROUPS)}.")
    found: dict[str, dict[str, EntryPoint]] = {}
    for ep in entry_points(group=GROUPS[group]):
        found.setdefault(ep.name, {}).setdefault(_distribution_key(ep), ep)
    registrations = {
        name: tuple(sorted(by_dist.values(), key=_precedence)) for name, by_dist in found.items()
    }
    for name, eps in sorted(registrations.items()):
        if len(eps) > 1:
            logger.warning("%s", _clash(group, name, eps))
    return registrations


def _entry_points(group: str) -> dict[str, EntryPoint]:
    """The entry point each name in ``group`` stands for (see :func:`_registrations`)."""
    return {name: eps[0] for name, eps in _registrations(group).items()}


def _distribution_name(ep: EntryPoint) -> str:
    return ep.dist.metadata["Name"] if ep.dist is not None else "unknown"


def _distribution_key(ep: EntryPoint) -> str:
    return re.sub(r"[-_.]+", "-", _distribution_name(ep)).lower()


def _precedence(ep: EntryPoint) -> tuple[bool, str]:
    key = _distribution_key(ep)
    return key != _OWN_DISTRIBUTION, key


def _release(ep: EntryPoint) -> str:
    return f"{_distribution_name(ep)} {ep.dist.version if ep.dist is not None else 'unknown'}"


def _clash(group: str, name: str, eps: tuple[EntryPoint, ...]) -> str:
    """What a name registered by several distributions means, naming each of them."""
    others = " and ".join(_release(ep) for ep in eps[1:])
    if _distribution_key(eps[0]) == _OWN_DISTRIBUTION:
        return (
            f"The {group} provider name '{name}' is sitechat's own and is also registered by "
            f"{others}: sitechat's is used and that registration ignored. Ask its author to "
            "rename it."
        )
    return (
        f"The {group} provider name '{name}' is registered by {_release(eps[0])} and "
        f"{others}, so which one it means is ambiguous. Uninstall all but one of them, or "
        "ask their authors to rename it."
    )


def refresh() -> None:
    """Forget cached entry points, e.g. after installing a plugin in a running process."""
    _registrations.cache_clear()
    _load.cache_clear()


def _info(group: str, ep: EntryPoint) -> ProviderInfo:
    dist = ep.dist
    others = _registrations(group).get(ep.name, (ep,))[1:]
    return ProviderInfo(
        group=group,
        name=ep.name,
        target=ep.value,
        distribution=_distribution_name(ep),
        version=dist.version if dist is not None else "unknown",
        also_registered_by=tuple(_release(other) for other in others),
    )


def available(group: str) -> list[str]:
    """The sorted names registered in ``group`` (no module is imported)."""
    return sorted(_entry_points(group))


def names_of_class(group: str, class_name: str) -> list[str]:
    """The sorted names in ``group`` whose entry point names a class called ``class_name``
    (``pkg.module:ClassName``), one per target (the first of its aliases), from metadata
    alone: no module is imported."""
    by_target: dict[str, str] = {}
    for name, ep in sorted(_entry_points(group).items()):
        if ep.value.rpartition(":")[2].rpartition(".")[2].strip() == class_name:
            by_target.setdefault(ep.value.replace(" ", ""), name)
    return sorted(by_target.values())


def list_providers(group: str | None = None) -> list[ProviderInfo]:
    """Every registered provider, from metadata only, sorted by group and name."""
    groups = [group] if group else list(GROUPS)
    return [_info(g, ep) for g in groups for _, ep in sorted(_entry_points(g).items())]


@cache
def _load(group: str, name: str) -> type[Any]:
    eps = _entry_points(group)
    if name not in eps:
        raise ProviderNotFoundError(group, name, available(group))
    ep = eps[name]
    registrations = _registrations(group)[name]
    if len(registrations) > 1 and _distribution_key(ep) != _OWN_DISTRIBUTION:
        raise PluginError(_clash(group, name, registrations))
    info = _info(group, ep)
    try:
        obj = ep.load()
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # a plugin may fail in any way while importing, exit included
        # its message may carry what it failed to reach: a DSN with a password, a token
        reason = redact(f"{type(exc).__name__}: {exc}")
        raise PluginError(
            f"The {group} provider '{name}' from {info.distribution} {info.version} failed to "
            f"import ({reason}). Reinstall or upgrade that package."
        ) from exc
    base = _base_class(group)
    if not (isinstance(obj, type) and issubclass(obj, base)):
        raise PluginError(
            f"The {group} provider '{name}' from {info.distribution} {info.version} points at "
            f"{ep.value}, which is not a subclass of {base.__name__}. Ask its author to fix it."
        )
    if inspect.isabstract(obj):
        missing = ", ".join(sorted(getattr(obj, "__abstractmethods__", ())))
        raise PluginError(
            f"The {group} provider '{name}' from {info.distribution} {info.version} points at "
            f"{ep.value}, which leaves abstract methods of {base.__name__} unimplemented "
            f"({missing}), so it cannot be created. This is a bug in that package, not in "
            "your settings: ask its author to fix it."
        )
    return obj


def load_provider(group: str, name: str) -> type[Any]:
    """Import and return the class registered as ``name`` in ``group``.

    Raises :class:`ProviderNotFoundError` (listing the available names) or
    :class:`PluginError` (naming the distribution and the reason).
    """
    return _load(group, name)


def check_providers(group: str | None = None) -> list[ProviderStatus]:
    """Load every registered provider and report which work; broken ones are logged."""
    statuses = []
    for info in list_providers(group):
        try:
            load_provider(info.group, info.name)
        except PluginError as exc:
            logger.warning("skipping provider: %s", exc)
            statuses.append(ProviderStatus(info, str(exc)))
        else:
            statuses.append(ProviderStatus(info, None))
    return statuses
