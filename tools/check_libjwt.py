#!/usr/bin/python3
"""check_libjwt.py VERSION PCFILE: says whether the libjwt that pkg-config found carries
the fix for CVE-2024-25189 (the HMAC signature compared with strcmp: a timing side
channel that lets a caller forge HS256 signatures byte by byte).

Prints one line and exits 0 when it does: an upstream release from 1.17.0 on, or a
Debian package that owns PCFILE with a version at least the first patched build of its
release (libjwt 1.10.2-1+deb12u1 in Debian 12). Exits 1 with the reason otherwise.
meson.build runs it at configure time (and refuses to build on 1)."""
import shutil
import subprocess
import sys

FIRST_FIXED_UPSTREAM = (1, 17, 0)
# Debian builds of older upstream versions that carry the fix, by upstream version.
DEBIAN_PATCHED = {"1.10.2": "1.10.2-1+deb12u1"}


def upstream(version):
    parts = []
    for piece in version.split("."):
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts + [0] * (3 - len(parts)))


def debian_version(pcfile):
    """(package, version) of the Debian package that installed pcfile, or None."""
    if not shutil.which("dpkg-query"):
        return None
    owner = subprocess.run(["dpkg-query", "-S", pcfile], capture_output=True, text=True)
    if owner.returncode != 0 or ":" not in owner.stdout:
        return None
    package = owner.stdout.split(": ", 1)[0].split(",")[0].strip()
    version = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package],
                             capture_output=True, text=True)
    return (package, version.stdout.strip()) if version.returncode == 0 else None


def main():
    version, pcfile = sys.argv[1], sys.argv[2]
    if upstream(version) >= FIRST_FIXED_UPSTREAM:
        print(f"libjwt {version}: upstream release with the fix")
        return 0
    patched = DEBIAN_PATCHED.get(version)
    deb = debian_version(pcfile)
    if patched and deb and subprocess.run(
            ["dpkg", "--compare-versions", deb[1], "ge", patched]).returncode == 0:
        print(f"libjwt {version}: Debian package {deb[0]} {deb[1]} carries the fix")
        return 0
    where = f"Debian package {deb[0]} {deb[1]}" if deb else f"{pcfile}, owned by no Debian package"
    print(f"libjwt {version} ({where}) lacks the fix for CVE-2024-25189; need upstream "
          f"1.17.0 or later, or Debian's {patched or 'patched build'}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
