"""Embedders: any LangChain ``Embeddings``; the offline ``static`` and ``hashing`` ones."""
