# Source this to get the tools scripts/setup.sh installed on PATH.
_observatory_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$_observatory_root/.tools/venv/bin:$HOME/.cargo/bin:$PATH"
unset _observatory_root
