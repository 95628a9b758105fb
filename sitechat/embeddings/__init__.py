"""Embedders: any LangChain ``Embeddings``; the offline ``hashing`` default lives here."""
