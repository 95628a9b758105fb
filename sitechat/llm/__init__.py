"""LLM services: the :class:`~sitechat.llm.base.BaseLLMService` contract and its providers."""
