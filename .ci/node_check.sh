# Sourced by .ci/run: say which Node.js the JavaScript SDK tests (tests/routing/test_clients_js.py,
# Node.js 20+) will find. Never exits: without a usable node, CI goes on to lint and tests, where
# REQUIRE_SERVICES=1 makes those tests fail loudly (a silent `exit 127` here ran nothing).
node_check() {
  local version major
  if ! command -v node >/dev/null 2>&1; then
    echo "CI: no node on PATH: the JavaScript SDK tests need Node.js 20 or newer and will fail" >&2
    return 0
  fi
  version="$(node --version 2>/dev/null || true)"
  if [[ ! "$version" =~ ^v([0-9]+)\. ]]; then
    echo "CI: cannot read node's version ('${version:0:40}'): the JavaScript SDK tests need" \
      "Node.js 20 or newer and may fail" >&2
    return 0
  fi
  major=${BASH_REMATCH[1]}
  if ((10#$major < 20)); then
    echo "CI: node $version is too old: the JavaScript SDK tests need Node.js 20 or newer" \
      "and will fail" >&2
    return 0
  fi
  echo "node $version"
}
