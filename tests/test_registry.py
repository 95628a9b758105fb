"""Provider discovery through entry points: built-ins, plugins, broken plugins, laziness."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from sitechat import registry
from sitechat.errors import PluginError, ProviderNotFoundError
from sitechat.llm.base import BaseLLMService

PLUGIN_SRC = Path(__file__).parent / "plugins" / "demo_plugin"
CLASH_SRC = Path(__file__).parent / "plugins" / "clash_plugin"


def test_builtins_are_registered_like_plugins() -> None:
    """sitechat's own providers are found through its pyproject's entry points."""
    assert "extractive" in registry.available("llm")
    assert "hashing" in registry.available("embeddings")
    assert "faiss" in registry.available("vectorstores")
    assert "retrieval" in registry.available("chat")
    info = {p.name: p for p in registry.list_providers("llm")}["extractive"]
    assert info.distribution == "sitechat"


def test_unknown_name_lists_the_available_ones() -> None:
    """Asking for a provider that does not exist names the ones that do."""
    with pytest.raises(ProviderNotFoundError, match="extractive") as info:
        registry.load_provider("llm", "no-such-llm")
    assert "no-such-llm" in str(info.value)


def test_unknown_group_is_an_error() -> None:
    """A typo in the group name is reported with the known groups."""
    with pytest.raises(PluginError, match="llm"):
        registry.available("llms")


def test_loads_a_subclass_of_the_group_base() -> None:
    """Loading a built-in returns the class, validated against its ABC."""
    cls = registry.load_provider("llm", "extractive")
    assert issubclass(cls, BaseLLMService)


def test_listing_imports_no_provider_module() -> None:
    """Listing providers reads metadata only; selecting one imports only that module."""
    code = (
        "import sys, sitechat.registry as r; r.list_providers();"
        "before = 'sitechat.vectorstores.faiss' in sys.modules or 'faiss' in sys.modules;"
        "r.load_provider('llm', 'extractive');"
        "after = 'faiss' in sys.modules;"
        "print(before, after)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# a Python without the [pgvector] extra: importing its packages fails as if not installed
_WITHOUT_PGVECTOR_EXTRA = (
    "import sys\n"
    "for name in ('psycopg', 'psycopg_pool', 'pgvector'):\n"
    "    sys.modules[name] = None\n"
    "from sitechat.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def test_pgvector_without_its_extra_is_listed_and_names_the_extra(tmp_path: Path) -> None:
    """Without psycopg the built-in pgvector store is listed as fine (no warning), like
    openai and bedrock, and selecting it says to install sitechat[pgvector]."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SITECHAT_")}

    def run(*args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-c", _WITHOUT_PGVECTOR_EXTRA, *args]
        return subprocess.run(
            command, capture_output=True, text=True, env={**env, **extra_env}, cwd=tmp_path
        )

    listed = run("providers", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {(r["group"], r["name"]): r for r in json.loads(listed.stdout)}
    assert rows[("vectorstores", "pgvector")]["ok"] is True
    assert listed.stderr == ""  # no "skipping provider" warning

    selected = run(
        "search",
        "notes",
        "--index",
        "docs",
        SITECHAT_VECTORSTORE__PROVIDER="pgvector",
        SITECHAT_PGVECTOR__DSN="postgresql://u:secret@127.0.0.1:9/db",
    )
    assert selected.returncode == 1
    assert "pip install 'sitechat[pgvector]'" in selected.stderr, selected.stderr
    assert "Reinstall" not in selected.stderr and "secret" not in selected.stderr


@pytest.fixture(scope="module")
def plugin_dir(pip_install_into: Callable[[Path], Path]) -> Path:
    """The demo plugin package, really installed (pip, no network) into a target folder."""
    return pip_install_into(PLUGIN_SRC)


def _run(
    plugin_dir: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONPATH": str(plugin_dir), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "sitechat.cli", *args], capture_output=True, text=True, env=full_env
    )


def _ask_with_llm(
    plugin_dir: Path, provider: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`sitechat ask` with ``provider`` as the LLM: it fails when that LLM is built."""
    llm = {"SITECHAT_LLM__PROVIDER": provider}
    return _run(plugin_dir, "ask", "hi", "--index", "nowhere", env={**(env or {}), **llm})


@pytest.mark.slow
def test_installed_plugin_is_listed_with_its_distribution(plugin_dir: Path) -> None:
    """`sitechat providers` lists a pip-installed plugin and flags its broken entries."""
    result = _run(plugin_dir, "providers", "--json")
    assert result.returncode == 0, result.stderr
    rows = {(r["group"], r["name"]): r for r in json.loads(result.stdout)}
    echo = rows[("llm", "demo-echo")]
    assert (echo["distribution"], echo["version"], echo["ok"]) == (
        "sitechat-demo-plugin",
        "1.2.3",
        True,
    )
    broken = rows[("llm", "demo-broken-import")]
    assert not broken["ok"]
    assert "sitechat-demo-plugin" in broken["error"]
    assert "failed to import" in broken["error"]
    wrong = rows[("llm", "demo-not-a-service")]
    assert "not a subclass of BaseLLMService" in wrong["error"]
    # the broken entries never hide the working ones
    assert rows[("llm", "extractive")]["ok"]


@pytest.mark.slow
def test_plugin_is_selectable_through_settings(plugin_dir: Path) -> None:
    """SITECHAT_LLM__PROVIDER picks the plugin, which reads its own SITECHAT_DEMO_ECHO__ section."""
    code = (
        "import asyncio\n"
        "from langchain_core.messages import HumanMessage\n"
        "from sitechat.config import Settings\n"
        "from sitechat.factories import build_llm\n"
        "llm = build_llm(Settings.load(env_file=None))\n"
        "answer = asyncio.run(llm.generate_response([HumanMessage('Question: hi')]))\n"
        "print(type(llm).__name__, answer)\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(plugin_dir),
        "SITECHAT_LLM__PROVIDER": "demo-echo",
        "SITECHAT_DEMO_ECHO__GREETING": "hello",
    }
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "EchoLLMService hello: hi"


@pytest.mark.slow
def test_broken_plugin_fails_clearly_only_when_selected(plugin_dir: Path) -> None:
    """Selecting the broken plugin gives one line naming it; other commands keep working."""
    result = _ask_with_llm(plugin_dir, "demo-broken-import")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "demo-broken-import" in result.stderr
    assert "sitechat-demo-plugin" in result.stderr
    ok = _run(plugin_dir, "providers")
    assert ok.returncode == 0
    assert "demo-echo" in ok.stdout


@pytest.mark.slow
def test_a_plugin_that_exits_or_leaks_a_secret_at_import_is_reported_broken(
    plugin_dir: Path,
) -> None:
    """sys.exit() at import is a BROKEN row like any import failure, not the end of the
    listing; an import error's credential is masked in the table, --json and selection."""
    table = _run(plugin_dir, "providers")
    assert table.returncode == 0, table.stderr
    assert "demo-echo" in table.stdout and "retrieval" in table.stdout  # the listing went on
    rows = {r["name"]: r for r in json.loads(_run(plugin_dir, "providers", "--json").stdout)}
    assert not rows["demo-exits"]["ok"]
    assert "SystemExit: demo: required native library not found" in rows["demo-exits"]["error"]
    assert "postgresql://***@db.internal" in rows["demo-leaks"]["error"]
    chosen = _run(
        plugin_dir, "ask", "hi", "--index", "nowhere", env={"SITECHAT_LLM__PROVIDER": "demo-leaks"}
    )
    assert chosen.returncode == 1 and "demo-leaks" in chosen.stderr
    for output in (table.stdout, table.stderr, json.dumps(rows), chosen.stderr):
        assert "hunter2pw" not in output


def test_check_providers_survives_a_plugin_that_exits(monkeypatch: pytest.MonkeyPatch) -> None:
    """check_providers() in an application reports a SystemExit at import as a broken
    provider instead of letting it end the program; Ctrl-C still stops it."""

    def exits() -> None:
        raise SystemExit("no native library")

    def interrupted() -> None:
        raise KeyboardInterrupt

    for load, caught in ((exits, None), (interrupted, KeyboardInterrupt)):
        ep = EntryPoint("demo-exits", "demo_missing:Nothing", "sitechat.llm")
        monkeypatch.setattr(EntryPoint, "load", lambda self, load=load: load())
        monkeypatch.setattr(registry, "entry_points", lambda group, ep=ep: [ep])
        registry.refresh()
        if caught is None:
            (status,) = registry.check_providers("llm")
            assert not status.ok and "SystemExit: no native library" in str(status.error)
        else:
            with pytest.raises(caught):
                registry.check_providers("llm")
    monkeypatch.undo()
    registry.refresh()


@pytest.mark.slow
def test_a_plugin_class_left_abstract_is_broken_and_blamed_on_the_plugin(
    plugin_dir: Path,
) -> None:
    """A class with unimplemented abstract methods is BROKEN naming them, and selecting it
    says the package is at fault rather than pointing at the user's variables."""
    rows = {r["name"]: r for r in json.loads(_run(plugin_dir, "providers", "--json").stdout)}
    assert not rows["demo-abstract"]["ok"]
    assert (
        "abstract methods of BaseLLMService unimplemented (_astream)"
        in (rows["demo-abstract"]["error"])
    )
    chosen = _ask_with_llm(plugin_dir, "demo-abstract")
    assert chosen.returncode == 1
    assert "bug in that package, not in your settings" in chosen.stderr
    assert "SITECHAT_DEMO_ABSTRACT__" not in chosen.stderr and "Traceback" not in chosen.stderr


@pytest.mark.slow
def test_a_name_two_distributions_register_is_shown_and_resolved_by_rule(
    plugin_dir: Path, pip_install_into: Callable[[Path], Path]
) -> None:
    """A plugin reusing a built-in's name is listed as ignored and sitechat's own is used;
    two plugins sharing a name make it ambiguous, and selecting it names both packages."""
    clash_dir = pip_install_into(CLASH_SRC)
    both = {"PYTHONPATH": f"{plugin_dir}{os.pathsep}{clash_dir}"}
    listed = _run(plugin_dir, "providers", "--json", env=both)
    assert listed.returncode == 0, listed.stderr
    rows = {r["name"]: r for r in json.loads(listed.stdout) if r["group"] == "llm"}
    builtin = rows["extractive"]
    assert (builtin["distribution"], builtin["ok"]) == ("sitechat", True)
    assert builtin["also_registered_by"] == ["sitechat-clash-plugin 0.9.0"]
    assert "also registered by sitechat-clash-plugin 0.9.0: ignored" in (
        _run(plugin_dir, "providers", env=both).stdout
    )
    echo = rows["demo-echo"]
    assert not echo["ok"]
    for part in ("sitechat-clash-plugin 0.9.0", "sitechat-demo-plugin 1.2.3", "ambiguous"):
        assert part in echo["error"]
    assert "sitechat-clash-plugin 0.9.0" in listed.stderr  # logged, naming both
    chosen = _ask_with_llm(plugin_dir, "demo-echo", both)
    assert chosen.returncode == 1 and "Uninstall all but one" in chosen.stderr


SAMPLE_SITE = Path(__file__).resolve().parent.parent / "examples" / "sample_site"


@pytest.mark.slow
def test_an_index_built_with_a_plugin_embedder_reopens_without_naming_it(
    plugin_dir: Path, tmp_path: Path
) -> None:
    """An index built with SITECHAT_EMBEDDINGS__PROVIDER=<plugin> is searched without it:
    the recorded class name leads back to the plugin's entry point."""
    index = str(tmp_path / "index")
    built = _run(
        plugin_dir,
        "ingest",
        str(SAMPLE_SITE),
        "--index",
        index,
        env={"SITECHAT_EMBEDDINGS__PROVIDER": "demo-wordbag"},
    )
    assert built.returncode == 0, built.stderr
    found = _run(plugin_dir, "search", "delete my account", "-k", "1", "--index", index)
    assert found.returncode == 0, found.stderr
    assert "account" in found.stdout.lower()


@pytest.mark.slow
def test_an_embedder_name_no_provider_matches_says_what_to_set(
    plugin_dir: Path, tmp_path: Path
) -> None:
    """An identity that leads to no installed provider names itself and the variable to set,
    and with that variable set the index reads."""
    index = str(tmp_path / "index")
    chosen = {"SITECHAT_EMBEDDINGS__PROVIDER": "demo-named"}
    built = _run(plugin_dir, "ingest", str(SAMPLE_SITE), "--index", index, env=chosen)
    assert built.returncode == 0, built.stderr
    failed = _run(plugin_dir, "search", "delete my account", "--index", index)
    assert failed.returncode == 1
    assert "Traceback" not in failed.stderr
    for part in ("'wordbag-v1'", "Set SITECHAT_EMBEDDINGS__PROVIDER", "demo-named"):
        assert part in failed.stderr
    assert _run(plugin_dir, "search", "delete", "--index", index, env=chosen).returncode == 0
