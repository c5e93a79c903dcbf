#!/usr/bin/env bash
# The test suite: installs missing system libraries, builds in release mode (numeric code is far
# slower in debug) with @testable imports, runs every XCTest case.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
swift build -c release -Xswiftc -enable-testing --build-tests
swift test -c release -Xswiftc -enable-testing --disable-swift-testing --skip-build "$@"
