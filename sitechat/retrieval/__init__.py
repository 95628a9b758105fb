"""Retrieval: hybrid dense + keyword search fused by reciprocal rank."""
