"""Python face of the native core (compiled from `_native/`)."""

import os

BIN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bin")
SUPERVISOR_BINARY = os.path.join(BIN_DIR, "taskagent-supervisor")
