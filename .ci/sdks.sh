#!/usr/bin/env bash
# Installs the official device SDKs the interop tests drive, into .sdks/ (ignored by git):
#   .sdks/venv: aliyun-iot-linkkit 1.2.13 (the official Python SDK) with paho-mqtt 1.6.1.
# The tests look for them there (or where ALIOT_SDK_PYTHON points) and fail with this script's
# name when they are missing. Needs python3 with venv (Debian: python3-venv) and PyPI.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    echo "python3 venv is missing: installing python3-venv"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y python3-venv
fi
if [[ ! -x .sdks/venv/bin/python ]]; then
    python3 -m venv .sdks/venv
fi
.sdks/venv/bin/pip install --quiet --disable-pip-version-check 'paho-mqtt==1.6.1' 'aliyun-iot-linkkit==1.2.13'
.sdks/venv/bin/python -c 'import linkkit, paho.mqtt; print("official Python SDK ready in .sdks/venv")'
