"""Ingestion: crawl or read a site, keep its main content, chunk it, embed what changed."""
