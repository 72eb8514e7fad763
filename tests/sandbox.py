"""A throwaway systemd, booted as PID 1 of new namespaces, for tests that need a real one.

``SystemdSandbox`` runs ``/lib/systemd/systemd --system --unit=basic.target`` as PID 1 of new
pid, mount, net, uts, ipc and cgroup namespaces (``unshare``), waits until
``systemctl is-system-running`` says ``running`` or ``degraded``, and offers ``run()`` (any command
inside, through ``nsenter -t PID -a``), ``python()`` (the project's virtualenv interpreter inside,
so pystemd reaches *this* systemd's sockets under the private ``/run``), ``write_unit()`` and a
clean ``stop()``. Boot takes well under a second; shutdown about as long.

Why each precaution (files stay shared with the host; only mounts are private):

* **Masks.** A normal boot runs units that change host state: ``systemd-tmpfiles-setup`` empties
  the host's ``/tmp``, sysusers/sysctl/binfmt/modules-load/random-seed/utmp/hwdb/ldconfig/
  machine-id-commit/journal-catalog-update/update-done write host files or global kernel
  settings, udev re-triggers the host's devices, the Debian timers run apt and logrotate. Before
  systemd starts, every unit in ``HAZARDOUS_UNITS`` *and* every unit that any ``*.wants`` /
  ``*.requires`` directory of the host enables (except journald and D-Bus, see ``KEEP_UNITS``) is
  masked with a symlink to ``/dev/null`` in the private ``/run/systemd/system``. Every generator
  is masked too (``/run/systemd/system-generators``): the fstab and gpt-auto generators would
  otherwise turn host disks into mount and fsck units.
* **Private mounts.** tmpfs on ``/run`` (sockets, masks, test units), ``/var/log/journal`` and
  ``/var/lib/systemd`` (journal files, timer stamps, catalog) and ``/etc/systemd/system`` (so
  ``systemctl enable`` inside cannot touch the host's configuration, and the host's enablement
  symlinks do not apply). ``/dev`` is a private tmpfs with bind mounts of null, zero, full,
  random, urandom and tty, a new devpts instance and its own ``/dev/shm``: the shared devtmpfs
  would otherwise receive ``/dev/log`` (``systemd-journald-dev-log.socket`` has
  ``Symlinks=/dev/log``), left dangling on the host after shutdown. ``/proc/sys`` and ``/sys`` are
  read-only inside, so PID 1 cannot change global sysctls (it tries ``fs.file-max``/``fs.nr_open``
  at boot and ``kernel.core_pattern`` at shutdown). journald keeps its journal in ``/run``
  (``Storage=volatile``) and does not read the host's kernel log (``ReadKMsg=no``).
* **Container mode.** ``container=pimainteno-sandbox`` in PID 1's environment makes
  ``systemd-shutdown`` skip what it does on real hardware — swapoff, detaching loop and DM
  devices, ``sync()`` — all of which would act on the host.
* **Own cgroup.** The sandbox runs in a fresh child cgroup of the cgroup v2 hierarchy and mounts
  a private cgroup2 at ``/sys/fs/cgroup`` (rooted there by the cgroup namespace), so systemd never
  writes into cgroups it does not own, and two sandboxes at once do not collide. It is removed
  after shutdown; it also proves nothing is left running.
* **Console.** PID 1 always writes to ``/dev/console`` and journald to ``/dev/kmsg``; a pty is
  bind-mounted on both, so the output lands in ``console_output()``, not on the host's console
  or in its kernel log.
* **Lifetime.** ``setpriv --pdeathsig KILL`` and ``unshare --kill-child`` take the whole sandbox
  down if the test process dies.

D-Bus findings (systemd 252, pystemd 0.15.3): systemd as PID 1 serves the peer-to-peer socket
``/run/systemd/private`` (root only). ``systemctl`` uses it, and pystemd reaches it with
``DBusAddress(b"unix:path=/run/systemd/private", peer_to_peer=True)``; signals arrive on it even
without ``Manager.Subscribe()`` (on the system bus, none arrive without it: checked). ``pystemd.dbuslib.DBus()`` (what ``SDUnit``
and ``SDManager`` use by default) opens the *system bus* ``/run/dbus/system_bus_socket``: in the
sandbox ``dbus.socket`` listens there from boot (``sockets.target`` wants it) and the first
connection activates ``dbus.service`` (``dbus-daemon``), so that works too (the first call pays
about 30 ms for the activation). ``pimainteno.systemd`` prefers the private socket as root, like
``systemctl``, and falls back to the system bus.

Keep in mind: ``run()``/``python()`` processes share the host's files (including ``/tmp``) and
the host's network stack is *not* reachable (only a private loopback).
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

SYSTEMD = "/lib/systemd/systemd"
REPO = Path(__file__).resolve().parents[1]
VENV_PYTHON = Path(sys.executable)  # the interpreter running the tests, with pimainteno installed
UNIT_DIR = "/run/systemd/system"  # inside the sandbox (a tmpfs): write_unit() puts units here

HAZARDOUS_UNITS = (
    # tmpfiles: empties the host's /tmp, creates and removes files everywhere
    "systemd-tmpfiles-setup.service",
    "systemd-tmpfiles-setup-dev.service",
    "systemd-tmpfiles-setup-dev-early.service",
    "systemd-tmpfiles-clean.service",
    "systemd-tmpfiles-clean.timer",
    # write host files or global kernel state
    "systemd-sysusers.service",
    "systemd-sysctl.service",
    "systemd-remount-fs.service",
    "systemd-modules-load.service",
    "kmod-static-nodes.service",
    "systemd-binfmt.service",
    "proc-sys-fs-binfmt_misc.automount",
    "proc-sys-fs-binfmt_misc.mount",
    "systemd-random-seed.service",
    "systemd-update-utmp.service",
    "systemd-update-utmp-runlevel.service",
    "systemd-machine-id-commit.service",
    "systemd-journal-flush.service",
    "systemd-journal-catalog-update.service",
    "systemd-update-done.service",
    "ldconfig.service",
    "systemd-hwdb-update.service",
    "systemd-firstboot.service",
    "systemd-pstore.service",
    "systemd-timesyncd.service",
    "systemd-repart.service",
    "systemd-pcrphase.service",
    "systemd-pcrphase-sysinit.service",
    "systemd-boot-update.service",
    "systemd-boot-system-token.service",
    "systemd-fsck-root.service",
    "systemd-fsck@.service",
    "systemd-quotacheck.service",
    "quotaon.service",
    "e2scrub_reap.service",
    # kernel filesystems and /tmp
    "tmp.mount",
    "dev-hugepages.mount",
    "dev-mqueue.mount",
    "sys-kernel-config.mount",
    "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount",
    "sys-fs-fuse-connections.mount",
    # udev would re-trigger the host's devices
    "systemd-udevd.service",
    "systemd-udevd-control.socket",
    "systemd-udevd-kernel.socket",
    "systemd-udev-trigger.service",
    "systemd-udev-settle.service",
    # logins, consoles
    "systemd-logind.service",
    "systemd-user-sessions.service",
    "getty.target",
    "getty@.service",
    "getty-static.service",
    "serial-getty@.service",
    "console-getty.service",
    "container-getty@.service",
    "autovt@.service",
    "systemd-initctl.socket",
    "systemd-ask-password-console.path",
    "systemd-ask-password-wall.path",
    "systemd-journald-audit.socket",
)
# Wanted by the host's targets but needed (and harmless with the private mounts above).
KEEP_UNITS = frozenset(
    {
        "systemd-journald.service",
        "systemd-journald.socket",
        "systemd-journald-dev-log.socket",
        "dbus.socket",
        "dbus.service",
    }
)
UNIT_SEARCH_DIRS = (
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/local/lib/systemd/system",
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
)
GENERATOR_DIRS = (
    "/etc/systemd/system-generators",
    "/usr/local/lib/systemd/system-generators",
    "/lib/systemd/system-generators",
    "/usr/lib/systemd/system-generators",
)

# Runs as the first process of the new namespaces; "$@" = masks, then "--", then generators.
_INNER = r"""
set -eu
console="$1"; shift
mount -t tmpfs -o mode=0755,size=64m tmpfs /run
mkdir -p /run/systemd/system /run/systemd/system-generators /run/systemd/journald.conf.d /run/systemd/system.conf.d
while [ "$1" != "--" ]; do ln -s /dev/null "/run/systemd/system/$1"; shift; done
shift
for g in "$@"; do ln -sf /dev/null "/run/systemd/system-generators/$g"; done
printf '[Journal]\nStorage=volatile\nReadKMsg=no\nForwardToKMsg=no\n' > /run/systemd/journald.conf.d/sandbox.conf
# a service a test left that ignores SIGTERM must not hold the poweroff past stop_timeout
printf '[Manager]\nDefaultTimeoutStopSec=8s\n' > /run/systemd/system.conf.d/sandbox.conf
for d in /var/log/journal /var/lib/systemd /etc/systemd/system; do
    if [ -d "$d" ]; then mount -t tmpfs -o mode=0755,size=64m tmpfs "$d"; fi
