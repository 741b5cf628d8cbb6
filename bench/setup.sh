#!/usr/bin/env bash
# Install what bench/ needs on Debian/Ubuntu: Postfix (for /usr/sbin/smtp-sink and
# /usr/sbin/smtp-source) and wrk. Non-interactive; run as root or with sudo.
# The Postfix mail daemon itself is not used: debconf is told "No configuration".
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    postfix wrk

for tool in /usr/sbin/smtp-sink /usr/sbin/smtp-source "$(command -v wrk)"; do
    if [ ! -x "$tool" ]; then
        echo "setup.sh: $tool is missing after the install" >&2
        exit 1
    fi
done
echo "bench prerequisites installed: smtp-sink, smtp-source, wrk"
echo "optional, for --profile: .venv/bin/pip install py-spy"
