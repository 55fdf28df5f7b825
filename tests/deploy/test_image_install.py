"""The image's install step (deploy/docker/install.sh, what the Dockerfile's build stage runs) in a fresh
virtualenv.  There is no container runtime on the test machines, so the image itself is not built here:
this runs the same script with the Dockerfile's default PLUGINS list (read from the Dockerfile), minus the
plugins named in TFREGISTRY_TEST_IMAGE_SKIP_PLUGINS when a checkout does not have them yet."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

from tests.deploy.conftest import DEPLOY, ROOT, SKIP_PLUGINS, dockerfile_plugins


def test_dockerfile_default_plugins_are_the_issue_list() -> None:
    assert dockerfile_plugins() == ["storage-local", "storage-s3", "storage-azure", "storage-gcs", "auth-oidc",
                                    "auth-azuread", "webui", "notify-smtp", "notify-webhook", "metrics"]


def test_image_install_steps_in_a_fresh_virtualenv(tmp_path: Path) -> None:
    plugins = [p for p in dockerfile_plugins() if p not in SKIP_PLUGINS]
    missing = [p for p in plugins if p != "webui" and not (ROOT / "plugins" / p).is_dir()]
    assert not missing, f"plugins named by the Dockerfile are missing: {missing} (TFREGISTRY_TEST_IMAGE_SKIP_PLUGINS)"
    target = tmp_path / "opt" / "venv"
    venv.create(target, with_pip=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TFR_", "VIRTUAL_ENV", "PYTHONPATH"))}
    env["PLUGINS"] = " ".join(plugins)
    env["TMPDIR"] = str(tmp_path)
    result = subprocess.run(["sh", str(DEPLOY / "docker" / "install.sh"), str(ROOT), str(target)],
                            env=env, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    installed = subprocess.run([str(target / "bin" / "python"), "-m", "pip", "list", "--format=json"],
                               capture_output=True, text=True, check=True).stdout
    names = {p["name"].lower() for p in json.loads(installed)}
    expected = {"tfregistry"} | {f"tfregistry-{p}" for p in plugins}
    assert expected <= names, sorted(expected - names)
    assert "cyclonedx-bom" not in names, "the SBOM tool must not end up in the image's environment"
    sbom = json.loads((target.parent / "sbom.cdx.json").read_text())
    assert sbom["bomFormat"] == "CycloneDX"
    components = {c["name"].lower() for c in sbom["components"]}
    assert expected <= components, sorted(expected - components)
    help_text = subprocess.run([str(target / "bin" / "tfr"), "web", "--help"], capture_output=True, text=True,
                               env=env, check=True).stdout
    assert "gunicorn" in help_text
    assert sys.executable not in help_text