done
dev=/run/.sandbox-dev
mkdir "$dev"
mount -t tmpfs -o mode=0755,size=4m tmpfs "$dev"
for n in null zero full random urandom tty; do touch "$dev/$n"; mount --bind "/dev/$n" "$dev/$n"; done
for n in console kmsg; do touch "$dev/$n"; mount --bind "$console" "$dev/$n"; done
mkdir "$dev/pts" "$dev/shm" "$dev/mqueue"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$dev/pts"
ln -s pts/ptmx "$dev/ptmx"
mount -t tmpfs -o mode=1777,size=64m tmpfs "$dev/shm"
ln -s /proc/self/fd "$dev/fd"
ln -s /proc/self/fd/0 "$dev/stdin"; ln -s /proc/self/fd/1 "$dev/stdout"; ln -s /proc/self/fd/2 "$dev/stderr"
mount --move "$dev" /dev
rmdir "$dev"
umount -R /sys/fs/cgroup 2>/dev/null || true
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount --bind /proc/sys /proc/sys
mount -o remount,bind,ro /proc/sys
mount -o remount,bind,ro /sys
exec env -i container=pimainteno-sandbox PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    /lib/systemd/systemd --system --unit=basic.target --show-status=no
"""


def unavailable_reason() -> str | None:
    """Why a sandbox cannot boot here (a pytest skip reason), or None when it can."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "booting a systemd sandbox needs root"
    for tool in ("unshare", "nsenter", "setpriv", "systemctl"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (util-linux/systemd)"
    if not os.access(SYSTEMD, os.X_OK):
        return f"{SYSTEMD} is missing (apt-get install systemd)"
    if _cgroup2_root() is None:
        return "no cgroup v2 hierarchy is mounted"
    return None


def _cgroup2_root() -> Path | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            fields = line.split()
            sep = fields.index("-")
            if fields[sep + 1] == "cgroup2" and fields[3] == "/":
                return Path(fields[4])
    return None


def _own_cgroup() -> str:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            return line[3:]
    return "/"


def masked_units() -> list[str]:
    """HAZARDOUS_UNITS plus every unit the host's wants/requires directories pull in."""
    names = set(HAZARDOUS_UNITS)
    for base in UNIT_SEARCH_DIRS:
        with contextlib.suppress(OSError):
            for wants in Path(base).iterdir():
                if wants.suffix in (".wants", ".requires", ".upholds") and wants.is_dir():
                    names.update(p.name for p in wants.iterdir() if not p.name.endswith(".target"))
    return sorted(names - KEEP_UNITS)


def masked_generators() -> list[str]:
    names: set[str] = set()
    for base in GENERATOR_DIRS:
        with contextlib.suppress(OSError):
            names.update(p.name for p in Path(base).iterdir())
    return sorted(names)


class SandboxError(RuntimeError):
    pass


def _remove_cgroup_tree(cgroup: Path) -> None:
    """Kill whatever is left in ``cgroup`` (nothing, normally) and remove it, deepest first."""
    if not cgroup.exists():
        return
    with contextlib.suppress(OSError):
        (cgroup / "cgroup.kill").write_text("1")
    deadline = time.monotonic() + 5
    dirs = sorted((p for p in cgroup.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
    for directory in [*dirs, cgroup]:
        while True:
            try:
                directory.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError as exc:
                if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise SandboxError(f"cannot remove the sandbox cgroup {directory}: {exc}") from exc
                time.sleep(0.02)


def _describe(pid: int) -> str:
    """``pid (state) command line`` of a process, for an error message; what /proc still tells."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except (OSError, IndexError):
        return f"{pid} (gone)"
    return f"{pid} ({state}) {argv or '?'}"


def remove_stale(cgroup_parent: Path) -> None:
    """Cgroups and /tmp canaries of sandboxes whose test process was killed: the sandbox itself
    died with it (pdeathsig), these stay. Names carry the owner's pid; only dead owners' go."""
    for path in [*cgroup_parent.glob("pimainteno-sandbox-*"), *Path("/tmp").glob(".pimainteno-sandbox-canary-*")]:
        owner = path.name.split("-")[-2]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            with contextlib.suppress(OSError, SandboxError):
                if path.is_dir():
                    _remove_cgroup_tree(path)
                else:
                    path.unlink()


class SystemdSandbox:
    """Boot a private systemd; use as a context manager (see the module docstring)."""

    def __init__(self, *, boot_timeout: float = 20.0, stop_timeout: float = 20.0, check_tmp: bool = True):
        self.boot_timeout = boot_timeout
        self.stop_timeout = stop_timeout
        self.check_tmp = check_tmp
        self.pid: int | None = None  # host pid of the sandbox's PID 1
        self.boot_seconds: float | None = None
        self.system_state = ""  # is-system-running after boot: running or degraded
        self.leftover_pids: list[int] = []
        self._proc: subprocess.Popen[bytes] | None = None
        self._cgroup: Path | None = None
        self._pidns: int | None = None
        self._pidns_fd: int | None = None  # keeps the namespace (and so its inode number) ours until stop()
        self._canary: Path | None = None
        self._console: list[bytes] = []
        self._pty: tuple[int, int] | None = None
        self._reader: threading.Thread | None = None
        self._stop_reader = threading.Event()

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> SystemdSandbox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        reason = unavailable_reason()
        if reason:
            raise SandboxError(reason)
        started = time.monotonic()
        try:
            self._boot()
        except BaseException as exc:
            try:
                self.stop()
            except Exception as cleanup:  # noqa: BLE001 - the boot error matters more; keep both
                exc.add_note(f"and cleaning up failed: {cleanup}")
            raise
        self.boot_seconds = time.monotonic() - started

    def _boot(self) -> None:
        if self.check_tmp:
            self._canary = Path("/tmp") / f".pimainteno-sandbox-canary-{os.getpid()}-{uuid.uuid4().hex}"
            self._canary.write_text("the host /tmp must survive a sandbox boot\n")
        root = _cgroup2_root()
        assert root is not None
        parent = root / _own_cgroup().lstrip("/")
        remove_stale(parent)
        self._cgroup = parent / f"pimainteno-sandbox-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._cgroup.mkdir()
        master, slave = os.openpty()
        self._pty = (master, slave)
        self._reader = threading.Thread(target=self._read_console, name="sandbox-console", daemon=True)
        self._reader.start()
        argv = [
            "setpriv", "--pdeathsig", "KILL", "--",
            "/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self._cgroup / "cgroup.procs"),
            "unshare", "--fork", "--kill-child=SIGKILL", "--pid", "--mount", "--mount-proc", "--net",
            "--uts", "--ipc", "--cgroup", "--propagation", "private",
            "/bin/sh", "-c", _INNER, "sh", os.ttyname(slave), *masked_units(), "--", *masked_generators(),
        ]  # fmt: skip
        self._proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, start_new_session=True
        )
        self.pid = self._wait_for_init()
        self._pidns_fd = os.open(f"/proc/{self.pid}/ns/pid", os.O_RDONLY)
        self._pidns = os.fstat(self._pidns_fd).st_ino
        self._wait_until_running()
        self._check_canary("boot")

    def stop(self) -> None:
        """Power the sandbox off, wait for it, kill it if it hangs, and check nothing is left."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None and self.pid is not None:
                with contextlib.suppress(subprocess.SubprocessError, OSError):
                    self.run(["systemctl", "poweroff", "--no-block"], check=False, timeout=10)
            try:
                proc.wait(timeout=self.stop_timeout if self.pid is not None else 0.5)
            except subprocess.TimeoutExpired:
                if (
                    self.pid
                ):  # PID 1 only: unshare reaps it and exits (killed too, PID 1 would wait for the host's init)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(self.pid, signal.SIGKILL)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)
        self._remove_cgroup()
        self.leftover_pids = self._wait_for_empty_namespace(timeout=15)
        if self._pidns_fd is not None:  # held from boot: the namespace's inode could not be reused meanwhile
            os.close(self._pidns_fd)
            self._pidns_fd = None
        self._close_console()
        self.pid = None
        self._check_canary("shutdown")
        if self._canary is not None:
            self._canary.unlink(missing_ok=True)
            self._canary = None
        if self.leftover_pids:
            described = "; ".join(_describe(pid) for pid in self.leftover_pids)
            raise SandboxError(f"processes of the sandbox survived its shutdown: {described}")

    # -- using it ----------------------------------------------------------------------------

    def run(
        self, argv: Sequence[str], *, check: bool = True, timeout: float = 60, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside every namespace of the sandbox; text output captured."""
        if self.pid is None:
            raise SandboxError("the sandbox is not running")
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("stdin", subprocess.DEVNULL)
        result = subprocess.run(["nsenter", "-t", str(self.pid), "-a", *argv], timeout=timeout, **kw)
        if check and result.returncode != 0:
            raise SandboxError(
                f"{' '.join(argv)} exited {result.returncode} in the sandbox: "
                f"{(result.stderr or '').strip() or (result.stdout or '').strip()}"
            )
        return result

    def python(
        self, code_or_argv: str | Sequence[str], *, check: bool = True, timeout: float = 60, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run the project's virtualenv Python inside (a ``-c`` string or an argument list).

        ``pimainteno`` is importable (PYTHONPATH is the repository); the working directory is the
        repository too.
        """
        argv = ["-c", code_or_argv] if isinstance(code_or_argv, str) else list(code_or_argv)
        env = dict(kw.pop("env", None) or os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        return self.run([f"--wd={REPO}", str(VENV_PYTHON), *argv], check=check, timeout=timeout, env=env, **kw)

    def write_unit(self, name: str, text: str, *, reload: bool = True) -> None:
        """Write a unit (or a ``name.d/x.conf`` drop-in) into the private unit directory."""
        path = self.path(f"{UNIT_DIR}/{name}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if reload:
            self.daemon_reload()

    def daemon_reload(self) -> None:
        self.run(["systemctl", "daemon-reload"])

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(["systemctl", *args], check=check)

    def path(self, inside: str) -> Path:
        """A host path to a file inside the sandbox's mount namespace (through /proc/PID/root)."""
        if self.pid is None:
            raise SandboxError("the sandbox is not running")
        return Path(f"/proc/{self.pid}/root") / inside.lstrip("/")

    def console_output(self) -> str:
        return b"".join(self._console).decode(errors="replace")

    # -- internals ---------------------------------------------------------------------------

    def _wait_for_init(self) -> int:
        """The host pid of unshare's child once it has become systemd."""
        assert self._proc is not None
        deadline = time.monotonic() + self.boot_timeout
        children = Path(f"/proc/{self._proc.pid}/task/{self._proc.pid}/children")
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise SandboxError(f"the sandbox exited during setup:\n{self.console_output()[-3000:]}")
            with contextlib.suppress(OSError, ValueError):
                # setpriv and sh exec in place, so this pid becomes unshare itself
                if os.readlink(f"/proc/{self._proc.pid}/exe").endswith("/unshare"):
                    kids = children.read_text().split()
                    if kids and os.readlink(f"/proc/{kids[0]}/exe") == os.path.realpath(SYSTEMD):
                        return int(kids[0])
            time.sleep(0.005)
        raise SandboxError(f"systemd did not start within {self.boot_timeout:g}s")

    def _wait_until_running(self) -> None:
        deadline = time.monotonic() + self.boot_timeout
        state = ""
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                raise SandboxError(f"the sandbox died while booting:\n{self.console_output()[-3000:]}")
            state = self.run(["systemctl", "is-system-running"], check=False, timeout=10).stdout.strip()
            if state in ("running", "degraded"):
                self.system_state = state
                return
            time.sleep(0.05)  # each ask is an nsenter and a systemctl: the boot needs the CPU more
        raise SandboxError(f"the sandbox is still {state or 'not answering'} after {self.boot_timeout:g}s")

    def failed_units(self) -> list[str]:
        out = self.systemctl("list-units", "--state=failed", "--plain", "--no-legend", check=False).stdout
        return [line.split()[0] for line in out.splitlines() if line.strip()]

    def _check_canary(self, when: str) -> None:
        if self._canary is not None and not self._canary.exists():
            raise SandboxError(f"the host's /tmp lost its canary file during the sandbox {when}: STOP and investigate")

    def _wait_for_empty_namespace(self, timeout: float) -> list[int]:
        """The sandbox's processes still alive after ``timeout`` seconds (none, normally).

        PID 1's death makes the kernel kill the rest of its namespace, but a killed process can
        take a moment to go (a loaded machine, a zombie whose host parent has not reaped it yet).
        """
        deadline = time.monotonic() + timeout
        while (left := self._leftovers()) and time.monotonic() < deadline:
            time.sleep(0.05)
        return left

    def _leftovers(self) -> list[int]:
        if self._pidns is None:
            return []
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if os.stat(entry / "ns" / "pid").st_ino == self._pidns:
                        found.append(int(entry.name))
        return found

    def _remove_cgroup(self) -> None:
        cgroup, self._cgroup = self._cgroup, None
        if cgroup is not None:
            _remove_cgroup_tree(cgroup)

    def _read_console(self) -> None:
        assert self._pty is not None
        master = self._pty[0]
        size = 0
        while not self._stop_reader.is_set():
            ready, _, _ = select.select([master], [], [], 0.1)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:
                return
            self._console.append(data)
            size += len(data)
            while size > 1_000_000 and len(self._console) > 1:
                size -= len(self._console.pop(0))

    def _close_console(self) -> None:
        self._stop_reader.set()
        if self._reader is not None:
            self._reader.join(timeout=2)
        if self._pty is not None:
            for fd in self._pty:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._pty = None


@contextlib.contextmanager
def systemd_sandbox(**kw: Any) -> Iterator[SystemdSandbox]:
    with SystemdSandbox(**kw) as sandbox:
        yield sandbox
