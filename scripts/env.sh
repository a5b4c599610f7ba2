# Sourced by scripts/*: use the active virtual environment, else make ./.venv, and install the
# project into it (with the test extras) so each script works on a fresh clone.
#
# The install runs only when needed: a new environment, or a pyproject.toml changed since the
# last install (a stamp file in the environment records its checksum). BT_SKIP_INSTALL=1
# skips it always (CI installs once itself).
if [ -z "${VIRTUAL_ENV:-}" ]; then
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
  fi
  # shellcheck disable=SC1091
  source .venv/bin/activate
fi
if [ -z "${BT_SKIP_INSTALL:-}" ]; then
  bt_stamp="$VIRTUAL_ENV/.btmanager-install"
  bt_wanted="$(cksum < pyproject.toml) $(pwd)"
  if [ "$(cat "$bt_stamp" 2>/dev/null)" != "$bt_wanted" ]; then
    python -m pip install --quiet --disable-pip-version-check -e '.[test]'
    printf '%s\n' "$bt_wanted" > "$bt_stamp"
  fi
  unset bt_stamp bt_wanted
fi
