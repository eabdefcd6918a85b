#!/usr/bin/env bash
# Installs the official device SDKs the interop tests drive, into .sdks/ (ignored by git):
#   .sdks/venv: aliyun-iot-linkkit 1.2.13 (the official Python SDK) with paho-mqtt 1.6.1; the
#   official server SDKs aliyun-python-sdk-core 2.16.0 + aliyun-python-sdk-iot 8.59.0 (OpenAPI V1)
#   and alibabacloud-iot20180120 5.1.0 (Tea, V3); the subscription consumers python-qpid-proton
#   0.40.0 (AMQP) and stomp.py 8.2.0 (the Python 3 sample's STOMP);
#   .sdks/node: alibabacloud-iot-device-sdk 1.2.8 (the official Node SDK), @alicloud/pop-core 1.8.0
#   (OpenAPI V1 over GET) and rhea 3.0.5 (AMQP); needs node and npm, installed from Debian when
#   missing.
# The tests look for them there (or where ALIOT_SDK_PYTHON and ALIOT_SDK_NODE_MODULES point)
# and fail with this script's name when they are missing. Needs python3 with venv (Debian: python3-venv) and PyPI.
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
.sdks/venv/bin/pip install --quiet --disable-pip-version-check 'paho-mqtt==1.6.1' 'aliyun-iot-linkkit==1.2.13' \
    'aliyun-python-sdk-core==2.16.0' 'aliyun-python-sdk-iot==8.59.0' 'alibabacloud-iot20180120==5.1.0' \
    'python-qpid-proton==0.40.0' 'stomp.py==8.2.0'
.sdks/venv/bin/python -c 'import linkkit, paho.mqtt; print("official Python SDK ready in .sdks/venv")'
.sdks/venv/bin/python -c 'import aliyunsdkcore, aliyunsdkiot, alibabacloud_iot20180120, proton, stomp; print("official server SDKs and consumers ready in .sdks/venv")'

if ! command -v npm >/dev/null 2>&1; then
    echo "node and npm are missing: installing them"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y nodejs npm
fi
if [[ ! -d .sdks/node/node_modules/alibabacloud-iot-device-sdk || ! -d .sdks/node/node_modules/rhea \
    || ! -d .sdks/node/node_modules/@alicloud/pop-core ]]; then
    mkdir -p .sdks/node
    npm install --prefix .sdks/node --no-audit --no-fund --silent alibabacloud-iot-device-sdk@1.2.8 \
        @alicloud/pop-core@1.8.0 rhea@3.0.5
fi
node -e 'require(process.argv[1]); console.log("official Node SDK ready in .sdks/node")' \
    "$PWD/.sdks/node/node_modules/alibabacloud-iot-device-sdk"
node -e 'for (const m of process.argv.slice(1)) require(m); console.log("@alicloud/pop-core and rhea ready in .sdks/node")' \
    "$PWD/.sdks/node/node_modules/@alicloud/pop-core" "$PWD/.sdks/node/node_modules/rhea"
