# tools/lib.sh: shell helpers shared by tools/test, tools/demo and bench/run (sourced).
# Each function says what it does; none exits the caller's shell except on failure.

RM_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Debian packages the build, the tests and the demo need.
RM_PACKAGES=(
  build-essential meson ninja-build pkg-config
  librdkafka-dev liblmdb-dev lmdb-utils libavro-dev libmicrohttpd-dev libyaml-dev
  libjansson-dev libcurl4-openssl-dev check libjwt-dev libssl-dev libgnutls28-dev openssl
  kcat python3 python3-kafka python3-pytest python3-yaml python3-venv
  clang libclang-rt-14-dev curl jq chromium xxd libxxhash-dev cppcheck
)

rm_log() { printf '%s\n' "$*" >&2; }

# Installs the packages that are missing (fast when none is). Uses sudo when not root.
rm_install_deps() {
  local missing=() pkg
  for pkg in "${RM_PACKAGES[@]}" "$@"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$pkg")
    fi
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  rm_log "installing: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
}

# Packages only some tests need (promtool checks deploy/'s alert rules); a failure to
# install them is reported and those tests skip, but nothing else stops.
RM_OPTIONAL_PACKAGES=(prometheus)
rm_install_optional() {
  local pkg
  for pkg in "${RM_OPTIONAL_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" && continue
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
      "$pkg" >/dev/null 2>&1 || rm_log "optional package $pkg could not be installed; its tests skip"
  done
}

# Python packages the tests need that Debian does not ship: schemathesis (PyPI) drives the
# property-based test of the query API (tests/integration/test_api_properties.py). They go
# into a venv under the repository's gitignored .cache/, made from /usr/bin/python3 (the
# interpreter tools/test runs pytest with) and seeing its packages; pytest runs the tool
# with the venv's python. Quiet, and one import check when already installed.
RM_PY_VENV="$RM_ROOT/.cache/pyvenv"
RM_PY_PACKAGES=("schemathesis==4.32.5")
rm_python_test_deps() {
  local py="$RM_PY_VENV/bin/python"
  [ -x "$py" ] && "$py" -c 'import schemathesis' 2>/dev/null && return 0
  rm_log "installing into $RM_PY_VENV: ${RM_PY_PACKAGES[*]}"
  /usr/bin/python3 -m venv --system-site-packages "$RM_PY_VENV" >/dev/null 2>&1 ||
    { rm_log "cannot make $RM_PY_VENV (python3-venv)"; return 1; }
  "$py" -m pip install -q --disable-pip-version-check "${RM_PY_PACKAGES[@]}" >/dev/null 2>&1 ||
    { rm_log "pip cannot install ${RM_PY_PACKAGES[*]}"; return 1; }
}

# The style checks (tools/lint): clang-format from PyPI at one pinned version, into the same
# venv, so that every machine formats alike (Debian's clang-format 14 formats differently
# and cannot read .clang-format's "Kind:" options); cppcheck from Debian. Quiet, and one
# version check when already installed.
RM_CLANG_FORMAT_VERSION="23.1.5"
RM_PYFLAKES_VERSION="3.4.0" # the Python tests and tools: unused names, undefined names
RM_CLANG_FORMAT="$RM_PY_VENV/bin/clang-format"
rm_install_lint() {
  rm_install_deps cppcheck || return 1
  "$RM_CLANG_FORMAT" --version 2>/dev/null | grep -q "version $RM_CLANG_FORMAT_VERSION\b" &&
    "$RM_PY_VENV/bin/python" -m pyflakes --version 2>/dev/null | grep -q "^$RM_PYFLAKES_VERSION\b" &&
    return 0
  rm_log "installing into $RM_PY_VENV: clang-format==$RM_CLANG_FORMAT_VERSION pyflakes==$RM_PYFLAKES_VERSION"
  [ -x "$RM_PY_VENV/bin/python" ] ||
    /usr/bin/python3 -m venv --system-site-packages "$RM_PY_VENV" >/dev/null 2>&1 ||
    { rm_log "cannot make $RM_PY_VENV (python3-venv)"; return 1; }
  "$RM_PY_VENV/bin/python" -m pip install -q --disable-pip-version-check \
    "clang-format==$RM_CLANG_FORMAT_VERSION" "pyflakes==$RM_PYFLAKES_VERSION" >/dev/null 2>&1 ||
    { rm_log "pip cannot install clang-format==$RM_CLANG_FORMAT_VERSION pyflakes==$RM_PYFLAKES_VERSION"; return 1; }
}

