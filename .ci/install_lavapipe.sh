#!/usr/bin/env bash
# Installs Mesa's lavapipe (a software Vulkan driver on the CPU) from Debian 12's backports
# suite, the CPU device of the GPU-API tests: Debian 12's own Mesa 22.3 crashes on burn's
# kernels, backports' Mesa 25 runs its WGSL ones. The suite is added on the mirror the
# machine's Debian sources already use.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
if vulkaninfo --summary 2>/dev/null | grep -Eq "driverInfo *= Mesa (2[5-9]|[3-9][0-9])"; then
    exit 0
fi
sources=/etc/apt/sources.list.d/debian.sources
list=/etc/apt/sources.list.d/backports.sources
if [ ! -e $list ]; then
    if [ -e $sources ]; then
        uri=$(awk '/^URIs:/ {print $2; exit}' $sources)
    else
        uri=$(awk '$1 == "deb" && $3 == "bookworm" {print $2; exit}' /etc/apt/sources.list)
    fi
    [ -n "$uri" ] || { echo "install_lavapipe: no Debian mirror in the apt sources" >&2; exit 1; }
    printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$uri" >$list
fi
apt-get update
apt-get install -y -t bookworm-backports mesa-vulkan-drivers libvulkan1 vulkan-tools
vulkaninfo --summary | grep -E "deviceName|driverInfo"
