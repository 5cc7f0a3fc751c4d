"""The import contract (``.importlinter``): deploy above the services above shared, the three
services independent of each other, shared a library that imports no service and no deploy
module. Checked by import-linter, which reads the imports of the source without running it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / ".importlinter"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"

#: the contracts of .importlinter, by their names
LAYERS = "deploy above the services above shared, the three services independent"
SHARED = "shared imports no service and no deploy module"
SERVICES = "no service imports deploy"
ORDERS_DOOR = "Commission: only orders/ imports orders/repository.py (others use orders/service.py)"
ROUTES = "Commission: routes and consumers never import a repository (they call a service)"
CLIENT_ALONE = (
    "the Python client imports no service, no shared module and no deploy module (it installs "
    "apart)"
)
NO_CLIENT = (
    "no service and no shared module imports the Python client (only deploy and the tests use it)"
)
COMMISSION_LAYERS = (
    "Commission: in each module, endpoints and consumers call the service, the service the "
    "repository"
)
#: every contract's name, read from the file
CONTRACTS = [
    line.removeprefix("name = ").strip()
    for line in CONFIG.read_text().splitlines()
    if line.startswith("name = ")
]
COMMISSION_MODULES = (
    "admin",
    "audit",
    "camp",
    "channel",
    "finance",
    "orders",
    "partners",
    "program",
    "privacy",
    "reports",
    "webhooks",
)


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` on the root packages found in ``cwd`` (first on the path: ahead of the
    installed project), with the repository's contracts."""
    env = {**os.environ, "PYTHONPATH": str(cwd), "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", str(CONFIG)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_repository_keeps_its_import_contract() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in result.stdout


class TestTheContractCatchesViolations:
    """A throw-away tree shaped like the project's, with one import that breaks a rule."""

    @staticmethod
    def tree(root: Path, module: str, source: str) -> None:
        for package in (
            "shared",
            "services",
            "services.tracker",
            "services.attribution",
            "services.commission",
            "deploy",
            "alliance_client",
        ):
            folder = root.joinpath(*package.split("."))
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "__init__.py").touch()
        for name in COMMISSION_MODULES:  # the rooms of the commission service, empty
            folder = root / "services" / "commission" / name
            folder.mkdir()
            for part in ("__init__", "endpoints", "service", "repository"):
                (folder / f"{part}.py").touch()
        for part in ("app", "deps"):
            (root / "services" / "commission" / f"{part}.py").touch()
        (root / "shared" / "money.py").write_text("ZERO = 0\n")
        (root / "services" / "commission" / "ledger.py").write_text("LEDGER = 1\n")
        (root / "deploy" / "cli.py").write_text("import services.commission.ledger\n")
        (root / "alliance_client" / "signing.py").write_text("SIGN = 1\n")
        root.joinpath(*module.split(".")).with_suffix(".py").write_text(source)

    @pytest.mark.parametrize(
        ("module", "source", "broken", "chain"),
        [
            (
                "shared.events",
                "from services.commission import ledger\n",
                {LAYERS, SHARED},
                "shared.events -> services.commission.ledger",
            ),
            (
                "shared.config",
                "import deploy.cli\n",
                {LAYERS, SHARED},
                "shared.config -> deploy.cli",
            ),
            (
                "services.tracker.app",
                "from deploy import cli\n",
                {LAYERS, SERVICES},
                "services.tracker.app -> deploy.cli",
            ),
            (
                "services.attribution.service",
                "from services.commission.ledger import LEDGER\n",
                {LAYERS},
                "services.attribution.service -> services.commission.ledger",
            ),
            (
                "services.commission.reports.service",
                "from services.commission.orders import repository\n",
                {ORDERS_DOOR},
                "services.commission.reports.service -> services.commission.orders.repository",
            ),
            (
                "services.commission.orders.endpoints",
                "from services.commission.orders import repository\n",
                {ROUTES},
                "services.commission.orders.endpoints -> services.commission.orders.repository",
            ),
            (
                "services.commission.orders.repository",
                "from services.commission.orders import service\n",
                {COMMISSION_LAYERS},
                "services.commission.orders.repository -> services.commission.orders.service",
            ),
            (
                "services.tracker.endpoints",
                "from alliance_client import signing\n",
                {NO_CLIENT},
                "services.tracker.endpoints -> alliance_client.signing",
            ),
            (
                "alliance_client.clients",
                "from shared.money import ZERO\n",
                {CLIENT_ALONE},
                "alliance_client.clients -> shared.money",
            ),
        ],
        ids=[
            "shared-imports-a-service",
            "shared-imports-deploy",
            "service-imports-deploy",
            "service-imports-a-sibling",
            "a-module-uses-another-modules-repository",
            "a-route-skips-its-service",
            "a-repository-calls-up-into-its-service",
            "a-service-imports-the-client",
            "the-client-imports-shared",
        ],
    )
    def test_a_forbidden_import_breaks_its_contract(
        self, tmp_path: Path, module: str, source: str, broken: set[str], chain: str
    ) -> None:
        self.tree(tmp_path, module, source)
        result = lint_imports(tmp_path)
        out = result.stdout
        assert result.returncode == 1, out + result.stderr
        reported = {name for name in CONTRACTS if f"{name} BROKEN" in out}
        assert reported == broken, out
        assert chain in out

    def test_the_same_tree_without_the_import_keeps_it(self, tmp_path: Path) -> None:
        self.tree(tmp_path, "shared.events", "from shared.money import ZERO\n")
        result = lint_imports(tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in result.stdout
