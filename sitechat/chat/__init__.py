"""Chat: the :class:`~sitechat.chat.base.ChatService` contract, prompts, history, sync façade."""
