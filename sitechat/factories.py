"""Build configured components from :class:`~sitechat.config.Settings` through the registry.

Core code never names a provider class: it asks the registry for the name in the settings,
so a plugin installed with pip is selected exactly like a built-in.
"""

from __future__ import annotations

from typing import Any

from langchain_core.embeddings import Embeddings

from sitechat.config import Settings, env_prefix_for, env_value
from sitechat.embeddings.base import aembedder_info
from sitechat.errors import ConfigurationError
from sitechat.llm.base import BaseLLMService
from sitechat.registry import available, load_provider, names_of_class
from sitechat.vectorstores.base import EmbedderInfo, VectorStore

__all__ = [
    "build_chat_service",
    "build_embeddings",
    "build_llm",
    "check_index_location",
    "default_llm_provider",
    "open_store",
]


def default_llm_provider(settings: Settings) -> str:
    """The LLM used when ``SITECHAT_LLM__PROVIDER`` is unset.

    ``openai`` when an OpenAI key is configured (in the environment or the ``.env`` file)
    and that provider is installed, otherwise the offline ``extractive`` answerer, so
    sitechat works with no key at all.
    """
    if settings.llm.provider:
        return settings.llm.provider
    names = (env_prefix_for("openai") + "API_KEY", "OPENAI_API_KEY")
    has_key = env_value(names, settings.env_file) is not None
    if has_key and "openai" in available("llm"):
        return "openai"
    return "extractive"


def _build(group: str, name: str, settings: Settings) -> Any:
    cls = load_provider(group, name)
    factory = getattr(cls, "from_settings", None)
    try:
        return factory(settings) if callable(factory) else cls()
    except ConfigurationError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(
            f"The {group} provider '{name}' could not be created from the settings "
            f"({type(exc).__name__}: {exc}). Check the {env_prefix_for(name)}* variables."
        ) from exc


def build_llm(settings: Settings, name: str | None = None) -> BaseLLMService:
    """The configured LLM service, with any ``SITECHAT_LLM__FALLBACKS`` tried in order."""
    primary: BaseLLMService = _build("llm", name or default_llm_provider(settings), settings)
    if name is not None or not settings.llm.fallbacks:
        return primary
    from sitechat.llm.failover import FailoverLLMService  # only needed with fallbacks

    services = [primary] + [_build("llm", fb, settings) for fb in settings.llm.fallbacks]
    return FailoverLLMService(services)


def build_embeddings(settings: Settings, name: str | None = None) -> Embeddings:
    """The configured embedder (any LangChain ``Embeddings``)."""
    embeddings: Embeddings = _build("embeddings", name or settings.embeddings.provider, settings)
    return embeddings


def _embeddings_explicitly_set(settings: Settings) -> bool:
    return "provider" in settings.embeddings.model_fields_set


def check_index_location(settings: Settings) -> None:
    """Refuse an empty index location: for the faiss store it would silently mean the
    current directory."""
    if not settings.index.strip():
        raise ConfigurationError(
            "The index location is empty (SITECHAT_INDEX, --index or index=). Name a "
            "directory for the faiss store or a collection for pgvector, e.g. "
            "SITECHAT_INDEX=sitechat-index."
        )


async def open_store(
    settings: Settings, embeddings: Embeddings | None = None, *, create: bool = False
) -> tuple[VectorStore, Embeddings]:
    """Open the index ``settings.index`` and return it with a matching embedder.

    When no embedder is given or configured explicitly, the one recorded in the index is
    rebuilt, so ``sitechat ask --index DIR`` works with whatever built ``DIR``.
    """
    check_index_location(settings)
    store_cls = load_provider("vectorstores", settings.vectorstore.provider)
    if embeddings is None and not create and not _embeddings_explicitly_set(settings):
        store: VectorStore = await store_cls.open(settings, None, create=False)
        recorded = store.embedder
        try:
            embeddings = _embeddings_for(recorded, settings)
            built = await aembedder_info(embeddings)
        except BaseException:
            await store.aclose()
            raise
        if built != recorded:
            await store.aclose()
            raise ConfigurationError(
                f"The index was built with embedder '{recorded.name}' (dimension "
                f"{recorded.dimension}), which cannot be rebuilt here (got '{built.name}'). "
                "Set SITECHAT_EMBEDDINGS__PROVIDER and SITECHAT_EMBEDDINGS__MODEL to match it."
            )
        return store, embeddings
    if embeddings is None:
        embeddings = build_embeddings(settings)
    info: EmbedderInfo = await aembedder_info(embeddings)
    store = await store_cls.open(settings, info, create=create)
    return store, embeddings


def _embeddings_for(recorded: EmbedderInfo, settings: Settings) -> Embeddings:
    """Rebuild the embedder an index records, named ``provider[:model]`` (sitechat's own,
    and plugins that declare such an ``embedder_name``) or ``ClassName[:model]`` (any
    other LangChain embedder), found among the registered classes."""
    head, _, model = recorded.name.partition(":")
    provider = _recorded_provider(recorded, head)
    adopted = settings.model_copy(
        update={
            "embeddings": settings.embeddings.model_copy(
                update={"provider": provider, "model": model or None}
            )
        }
    )
    return build_embeddings(adopted)


def _recorded_provider(recorded: EmbedderInfo, head: str) -> str:
    if head in available("embeddings"):
        return head
    by_class = names_of_class("embeddings", head)
    if len(by_class) == 1:
        return by_class[0]
    if by_class:
        found = f"the installed {', '.join(by_class)} each register a class named '{head}'"
    else:
        found = f"no installed embeddings provider is named '{head}' or registers such a class"
    raise ConfigurationError(
        f"The index was built with the embedder '{recorded.name}' (dimension "
        f"{recorded.dimension}), and {found}. Set SITECHAT_EMBEDDINGS__PROVIDER to the "
        "provider that built it (and SITECHAT_EMBEDDINGS__MODEL if it takes a model); "
        f"installed: {', '.join(available('embeddings'))}. (A plugin embedder is found "
        "without it when its embedder_name starts with its entry-point name.)"
    )


async def build_chat_service(settings: Settings) -> Any:
    """The configured chat service over the configured LLM and the index in settings."""
    # configuration errors surface before any index is touched
    llm = build_llm(settings)
    cls = load_provider("chat", settings.chat.provider)
    try:
        store, embeddings = await open_store(settings)
    except BaseException:
        await llm.aclose()
        raise
    return cls.from_components(settings, llm=llm, embeddings=embeddings, store=store)
