#!/usr/bin/env bash
# Refreshes the web console's screenshots (docs/console/*.png, shown in docs/console.md): runs the
# browser test (headless Chromium through chromedriver, Debian's `chromium` and
# `chromium-driver`) with ALIOT_CONSOLE_SCREENSHOTS set, which makes it save a PNG of each main page.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"
ALIOT_CONSOLE_SCREENSHOTS="$PWD/docs/console" cargo test -p aliot-hub --test console_browser
ls -l docs/console/*.png
