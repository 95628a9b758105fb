"""Vector stores: the :class:`~sitechat.vectorstores.base.VectorStore` contract and its stores."""
