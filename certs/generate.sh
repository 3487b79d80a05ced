#!/usr/bin/env bash
# Make the webhook's CA and serving certificate without the Helm chart; see certs/README.md.
# A thin wrapper so there is one implementation: `python -m webhook certs` (webhook/certs.py).
set -euo pipefail
exec "${PYTHON:-python3}" -m webhook certs "$@"