# The browser tests' driver (tests/ui/driver.js) needs playwright-core, which drives the
# system Chromium (no browser download): installed from the npm registry into
# .cache/ui-node (git-ignored) at the version tests/ui/package.json pins; fast when present.
rm_install_playwright() {
  local dir="$RM_ROOT/.cache/ui-node"
  if [ -f "$dir/node_modules/playwright-core/package.json" ] &&
     cmp -s "$RM_ROOT/tests/ui/package.json" "$dir/package.json"; then
    return 0
  fi
  # node and npm: Debian's packages unless a node with its own npm is there already
  command -v node >/dev/null && command -v npm >/dev/null || rm_install_deps nodejs npm || return 1
  mkdir -p "$dir"
  cp "$RM_ROOT/tests/ui/package.json" "$dir/package.json"
  (cd "$dir" && npm install --no-audit --no-fund --ignore-scripts --loglevel=error >/dev/null) ||
    { rm_log "npm could not install playwright-core (tests/ui/package.json)"; return 1; }
}

# confluent-kafka-python (PyPI) with its Avro serde, into the same venv: a Schema Registry
# client nobody here wrote, for tests/integration/test_schema_registry.py. Quiet, and one
# import check when already installed.
RM_PY_REGISTRY_PACKAGES=("confluent-kafka[avro]>=2,<3")
rm_python_registry_deps() {
  local py="$RM_PY_VENV/bin/python"
  [ -x "$py" ] && "$py" -c 'import confluent_kafka.schema_registry.avro' 2>/dev/null && return 0
  rm_log "installing into $RM_PY_VENV: ${RM_PY_REGISTRY_PACKAGES[*]}"
  [ -x "$py" ] || /usr/bin/python3 -m venv --system-site-packages "$RM_PY_VENV" >/dev/null 2>&1 ||
    { rm_log "cannot make $RM_PY_VENV (python3-venv)"; return 1; }
  "$py" -m pip install -q --disable-pip-version-check "${RM_PY_REGISTRY_PACKAGES[@]}" >/dev/null 2>&1 ||
    { rm_log "pip cannot install ${RM_PY_REGISTRY_PACKAGES[*]}"; return 1; }
}

# rm_build DIR [meson options...]: configures DIR once, then builds it (only the targets
# in $RM_BUILD_TARGETS when set). Quiet unless something fails.
rm_build() {
  local dir="$1"; shift
  if [ ! -f "$RM_ROOT/$dir/build.ninja" ]; then
    (cd "$RM_ROOT" && meson setup "$dir" "$@" >"/tmp/readmodel-setup-$(basename "$dir").log" 2>&1) || {
      cat "/tmp/readmodel-setup-$(basename "$dir").log" >&2; return 1; }
  fi
  # shellcheck disable=SC2086 # RM_BUILD_TARGETS is a list of targets
  ninja -C "$RM_ROOT/$dir" ${RM_BUILD_TARGETS:-} >"/tmp/readmodel-build-$(basename "$dir").log" 2>&1 || {
    tail -50 "/tmp/readmodel-build-$(basename "$dir").log" >&2; return 1; }
}

# Real Apache Kafka for the tests that run on both brokers (tools/kafka): a JVM, Maven
# (which fetches the broker's jars from Maven Central into ~/.cache/readmodel) and the
# Python admin/transactional client. A JDK rather than a JRE: the Kafka Streams peer of
# bench/run (bench/peers/kstreams, also under test) is compiled. Returns nonzero when any
# of it cannot be had.
RM_KAFKA_PACKAGES=(openjdk-17-jdk-headless maven)
rm_install_kafka() {
  rm_install_deps "${RM_KAFKA_PACKAGES[@]}" || return 1
  "$RM_ROOT/tools/kafka" fetch >/dev/null || return 1
  rm_install_pydeps
}

# Python packages from PyPI that Debian does not ship (confluent-kafka: transactions and
# the admin API on real Kafka), installed for /usr/bin/python3 into .cache/pydeps-pyX.Y,
# which the integration tests' conftest.py puts on sys.path.
rm_install_pydeps() {
  local py=/usr/bin/python3 ver target
  ver=$($py -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  target="$RM_ROOT/.cache/pydeps-py$ver"
  [ -d "$target/confluent_kafka" ] && return 0
  rm_install_deps python3-pip || return 1
  $py -m pip install -q --disable-pip-version-check --target "$target" 'confluent-kafka>=2.6,<3' \
    >/dev/null 2>&1 || { rm_log "pip could not install confluent-kafka into $target"; return 1; }
}
