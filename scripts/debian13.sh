#!/usr/bin/env bash
# Builds ViT Studio and runs its test suite in a Debian 13 (trixie) root made with debootstrap,
# exactly as a new user on Debian 13 would: the README's test command, from a copy of this
# checkout. CI's machine is Debian 12; this is the Debian 13 check anyone can rerun.
#
#   sudo scripts/debian13.sh [--headless] [ROOT]
#     --headless  the server setup (scripts/setup.sh --headless, -DVIT_BUILD_GUI=OFF), and a check
#                 that no Qt, QCustomPlot or X server got installed (X client libraries that
#                 Debian's OpenCV and LibTorch depend on are named, not failed)
#     ROOT        where the Debian 13 root lives (default /var/tmp/vit-trixie[-headless]); kept
#                 between runs, so a second run skips debootstrap and the downloads
#
# Needs root (debootstrap, chroot, bind mounts) and the debootstrap package; takes ~25-40 minutes
# on 2 cores (the build itself ~20). The log is ROOT.log; its last lines are the summary.
set -euo pipefail

mode=full
if [ "${1:-}" = "--headless" ]; then
  mode=headless
  shift
fi
suffix=""
[ $mode = headless ] && suffix=-headless
root=${1:-/var/tmp/vit-trixie$suffix}
src=$(cd "$(dirname "$0")/.." && pwd)
log="$root.log"

if [ "$(id -u)" -ne 0 ]; then
  echo "debian13: needs root (debootstrap, chroot, mounts): sudo $0 $*" >&2
  exit 1
fi
if ! command -v debootstrap >/dev/null; then
  echo "debian13: installing debootstrap"
  apt-get install -y -q debootstrap >/dev/null
fi

# The mirror apt already uses here (the first deb.debian.org-like URI in its sources).
mirror=$(grep -rhE '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d 2>/dev/null |
  grep -oE 'https?://[^ ]+/debian/?$|https?://[^ ]+/debian/? ' | head -n 1 | tr -d ' ' || true)
mirror=${mirror:-http://deb.debian.org/debian}

# One run per root: a second one would delete the source tree under the first one's build.
exec 9>"$root.lock"
if ! flock -n 9; then
  echo "debian13: another run is using $root (lock $root.lock); wait for it or kill it" >&2
  exit 1
fi
exec > >(tee "$log") 2>&1
echo "debian13: $mode check of $src in $root (mirror $mirror), $(date -u +%FT%TZ)"
if [ ! -x "$root/usr/bin/apt-get" ]; then
  debootstrap --variant=minbase trixie "$root" "$mirror"
fi
cp /etc/resolv.conf "$root/etc/resolv.conf"

mounts=()
cleanup() {
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount -l "${mounts[$i]}" 2>/dev/null || true; done
}
trap cleanup EXIT
for m in proc sys dev dev/pts; do
  mkdir -p "$root/$m"
  mount --bind "/$m" "$root/$m"
  mounts+=("$root/$m")
done

# A copy of the checkout as git sees it (tracked and untracked, not ignored: no build trees).
rm -rf "$root/src"
mkdir -p "$root/src"
(cd "$src" && git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf -) | tar -xf - -C "$root/src"

start=$(date +%s)
status=0
if [ $mode = full ]; then
  chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
    bash -c 'cd /src && scripts/test.sh' || status=$?
else
  chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 VIT_BUILD_GUI=OFF \
    bash -c 'cd /src && scripts/test.sh' || status=$?
fi
minutes=$(( ($(date +%s) - start + 59) / 60 ))

echo
echo "debian13: summary ($mode)"
chroot "$root" bash -c '. /etc/os-release; echo "  system: $PRETTY_NAME"'
chroot "$root" dpkg-query -W -f='  ${Package} ${Version}\n' libtorch-dev qt6-base-dev libopencv-core-dev \
  libopenblas0-openmp g++ cmake libgtest-dev libgloo-dev 2>/dev/null || true
if [ $mode = headless ]; then
  gui=$(chroot "$root" dpkg-query -W -f='${Package}\n' 2>/dev/null | grep -E '^(libqt|qt5|qt6|libqcustomplot|xserver)' || true)
  if [ -n "$gui" ]; then
    echo "  FAIL: the headless setup installed GUI packages: $(echo $gui | tr '\n' ' ')"
    status=1
  else
    echo "  no Qt, QCustomPlot or X server installed"
  fi
  # X client libraries come with Debian's own packages (trixie: libopencv-core410 -> libglx0,
  # libtorch -> Open MPI -> hwloc-plugins -> libxnvctrl0); named, not failed: nothing of ours
  # links them.
  x=$(chroot "$root" dpkg-query -W -f='${Package}\n' 2>/dev/null | grep -E '^(libx11-6|libxcb1)$' || true)
  [ -n "$x" ] && echo "  note: X client libraries present as dependencies of Debian's OpenCV/LibTorch: $(echo $x | tr '\n' ' ')"
fi
grep -E 'tests passed|tests failed' "$log" | tail -n 1 | sed 's/^/  /' || true
echo "  $minutes minutes; exit status $status"
exit $status
