# Sourced by scripts/*: use the active virtual environment, else make ./.venv, and install the
# project into it (with the test extras) so each script works on a fresh clone.
if [ -z "${VIRTUAL_ENV:-}" ]; then
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
  fi
  # shellcheck disable=SC1091
  source .venv/bin/activate
fi
if [ -z "${BT_SKIP_INSTALL:-}" ]; then
  python -m pip install --quiet --disable-pip-version-check -e '.[test]'
fi
