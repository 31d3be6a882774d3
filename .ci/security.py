"""CI's security checks that need more than one command: `pip-audit` and `secrets` (docs/SECURITY.md).

python .ci/security.py pip-audit   audit the pinned requirements; fails on a known vulnerability, reports
                                   (and does not fail on) a vulnerability service that cannot be reached
python .ci/security.py secrets     scan the tracked files with detect-secrets; fails on a secret that
                                   .secrets.baseline does not hold
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
REQUIREMENTS = ["requirements.txt", "requirements-dev.txt"]

# Known vulnerabilities accepted for now, each with its reason in docs/SECURITY.md ("Accepted findings").
# id -> reason; passed to pip-audit as --ignore-vuln.
IGNORED_VULNERABILITIES: dict[str, str] = {}

# The services pip-audit can ask, in order: PyPI's JSON API, then OSV.
SERVICES = ["pypi", "osv"]

# Secret detectors that match assignments such as `password = "…"`: in tests these are fixtures made up for
# the test, so there they are not reported. Every other detector (private keys, cloud and provider tokens,
# high-entropy strings) scans tests too.
TEST_ONLY_NOISE = {"Secret Keyword", "Basic Auth Credentials"}


def _audit(service: str) -> tuple[list[dict], list[dict], str]:
    """(dependencies with vulnerabilities, dependencies skipped, error) from one service."""
    command = [str(BIN / "pip-audit"), "--vulnerability-service", service, "--disable-pip", "--no-deps"]
    command += ["--progress-spinner", "off", "--format", "json", "--timeout", "20"]
    for requirements in REQUIREMENTS:
        command += ["--requirement", requirements]
    for vulnerability in IGNORED_VULNERABILITIES:
        command += ["--ignore-vuln", vulnerability]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)  # noqa: S603
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        return [], [], lines[-1] if lines else f"pip-audit exited {done.returncode} without a report"
    dependencies = report.get("dependencies", [])
    vulnerable = [d for d in dependencies if d.get("vulns")]
    skipped = [d for d in dependencies if d.get("skip_reason")]
    return vulnerable, skipped, ""


def pip_audit() -> int:
    unaudited: dict[str, str] = {}
    audited_by: dict[str, str] = {}
    for service in SERVICES:
        vulnerable, skipped, error = _audit(service)
        if vulnerable:
            print(f"pip-audit ({service}): known vulnerabilities in the pinned requirements:")
            for dependency in vulnerable:
                for vulnerability in dependency["vulns"]:
                    fixes = ", ".join(vulnerability.get("fix_versions") or []) or "no fixed version"
                    print(f"  {dependency['name']} {dependency['version']}: {vulnerability['id']} (fixed in {fixes})")
            print("Upgrade the pin, or accept the finding in docs/SECURITY.md and IGNORED_VULNERABILITIES.")
            return 1
        if error:
            print(f"pip-audit ({service}): the vulnerability service could not be reached: {error}")
            continue
        skipped_names = {d["name"] for d in skipped}
        for dependency in skipped:
            unaudited.setdefault(dependency["name"], dependency["skip_reason"])
        # A package one service audited is audited.
        for name in list(unaudited):
            if name not in skipped_names:
                audited_by[name] = service
                del unaudited[name]
        if not skipped:
            print(f"pip-audit ({service}): no known vulnerabilities in the pinned requirements")
            return 0
        print(f"pip-audit ({service}): {len(skipped)} pinned packages not audited: the service does not know them")
    if unaudited:
        print(
            f"pip-audit: NOT AUDITED: {len(unaudited)} pinned packages could not be checked, because no "
            "vulnerability service answered for them from this machine. No known vulnerability was reported "
            "for the rest. This does not fail CI; run `make security` where PyPI's JSON API or OSV answers."
        )
        for name, reason in sorted(unaudited.items()):
            print(f"  {name}: {reason}")
    else:
        print("pip-audit: no known vulnerabilities in the pinned requirements")
    return 0


def _scan() -> dict:
    command = [str(BIN / "detect-secrets"), "scan", "--exclude-files", r"^\.secrets\.baseline$"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True, timeout=600)  # noqa: S603
    return json.loads(done.stdout)


def _is_test(path: str) -> bool:
    return path.startswith("tests/") or "/tests/" in path or Path(path).name.startswith(("test_", "conftest"))


def secrets() -> int:
    baseline = json.loads((ROOT / ".secrets.baseline").read_text())
    # Keyed by the secret's hash and kind, not by file and line: code that moves keeps its reviewed strings.
    known = {(s["hashed_secret"], s["type"]) for found in baseline["results"].values() for s in found}
    new = []
    for path, found in _scan()["results"].items():
        for secret in found:
            if secret["type"] in TEST_ONLY_NOISE and _is_test(path):
                continue
            if (secret["hashed_secret"], secret["type"]) not in known:
                new.append((path, secret))
    if new:
        print("detect-secrets: strings that look like secrets and are not in .secrets.baseline:")
        for path, secret in new:
            print(f"  {path}:{secret['line_number']}: {secret['type']}")
        print(
            "Remove a real secret (and rotate it). A false positive: mark the line `# pragma: allowlist secret`, "
            "or add it with `detect-secrets scan --baseline .secrets.baseline` and review it (docs/SECURITY.md)."
        )
        return 1
    print(f"detect-secrets: no new secrets in the tracked files ({len(known)} reviewed strings in the baseline)")
    return 0


def main(argv: list[str]) -> int:
    checks = {"pip-audit": pip_audit, "secrets": secrets}
    if len(argv) != 1 or argv[0] not in checks:
        print(__doc__)
        return 2
    return checks[argv[0]]()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
