"""Kamailio, the yardstick of ``python -m bench compare`` (issue 14).

``relay.cfg`` beside this file is its configuration: tm + rr + sl + maxfwd,
UDP only, no database, every request record-routed and relayed statefully
to its Request-URI. ``render`` fills in its ``@NAME@`` fields (address, port,
UDP workers, the modules' directory); ``command`` runs it in the foreground
(``-DD``: the main process stays, its workers are its children) with the TLSF
allocator for shared memory (``-x tlsf``), as the issue measured it.
``binary`` finds Debian's ``kamailio``, installing the package when it is
missing (as root, as scripts/bootstrap.sh installs sipp).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

CONFIG = Path(__file__).resolve().parent / "relay.cfg"
PACKAGE = "kamailio"
CHILDREN = 4  # UDP workers
# Shared memory: tm keeps each transaction some 5 s after it ends (wt_timer);
# 256 MB ran out at 2000 calls/s ("could not allocate shared memory").
SHM_MB = 1024
PKG_MB = 16  # private memory per process
SBIN = "/usr/sbin:/usr/local/sbin:/sbin"
APT_LOCK_WAIT = 300  # seconds apt-get waits for another apt-get (dpkg's lock)


class KamailioUnavailable(RuntimeError):
    """Kamailio is not installed and cannot be installed here."""


def render(
    port: int,
    host: str = "127.0.0.1",
    children: int = CHILDREN,
    modules: str | None = None,
    debug: int = 1,
) -> str:
    """``relay.cfg`` for a Kamailio on ``host:port`` with ``children`` UDP workers."""
    fields = {
        "HOST": host,
        "PORT": str(port),
        "CHILDREN": str(children),
        "MODULES": modules or modules_dir(),
        "DEBUG": str(debug),  # 1: warnings and errors
    }
    text = CONFIG.read_text()
    for name, value in fields.items():
        text = text.replace(f"@{name}@", value)
    return text


def modules_dir() -> str:
    """Where Debian puts Kamailio's modules (under the multiarch triplet)."""
    found = sorted(glob.glob("/usr/lib/*/kamailio/modules")) + ["/usr/lib/kamailio/modules"]
    return next((path for path in found if Path(path).is_dir()), found[-1]) + "/"


def command(binary: str, config: Path, workdir: Path) -> list[str]:
    """Kamailio in the foreground with ``config``, its runtime files in ``workdir``."""
    return [
        binary, "-f", str(config), "-DD", "-E", "-x", "tlsf",
        "-m", str(SHM_MB), "-M", str(PKG_MB),
        "-P", str(workdir / "kamailio.pid"), "-Y", str(workdir), "-w", str(workdir),
    ]  # fmt: skip


def binary(install: bool = True) -> str:
    """The path of ``kamailio``; installed from Debian first when missing and ``install``."""
    found = shutil.which(PACKAGE) or shutil.which(PACKAGE, path=SBIN)
    if found:
        return found
    if not install:
        raise KamailioUnavailable("kamailio is not installed (Debian package kamailio)")
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise KamailioUnavailable(
            "kamailio is not installed: run `apt-get install kamailio` as root"
        )
    _apt_install()
    found = shutil.which(PACKAGE, path=SBIN)
    if found is None:
        raise KamailioUnavailable("apt-get installed kamailio, but no kamailio binary is found")
    return found


def _apt_install() -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends",
               "-o", f"DPkg::Lock::Timeout={APT_LOCK_WAIT}", PACKAGE]  # fmt: skip
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        # An image's package lists may be missing or stale: update once, then again.
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
        done = subprocess.run(install, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise KamailioUnavailable(f"apt-get install kamailio failed:\n{done.stderr[-2000:]}")
    # Where systemd runs, the package starts a Kamailio on 5060 (make run's proxy port).
    if shutil.which("systemctl") and Path("/run/systemd/system").is_dir():
        subprocess.run(["systemctl", "disable", "--now", PACKAGE], capture_output=True)
