"""Developer sessions: ``nox -s tests lint typecheck docs`` (``nox -l`` lists them)."""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["tests", "lint", "typecheck", "docs"]
nox.options.reuse_existing_virtualenvs = True
# a missing interpreter is skipped locally but fails under CI=true
nox.options.error_on_missing_interpreters = bool(os.environ.get("CI"))

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the test suite against the installed package."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """ruff lint and format check."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python="3.11")
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package."""
    session.install("-e", ".[test]")
    session.run("mypy", "--strict", "sitechat")


@nox.session(python="3.11")
def docs(session: nox.Session) -> None:
    """Build the documentation site, failing on any warning."""
    session.install("-e", ".[docs]")
    session.run(
        "mkdocs",
        "build",
        "--strict",
        "-f",
        "docs/mkdocs.yml",
        "-d",
        "../site",
        env={"NO_MKDOCS_2_WARNING": "1"},
    )


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """Run the benchmark scripts; they print figures and ratios against in-process baselines."""
    session.install("-e", ".[test]", "bm25s>=0.2", "PyStemmer>=2.2")  # bm25s: bench_keyword
    for script in (
        sorted(os.listdir("tests/benchmarks")) if os.path.isdir("tests/benchmarks") else []
    ):
        if script.startswith("bench_") and script.endswith(".py"):
            session.run("python", f"tests/benchmarks/{script}", *session.posargs)
