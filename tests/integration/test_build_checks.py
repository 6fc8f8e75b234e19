"""Build-time checks of meson.build: the libjwt the query API links must have the fix for
CVE-2024-25189 (the HMAC signature compared with strcmp, a timing side channel). A libjwt
older than the first fixed upstream release is accepted only when it is Debian's patched
build (its package owns the pkg-config file and its version is at least the one that
carries the fix). A fake libjwt.pc put first on PKG_CONFIG_PATH stands for an unpatched
library: no package owns it."""
import os
import shutil
import subprocess

import pytest

import harness

PC = """prefix=/usr
exec_prefix=${{prefix}}
libdir=${{prefix}}/lib/x86_64-linux-gnu
includedir=${{prefix}}/include

Name: libjwt
Description: JWT C Library
Version: {version}
Cflags: -I${{includedir}}
Libs: -L${{libdir}} -ljwt
"""


def meson_setup(tmp_path, version=None, extra=()):
    env = dict(os.environ)
    if version:
        pcdir = tmp_path / f"pc-{version}"
        pcdir.mkdir()
        (pcdir / "libjwt.pc").write_text(PC.format(version=version))
        env["PKG_CONFIG_PATH"] = str(pcdir)
    build = tmp_path / f"build-{version or 'system'}-{len(extra)}"
    return subprocess.run(["meson", "setup", str(build), harness.ROOT, *extra], env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not shutil.which("meson"), reason="needs meson")
def test_an_unpatched_libjwt_does_not_build(tmp_path):
    for version in ("1.15.3", "1.10.2"):
        out = meson_setup(tmp_path, version)
        assert out.returncode != 0, f"libjwt {version} without the fix was accepted"
        assert "CVE-2024-25189" in out.stdout + out.stderr, out.stdout[-2000:]


@pytest.mark.skipif(not shutil.which("meson"), reason="needs meson")
def test_fixed_libjwt_builds(tmp_path):
    # an upstream release with the fix
    out = meson_setup(tmp_path, "1.17.0")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    # an unpatched version the builder vouches for (a distribution backport we cannot see)
    out = meson_setup(tmp_path, "1.15.3", ("-Dlibjwt_timing_fix=assume-present",))
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    # this machine's libjwt, when it is Debian's patched 1.10.2-1+deb12u1 or later
    dpkg = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "libjwt-dev"],
                          capture_output=True, text=True) if shutil.which("dpkg-query") else None
    if dpkg and dpkg.returncode == 0 and subprocess.run(
            ["dpkg", "--compare-versions", dpkg.stdout, "ge", "1.10.2-1+deb12u1"]).returncode == 0:
        out = meson_setup(tmp_path)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
