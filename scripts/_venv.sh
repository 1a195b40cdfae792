# Sourced by scripts/pttui and scripts/test: make .venv exist and match pyproject.toml.
# Reinstalls only when pyproject.toml changed since the last install, saying what it
# does as it goes (pip's whole output is kept in $VENV/pip-install.log).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${PTTUI_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
stamp="$VENV/.pttui-installed"
want="$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)"
_setup_t0=$SECONDS

_say() { printf 'pttui setup [%3ds] %s\n' "$((SECONDS - _setup_t0))" "$*" >&2; }

# One line per stage of pip's work, from its own output.
_pip_stages() {
    local line collected=0
    while IFS= read -r line; do
        case "$line" in
            Collecting\ *)
                collected=$((collected + 1))
                if [ $((collected % 15)) -eq 1 ]; then
                    _say "resolving dependencies: ${line#Collecting } ($collected so far)"
                fi ;;
            *Downloading\ *) _say "downloading ${line##*Downloading }" ;;
            "Installing collected packages:"*)
                _say "unpacking $collected packages into $VENV (torch and its CUDA libraries are most of it)" ;;
            "Successfully installed"*) _say "installed" ;;
        esac
    done
}

if [ ! -x "$VENV/bin/python" ]; then
    _say "creating $VENV ($("$PY" --version 2>&1))"
    "$PY" -m venv "$VENV"
fi
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    log="$VENV/pip-install.log"
    _say "installing pttui and its dependencies: the first time about 5.5 GB (torch with its CUDA"
    _say "libraries); 1-3 minutes from a local package cache, longer over a slow network"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip > "$log" 2>&1 \
        || { _say "upgrading pip failed; the end of $log:"; tail -n 20 "$log" >&2; exit 1; }
    if ! "$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar off \
            -e "$ROOT[test]" 2>&1 | tee -a "$log" | _pip_stages; then
        _say "installing failed; the end of $log:"
        tail -n 20 "$log" >&2
        exit 1
    fi
    echo "$want" > "$stamp"
    _say "ready: torch $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("torch"))') in $VENV"
fi
