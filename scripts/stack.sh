# Sourced by the scripts: which stack (docs/stacks.md) and where its venv and build
# folders are. PE_STACK=debian (default) or pypi; PE_VENV overrides the venv folder.
PE_STACK=${PE_STACK:-debian}
case "$PE_STACK" in
  debian) PE_VENV=${PE_VENV:-$ROOT/.venv} ;;
  pypi) PE_VENV=${PE_VENV:-$ROOT/.venv-pypi} ;;
  *) echo "PE_STACK must be debian or pypi, got '$PE_STACK' (see docs/stacks.md)" >&2; exit 2 ;;
esac
case "$PE_VENV" in /*) ;; *) PE_VENV=$ROOT/$PE_VENV ;; esac
# build/ holds one folder per stack: objects built against one torch never meet the other.
PE_BUILD_ROOT=$ROOT/build
[ "$PE_STACK" = debian ] || PE_BUILD_ROOT=$ROOT/build/$PE_STACK
export PE_STACK PE_VENV
