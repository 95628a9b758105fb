"""A plugin module whose import error carries a credential."""

raise ImportError("cannot connect to postgresql://admin:hunter2pw@db.internal:5432/x")
