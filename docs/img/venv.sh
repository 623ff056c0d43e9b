# shellcheck shell=bash
# The Python environment of docs/img/plots.sh and docs/img/dashboard.sh: matplotlib from
# PyPI in a venv under $OUTBOX_RELAY_CACHE, pinned so that a redraw is reproducible.
# Sourced (after deploy/local/env.sh); defines PLOTS_VENV and plots_venv.
MATPLOTLIB_VERSION="${MATPLOTLIB_VERSION:-3.11.2}"
PLOTS_VENV="$OUTBOX_RELAY_CACHE/plots-venv"

plots_venv() {
    local stamp="$PLOTS_VENV/.versions" want="matplotlib==$MATPLOTLIB_VERSION"
    [[ -x "$PLOTS_VENV/bin/python" && "$(cat "$stamp" 2>/dev/null)" == "$want" ]] && return 0
    echo "pip install $want (venv $PLOTS_VENV)" >&2
    rm -rf "$PLOTS_VENV"
    python3 -m venv "$PLOTS_VENV"
    "$PLOTS_VENV/bin/pip" install -q --disable-pip-version-check "$want"
    printf '%s' "$want" >"$stamp"
}
