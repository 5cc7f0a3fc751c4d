"""The documentation site (mkdocs.yml, docs/): it builds with ``--strict`` (a broken link, a
page missing from the nav or a nav entry without its page fails), every alert rule has a
runbook in the nav, every setting is named on some page, the OpenAPI reference is the code's,
and the README stays a short entrance whose links to the site resolve."""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from markdown.extensions.toc import slugify

from deploy.docs_openapi import FACTORIES, openapi_documents
from shared.config import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
PROMETHEUS = ROOT / "deploy" / "prometheus"
README_MAX_LINES = 250

#: a Markdown link's target: ``[text](target)``
LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site built as ``make docs`` builds it (strict), into a folder of the test's own."""
    out = tmp_path_factory.mktemp("site")
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert build.returncode == 0, build.stdout + build.stderr
    return out


def nav_pages(entries: Any) -> Iterator[str]:
    """Every page path of mkdocs.yml's nav, however deep."""
    if isinstance(entries, str):
        yield entries
    elif isinstance(entries, list):
        for entry in entries:
            yield from nav_pages(entry)
    elif isinstance(entries, dict):
        for value in entries.values():
            yield from nav_pages(value)


def nav() -> list[str]:
    return list(nav_pages(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]))


def rules() -> dict[str, dict[str, Any]]:
    """Every alert rule of deploy/prometheus, by name."""
    found: dict[str, dict[str, Any]] = {}
    for path in PROMETHEUS.glob("*.yaml"):
        for group in (yaml.safe_load(path.read_text()) or {}).get("groups", []):
            found |= {rule["alert"]: rule for rule in group["rules"] if "alert" in rule}
    return found


def alert_names() -> set[str]:
    return set(rules())


def anchors(page: Path) -> set[str]:
    """The heading ids MkDocs gives a page (the toc extension's slugify)."""
    fenced, ids = False, set()
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            ids.add(slugify(line.lstrip("#").strip().replace("`", ""), "-"))
    return ids


def test_the_site_builds_strictly(site: Path) -> None:
    assert (site / "index.html").is_file()
    assert (site / "runbooks" / "index.html").is_file()
    for page in nav():  # use_directory_urls: a.md -> a/index.html, x/index.md -> x/index.html
        stem = page.removesuffix(".md")
        built = site / (stem.removesuffix("index") if stem.endswith("index") else stem)
        assert (built / "index.html").is_file(), page


def test_the_api_reference_is_the_code(site: Path) -> None:
    """The OpenAPI documents the site renders are the ones the app factories build now."""
    documents = openapi_documents()
    assert set(documents) == set(FACTORIES) == {"tracker", "attribution", "commission"}
    for service, text in documents.items():
        built = json.loads((site / "openapi" / f"{service}.json").read_text())
        assert built == json.loads(text)
    assert "/v1/events" in json.loads(documents["tracker"])["paths"]
    assert "/v1/payouts" in json.loads(documents["commission"])["paths"]
    api = (site / "api" / "index.html").read_text()
    assert "<!-- routes:" not in api
    for service, text in documents.items():
        assert f"openapi/{service}.json" in api
        for path, operations in json.loads(text)["paths"].items():  # the searchable route table
            for method in operations:
                cells = f"<td><code>{method.upper()}</code></td>\n<td><code>{html.escape(path)}"
                assert cells in api, (service, method, path)


def test_every_alert_rule_has_a_runbook_in_the_nav() -> None:
    alerts = alert_names()
    assert len(alerts) >= 9, alerts  # tests/deploy/test_observability.py's required ones at least
    runbooks = {
        page: (DOCS / page).read_text().splitlines()[0]
        for page in nav()
        if page.startswith("runbooks/")
    }
    for alert in sorted(alerts):
        pages = [page for page, title in runbooks.items() if f"`{alert}`" in title]
        assert len(pages) == 1, f"{alert}: no runbook (docs/runbooks/, in mkdocs.yml's nav)"
        expression = " ".join(str(rules()[alert]["expr"]).split())
        assert f"`{expression}`" in (DOCS / pages[0]).read_text(), f"{alert}: expression changed"


def test_every_setting_is_named_on_some_page() -> None:
    text = "\n".join(page.read_text() for page in DOCS.rglob("*.md"))
    prefix = Settings.model_config.get("env_prefix", "").upper()
    assert prefix == "ALLIANCE_"
    missing = [f"{prefix}{name.upper()}" for name in Settings.model_fields]
    missing = [variable for variable in missing if variable not in text]
    assert not missing, f"settings named on no page of docs/: {missing}"


def test_the_readme_is_short() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) < README_MAX_LINES
    assert "make demo" in README.read_text()
    assert "make test" in README.read_text()


def test_the_readme_links_resolve() -> None:
    pages = set(nav())
    targets = [t for t in LINK.findall(README.read_text()) if "://" not in t]
    into_docs = [t for t in targets if t.startswith("docs/")]
    assert len(into_docs) >= 20, into_docs
    for target in targets:
        path, _, anchor = target.partition("#")
        assert (ROOT / path).exists(), target
        if path.startswith("docs/"):
            assert path.removeprefix("docs/") in pages, f"{target}: not in mkdocs.yml's nav"
        if anchor:
            assert anchor in anchors(ROOT / path), target


def test_the_reserved_pages_wait_in_the_nav() -> None:
    """Pages written on other branches are named in a commented block of mkdocs.yml, to be
    uncommented when they land; once a page exists it must be in the nav (strict says so too)."""
    config = (ROOT / "mkdocs.yml").read_text()
    for page in ("retention.md", "partners.md", "incentives.md", "logs-and-traces.md"):
        if (DOCS / page).exists():
            assert page in nav(), f"docs/{page} exists: uncomment its entry in mkdocs.yml"
        else:
            assert re.search(rf"^\s*# - [^:]+: {re.escape(page)}$", config, re.M), page
