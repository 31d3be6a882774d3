"""How the code is laid out: the application never imports the development launcher, and no import
cycle is broken by an import inside a function."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

from eventflow.conf import BASE_DIR

APPS = ("eventflow", "streams", "ingestion", "consumers", "analytics")
FIRST_PARTY = (*APPS, "launcher")
# Imports inside a function that stay, and why (each one says so where it is). Besides these,
# each app's AppConfig.ready() (apps.py) imports its models and services, as Django asks:
# they can't be imported while the app registry is loading.
FUNCTION_IMPORTS_ALLOWED = {
    # Reads models for the web's collectors: imported once Django's apps are loaded (worker_ready).
    ("eventflow/celery.py", "eventflow.metrics_http"),
}


def app_modules() -> list[Path]:
    return [
        path
        for app in APPS
        for path in sorted((BASE_DIR / app).rglob("*.py"))
        if "tests" not in path.relative_to(BASE_DIR).parts
    ]


def imports(path: Path, root: Path = BASE_DIR) -> list[tuple[str, bool]]:
    """(module, inside a function) for every import of ``path``, relative ones resolved."""
    relative = path.relative_to(root)
    package = list(relative.parent.parts)
    tree = ast.parse(path.read_text(), filename=str(path))
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            inside.update(id(sub) for sub in ast.walk(node) if sub is not node)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in inside) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.append((module, id(node) in inside))
    return found


def test_no_application_module_imports_the_launcher():
    offenders = [
        f"{path.relative_to(BASE_DIR)}: {module}"
        for path in app_modules()
        for module, _ in imports(path)
        if module == "launcher" or module.startswith("launcher.")
    ]
    assert offenders == []


def test_importing_the_application_does_not_load_the_launcher():
    code = (
        "import sys, django; django.setup()\n"
        "import eventflow.urls, eventflow.celery, eventflow.__main__\n"
        "from django.apps import apps\n"
        "for config in apps.get_app_configs(): __import__(config.name)\n"
        "for app in ('ingestion', 'consumers', 'analytics', 'streams', 'eventflow'): __import__(app + '.tasks')\n"
        "print(sorted(m for m in sys.modules if m == 'launcher' or m.startswith('launcher.')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "eventflow.settings"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_no_import_cycle_is_broken_by_an_import_inside_a_function():
    found = {
        (str(path.relative_to(BASE_DIR)), module)
        for path in app_modules()
        for module, in_function in imports(path)
        if in_function and module.split(".")[0] in FIRST_PARTY and path.name != "apps.py"
    }
    assert sorted(found - FUNCTION_IMPORTS_ALLOWED) == [], "move the function, or import at the top"


def test_the_checks_see_relative_and_function_imports(tmp_path):
    module = tmp_path / "ingestion" / "probe.py"
    module.parent.mkdir()
    module.write_text("from .tasks import x\n\ndef f():\n    from launcher.devservices import free_port\n")
    assert sorted(imports(module, root=tmp_path)) == [("ingestion.tasks", False), ("launcher.devservices", True)]
