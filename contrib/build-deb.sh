#!/usr/bin/env bash
# Build qmproxy's Debian package from this tree: the packaging files live
# in contrib/debian/ (the top level stays as it is), so a scratch copy of
# the tree gets them as debian/ and dpkg-buildpackage (debhelper, cmake)
# builds the binary package there; lintian then checks it.
#
#   contrib/build-deb.sh [--out DIR] [--no-lintian]
#
# The .deb, .buildinfo and .changes land in DIR (default build/deb);
# lintian's findings in DIR/lintian.txt.  Exit status 1 if the build
# fails or lintian reports an error (E:); warnings are listed in the
# README ("Debian package") with why they stay.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/build/deb
lintian=yes
while [ $# -gt 0 ]; do
  case $1 in
  --out) out=$2; shift 2 ;;
  --no-lintian) lintian=no; shift ;;
  *) echo "usage: $0 [--out DIR] [--no-lintian]" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"
out=$(cd "$out" && pwd)

version=$(sed -n 's/^#define QMPROXY_VERSION "\(.*\)"/\1/p' "$root/proxy/version.h")
changelog_version=$(sed -n '1s/^qmproxy (\([^)]*\)).*/\1/p' "$root/contrib/debian/changelog")
if [ "$version" != "$changelog_version" ]; then
  echo "build-deb: proxy/version.h says $version, contrib/debian/changelog" \
       "$changelog_version: add a changelog entry" >&2
  exit 1
fi

scratch=$(mktemp -d /tmp/qmproxy-deb.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
src=$scratch/qmproxy-$version
mkdir "$src"
# the files git knows of (committed or not), as they are in the work tree;
# not build/ or anything else ignored
(cd "$root" && git ls-files -z --cached --others --exclude-standard |
   xargs -0 -I{} sh -c '[ -e "{}" ] && printf "%s\0" "{}"' |
   tar --null -T - -cf -) | tar -xf - -C "$src"
cp -r "$root/contrib/debian" "$src/debian"

echo "== dpkg-buildpackage in $src"
(cd "$src" && dpkg-buildpackage -us -uc -b) >"$out/build.log" 2>&1 || {
  tail -40 "$out/build.log" >&2
  echo "build-deb: dpkg-buildpackage failed; the whole log is $out/build.log" >&2
  exit 1
}
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
for f in "$scratch"/qmproxy_"$version"_"$arch".{deb,buildinfo,changes}; do
  mv "$f" "$out/"
done
deb=$out/qmproxy_${version}_${arch}.deb
echo "== $deb"
dpkg-deb --info "$deb" | sed -n 's/^ \(Package\|Version\|Depends\|Installed-Size\):/  &/p'

if [ "$lintian" = yes ]; then
  echo "== lintian"
  # lintian exits non-zero for errors only (its default --fail-on)
  status=0
  lintian --info --display-info "$deb" >"$out/lintian.txt" 2>&1 || status=$?
  grep -E '^[EWI]: ' "$out/lintian.txt" | sort | uniq -c || true
  if grep -q '^E: ' "$out/lintian.txt" || [ $status -ne 0 ]; then
    echo "build-deb: lintian found errors (above; details in $out/lintian.txt)" >&2
    exit 1
  fi
  echo "lintian: no errors"
fi
echo "$deb"
