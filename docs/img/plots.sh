#!/usr/bin/env bash
# Redraws the benchmark pictures in docs/img/ from the tables in docs/benchmarks.md (after a
# new `tests/compare.sh` run, for example). Installs matplotlib from PyPI into a venv under
# $OUTBOX_RELAY_CACHE (~/.cache/outbox-relay/plots-venv) on first use.
#
# Usage: docs/img/plots.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
# shellcheck source=SCRIPTDIR/../../deploy/local/env.sh
source "$root/deploy/local/env.sh"
# shellcheck source=SCRIPTDIR/venv.sh
source "$here/venv.sh"

plots_venv
"$PLOTS_VENV/bin/python" "$here/plots.py" "$root/docs/benchmarks.md" "$here"
