"""Registers a built-in's name and another plugin's: neither may ever be imported from here."""

raise ImportError("sitechat_clash_plugin must never be imported")
