# Sourced by scripts/test and scripts/demo: make .venv and install the workspace into it
# (fragment-core and every plugins/* package, editable, with test dependencies).
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=.venv/.fragment-installed
inputs=$(cat pyproject.toml plugins/*/pyproject.toml 2>/dev/null | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$inputs" ]; then
  echo "Installing fragment-core and plugins/* into .venv ..." >&2
  .venv/bin/python -m pip install --quiet --upgrade pip >&2
  args=(-e ".[dev,postgres,temporal]")
  for p in plugins/*/; do
    [ -f "$p/pyproject.toml" ] && args+=(-e "${p%/}[test]")
  done
  .venv/bin/python -m pip install --quiet "${args[@]}" >&2
  echo "$inputs" > "$stamp"
fi
