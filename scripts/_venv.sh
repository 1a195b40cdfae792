# Sourced by scripts/pttui and scripts/test: make .venv exist and match pyproject.toml.
# Reinstalls only when pyproject.toml changed since the last install.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${PTTUI_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
stamp="$VENV/.pttui-installed"
want="$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)"
if [ ! -x "$VENV/bin/python" ]; then
    echo "pttui: creating $VENV (first run; installing torch takes a few minutes)" >&2
    "$PY" -m venv "$VENV"
fi
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    echo "pttui: installing pttui and its dependencies into $VENV" >&2
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$ROOT[test]" >&2
    echo "$want" > "$stamp"
fi
