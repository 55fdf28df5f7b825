#!/bin/sh
# The image's install step, also run by tests/deploy/test_image_install.py in a fresh virtualenv
# (there is no container runtime on the test machines).
# Usage: PLUGINS="storage-s3 webui ..." install.sh SOURCE_DIR VENV
# Installs the core and each named plugin (a directory under plugins/, or "webui") from SOURCE_DIR,
# checks the result, and writes a CycloneDX SBOM of VENV's Python environment to VENV/../sbom.cdx.json.
set -eu
src="$1"
venv="$2"
pip="$venv/bin/pip"
"$pip" install --no-cache-dir --upgrade pip
set -- "$src/core"
for plugin in ${PLUGINS:-}; do
  if [ "$plugin" = webui ]; then
    set -- "$@" "$src/webui"
  elif [ -d "$src/plugins/$plugin" ]; then
    set -- "$@" "$src/plugins/$plugin"
  else
    echo "install.sh: no plugin directory plugins/$plugin" >&2
    exit 1
  fi
done
"$pip" install --no-cache-dir "$@"
"$pip" check
# The SBOM tool goes into a separate environment so that it is not part of what it describes.
tool="$(mktemp -d)"
"$venv/bin/python" -m venv "$tool"
"$tool/bin/pip" install --no-cache-dir "cyclonedx-bom>=7,<8"
"$tool/bin/cyclonedx-py" environment --output-format JSON --output-file "$venv/../sbom.cdx.json" "$venv"
rm -rf "$tool"
"$venv/bin/tfr" plugins
