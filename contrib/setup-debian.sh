#!/usr/bin/env bash
# Installs the system packages vmc's build and tests need on Debian or Ubuntu:
# pkg-config and libssl-dev (the openssl crate), libsqlite3-dev (the embedded SQLite database;
# the `bundled-sqlite` feature compiles it in instead), libpq-dev (the PostgreSQL backend), and
# the postgresql server (used only by the tests of that backend), docker-registry
# (distribution 2.8, used only by the OCI registry tests; installing it takes ~2 s),
# python3-venv (the Glance virtualenv .ci/run makes for the publisher tests) and qemu-utils
# (qemu-img).
# Runs apt-get only when a package is missing; uses sudo when not root.
set -euo pipefail
packages=(pkg-config libssl-dev libsqlite3-dev libpq-dev postgresql docker-registry python3-venv qemu-utils)
missing=()
for pkg in "${packages[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]} == 0)); then
    echo "setup-debian: system packages present: ${packages[*]}" >&2
    exit 0
fi
sudo=()
if ((EUID != 0)); then
    command -v sudo >/dev/null 2>&1 || {
        echo "setup-debian: run as root (or install sudo) to install: ${missing[*]}" >&2
        exit 1
    }
    sudo=(sudo)
fi
echo "setup-debian: installing ${missing[*]}" >&2
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
if ! command -v cargo >/dev/null 2>&1 && [[ ! -x "$HOME/.cargo/bin/cargo" ]]; then
    echo "setup-debian: no Rust toolchain found: install one with rustup (https://rustup.rs)" >&2
    exit 1
fi
