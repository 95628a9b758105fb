"""Real documentation sites on this machine, and serving a folder over HTTP the way
``python -m http.server`` does: shared by the tests and the benchmark scripts."""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

#: Debian's ``python3.11-doc`` package: the Python 3.11 documentation (530 pages).
PYTHON_DOCS = Path("/usr/share/doc/python3.11/html")


def _rust_book() -> Path | None:
    """The HTML of *The Rust Programming Language* that rustup's ``rust-docs`` installs."""
    found = sorted(Path.home().glob(".rustup/toolchains/stable-*/share/doc/rust/html/book"))
    if not found and shutil.which("rustc"):
        sysroot = subprocess.run(
            ["rustc", "--print", "sysroot"], capture_output=True, text=True, check=False
        ).stdout.strip()
        found = [Path(sysroot) / "share" / "doc" / "rust" / "html" / "book"] if sysroot else []
    return next((book for book in found if (book / "index.html").is_file()), None)


#: The Rust book, or None when rustup's ``rust-docs`` component is not installed.
RUST_BOOK = _rust_book()


def _next_to_the_rust_book(name: str) -> Path | None:
    """Another book the same component installs next to the Rust book, or None."""
    folder = RUST_BOOK.parent / name if RUST_BOOK is not None else None
    return folder if folder is not None and (folder / "index.html").is_file() else None


#: *The Cargo Book*, *The rustc book*, *The Rust Reference* and the Edition Guide, or None
#: when not installed.
CARGO_BOOK = _next_to_the_rust_book("cargo")
RUSTC_BOOK = _next_to_the_rust_book("rustc")
RUST_REFERENCE = _next_to_the_rust_book("reference")
EDITION_GUIDE = _next_to_the_rust_book("edition-guide")


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log on the console."""


@contextmanager
def served(directory: Path) -> Iterator[str]:
    """``directory`` on 127.0.0.1 at a free port: yields ``http://127.0.0.1:PORT``."""
    handler = partial(_QuietHandler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
