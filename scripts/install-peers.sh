#!/usr/bin/env bash
# Install the Debian packages drkit's tests, demo and benchmarks talk to, when missing.
# Needs root (or sudo). Prints what it installs; quiet when everything is there.
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have qemu-io     || need+=(qemu-utils)
have nbdkit      || need+=(nbdkit)
have nbdcopy     || need+=(libnbd-bin)
have fusermount3 || need+=(fuse3)
have sshd        || [ -x /usr/sbin/sshd ] || need+=(openssh-server)
have ssh         || need+=(openssh-client)
have rsync       || need+=(rsync)
have hyperfine   || need+=(hyperfine)
have zstd        || need+=(zstd)
have mkfs.ext4   || need+=(e2fsprogs)
have losetup     || need+=(mount)
[ -x /usr/bin/time ] || need+=(time)
# the archive tests' S3 endpoint: a single-node Ceph cluster with the RADOS Gateway (test/helpers/ceph.ts)
have ceph-mon || need+=(ceph-mon)
have ceph-osd || need+=(ceph-osd)
have radosgw  || need+=(radosgw)
have ceph     || need+=(ceph-common)
if [ ${#need[@]} -gt 0 ]; then
  echo "install-peers: installing ${need[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
