"""Real services on loopback for the cluster tests: a one-node SLURM cluster (munge, slurmctld,
slurmd) and a PostgreSQL-backed ``mlflow server``.

Everything lives in one private folder (keys, sockets, state, logs, pid files), except SLURM's
configuration: /etc/slurm/slurm.conf and gres.conf, the default path, because the jobstep plugin's
inner `srun` drops SLURM_CONF. They are written only where absent (or left by an earlier test
cluster), removed on stop, and one test cluster runs at a time (a file lock). Daemons are stopped by
their pid files. Needs the Debian packages ``slurm-wlm munge postgresql`` and root (slurmd runs
jobs as their user; munged runs as root with --force, postgres as the postgres user).

By hand (e.g. to try the SLURM profile):

    python tests/cluster/services.py slurm start /tmp/slurm   # prints `export SLURM_CONF=...`
    python tests/cluster/services.py slurm stop /tmp/slurm
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SLURM_CONF = Path("/etc/slurm/slurm.conf")
LOCK_FILE = Path("/tmp/prdnet-bench-slurm-test.lock")
CONF_MARKER = "# prdnet-bench test cluster, removed when it stops:"
SLURM_BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "srun")
POSTGRES_BIN_GLOB = "/usr/lib/postgresql/*/bin"
HOW_TO_RUN = (
    "run as root on Debian/Ubuntu after `apt-get install -y --no-install-recommends slurm-wlm munge postgresql`, "
    "or run `.ci/run` (CI=true)"
)


# MLflow 3's server also starts a job runner and six huey consumers (GenAI jobs: scorers, trace
# roll-ups) that the tracking and artifact API the workflow uses does not need; each imports mlflow,
# which slows every start. The tracking server the tests talk to is the same without them.
WITHOUT_JOB_EXECUTION = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


class ServiceError(RuntimeError):
    """A daemon did not start; the message carries the reason and its log's tail."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ours(conf: Path, root: Path | None = None) -> bool:
    """Whether a SLURM configuration file was written by a test cluster (the one in root, if given)."""
    try:
        return conf.read_text().startswith(CONF_MARKER + ("" if root is None else f" {root}\n"))
    except OSError:
        return False


def missing_requirements(binaries: tuple[str, ...] = ()) -> list[str]:
    """What this machine lacks to run the services (empty when it has everything)."""
    missing = []
    if "slurmd" in binaries and SLURM_CONF.exists() and not ours(SLURM_CONF):
        missing.append(f"no SLURM configuration of its own at {SLURM_CONF} (a real cluster's is never overwritten)")
    if os.name != "posix" or os.geteuid() != 0:
        missing.append("root")
    missing += [name for name in binaries if shutil.which(name, path=_sbin_path()) is None]
    return missing


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require(binaries: tuple[str, ...], postgres: bool = False) -> None:
    """Skip the calling test where the services cannot run (no root, packages missing), with how to
    run it; in CI (CI=true) fail it instead, with the same reason."""
    import pytest

    missing = missing_requirements(binaries)
    if postgres and postgres_bin() is None:
        missing.append("postgresql")
    if missing:
        reason = f"needs {', '.join(missing)}: {HOW_TO_RUN}"
        if in_ci():
            pytest.fail(f"CI=true but this machine cannot run the service test: {reason}", pytrace=False)
        pytest.skip(reason)


def _reap(pid: int) -> None:
    """Collect ``pid``'s exit status if it is an ended child of this process."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def postgres_bin() -> Path | None:
    found = sorted(Path("/").glob(POSTGRES_BIN_GLOB.lstrip("/")), key=lambda p: int(p.parent.name))
    return found[-1] if found and (found[-1] / "initdb").exists() else None


def _sbin_path() -> str:
    return os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


def _which(name: str) -> str:
    path = shutil.which(name, path=_sbin_path())
    if path is None:
        raise ServiceError(f"{name} not found ({HOW_TO_RUN})")
    return path


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait(check, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise ServiceError(f"{what} did not come up within {timeout:.0f} s; {log}:\n{_tail(log)}")


def stop_by_pid_file(pid_file: Path, timeout: float = 20) -> None:
    """SIGTERM the process named in pid_file, SIGKILL after timeout; a missing file is a no-op."""
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class SlurmCluster:
    """A one-node SLURM cluster on 127.0.0.1: partition ``debug``, ``gpu`` GRES backed by /dev/null,
    no accounting database (so sacct has nothing: the profile's ``slurm-status-command: squeue``)."""

    def __init__(self, root: Path, cpus: int | None = None):
        self.root = Path(root)
        self.cpus = cpus or os.cpu_count() or 1
        # The default path: the jobstep plugin's inner `srun` drops SLURM_* variables (SLURM_CONF
        # included), so a configuration elsewhere would not reach it.
        self.conf = SLURM_CONF
        self.gres_conf = SLURM_CONF.parent / "gres.conf"
        self.munge_socket = self.root / "munge" / "munge.socket"
        self.pid_files = [self.root / "slurmd.pid", self.root / "slurmctld.pid", self.root / "munge" / "munged.pid"]

    @property
    def env(self) -> dict[str, str]:
        """Variables that point SLURM's commands at this cluster."""
        return {"SLURM_CONF": str(self.conf)}

    def _command_env(self) -> dict[str, str]:
        return {**os.environ, **self.env, "PATH": _sbin_path()}

    def write_config(self) -> None:
        hostname = socket.gethostname().split(".")[0]
        memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
        for folder in ("munge", "state", "spool", "logs"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        (self.root / "munge").chmod(0o700)
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        self.conf.parent.mkdir(parents=True, exist_ok=True)
        self.gres_conf.write_text(f"{CONF_MARKER} {self.root}\nName=gpu File=/dev/null\n")
        self.conf.write_text(f"""\
{CONF_MARKER} {self.root}
ClusterName=prdnet-test
SlurmctldHost={hostname}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
StateSaveLocation={self.root / "state"}
SlurmdSpoolDir={self.root / "spool"}
SlurmctldPidFile={self.root / "slurmctld.pid"}
SlurmdPidFile={self.root / "slurmd.pid"}
SlurmctldLogFile={self.root / "logs" / "slurmctld.log"}
SlurmdLogFile={self.root / "logs" / "slurmd.log"}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
MpiDefault=none
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
MinJobAge=300
KillWait=5
NodeName={hostname} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={memory_mb} Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes={hostname} Default=YES MaxTime=INFINITE State=UP
""")

    def _lock(self, timeout: float) -> None:
        """One test cluster per machine (it owns /etc/slurm/slurm.conf): wait for another to stop."""
        import fcntl

        self._lock_file = open(LOCK_FILE, "w")  # noqa: SIM115 - held until stop()
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ServiceError(f"another test cluster held {LOCK_FILE} for {timeout:.0f} s") from None
                time.sleep(1)

    def start(self, timeout: float = 60, lock_timeout: float = 900) -> None:
        for name in SLURM_BINARIES:
            _which(name)
        self._lock(lock_timeout)
        for conf in (self.conf, self.gres_conf):
            if conf.exists() and not ours(conf):
                raise ServiceError(f"{conf} exists and is not a test cluster's: not overwriting it")
        self.write_config()
        env = self._command_env()
        munge = self.root / "munge"
        subprocess.run(
            [_which("munged"), "--force", f"--socket={self.munge_socket}", f"--key-file={munge / 'munge.key'}",
             f"--pid-file={munge / 'munged.pid'}", f"--log-file={munge / 'munged.log'}",
             f"--seed-file={munge / 'munged.seed'}"],
            check=False, env=env, timeout=timeout, capture_output=True, text=True,
        )  # fmt: skip
        _wait(self.munge_socket.exists, timeout, "munged", munge / "munged.log")
        logs = self.root / "logs"
        for daemon in ("slurmctld", "slurmd"):
            started = subprocess.run([_which(daemon)], env=env, timeout=timeout, capture_output=True, text=True)
            if started.returncode != 0:
                raise ServiceError(f"{daemon} failed: {started.stderr.strip()}\n{_tail(logs / f'{daemon}.log')}")
        _wait(self._node_idle, timeout, "the SLURM node", logs / "slurmctld.log")

    def _node_idle(self) -> bool:
        out = subprocess.run(
            [_which("sinfo"), "--noheader", "--format=%t"], env=self._command_env(), capture_output=True, text=True, timeout=10
        )
        return out.returncode == 0 and out.stdout.strip().rstrip("*") in {"idle", "mix", "alloc"}

    def stop(self) -> None:
        for pid_file in self.pid_files:
            stop_by_pid_file(pid_file)
        for conf in (self.conf, self.gres_conf):
            if ours(conf, self.root):
                conf.unlink()
        lock = getattr(self, "_lock_file", None)
        if lock is not None:
            lock.close()  # releases the flock
            self._lock_file = None


class MlflowServer:
    """PostgreSQL (initdb into a private folder, 127.0.0.1, a free port) and ``mlflow server`` with it
    as backend store and a local artifact destination (proxied artifacts), on 127.0.0.1."""

    def __init__(self, root: Path, mlflow_executable: str):
        self.root = Path(root)
        self.mlflow = mlflow_executable
        self.pgdata = self.root / "pgdata"
        self.pg_port = free_port()
        self.port = free_port()
        self.artifacts = self.root / "artifacts"
        self.server_pid = self.root / "mlflow-server.pid"
        self.server_log = self.root / "mlflow-server.log"

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _as_postgres(self, *command: str, timeout: float = 60) -> subprocess.CompletedProcess:
        # runuser keeps us off su's PAM prompts; postgres refuses to run as root
        return subprocess.run(
            [_which("runuser"), "-u", "postgres", "--", *command],
            capture_output=True, text=True, timeout=timeout, cwd="/",
        )  # fmt: skip

    def start_postgres(self, timeout: float = 60) -> None:
        bin_dir = postgres_bin()
        if bin_dir is None:
            raise ServiceError(f"PostgreSQL not found under {POSTGRES_BIN_GLOB} ({HOW_TO_RUN})")
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        if not self.pgdata.exists():
            self.pgdata.mkdir()
            shutil.chown(self.pgdata, "postgres", "postgres")
            made = self._as_postgres(str(bin_dir / "initdb"), "-D", str(self.pgdata), "-U", "postgres",
                                     "--auth=trust", "--encoding=UTF8", timeout=timeout)  # fmt: skip
            if made.returncode != 0:
                raise ServiceError(f"initdb failed: {made.stderr.strip()}")
        options = f"-c listen_addresses=127.0.0.1 -p {self.pg_port} -k {self.pgdata}"
        started = self._as_postgres(str(bin_dir / "pg_ctl"), "-D", str(self.pgdata), "-o", options,
                                    "-l", str(self.pgdata / "server.log"), "-w", "-t", str(int(timeout)), "start",
                                    timeout=timeout + 10)  # fmt: skip
        if started.returncode != 0:
            raise ServiceError(f"PostgreSQL did not start: {started.stderr.strip()}\n{_tail(self.pgdata / 'server.log')}")
        exists = self._as_postgres(str(bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(self.pg_port), "-tAc",
                                   "SELECT 1 FROM pg_database WHERE datname = 'mlflow'")  # fmt: skip
        if exists.stdout.strip() != "1":
            made = self._as_postgres(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(self.pg_port), "mlflow")
            if made.returncode != 0:
                raise ServiceError(f"createdb failed: {made.stderr.strip()}")

    def start_server(self, timeout: float = 120) -> None:
        backend = f"postgresql://postgres@127.0.0.1:{self.pg_port}/mlflow"
        self.artifacts.mkdir(parents=True, exist_ok=True)
        with open(self.server_log, "ab") as log:
            process = subprocess.Popen(
                [self.mlflow, "server", "--host", "127.0.0.1", "--port", str(self.port),
                 "--backend-store-uri", backend, "--serve-artifacts",
                 "--artifacts-destination", self.artifacts.as_uri(), "--workers", "1"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                env={**os.environ, **WITHOUT_JOB_EXECUTION},
            )  # fmt: skip
        self.server_pid.write_text(f"{process.pid}\n")

        def up() -> bool:
            if process.poll() is not None:
                raise ServiceError(f"mlflow server exited with {process.returncode}:\n{_tail(self.server_log)}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"GET /health HTTP/1.0\r\n\r\n")
                    return b" 200 " in sock.recv(64)
            except OSError:
                return False

        _wait(up, timeout, "mlflow server", self.server_log)

    def stop_server(self) -> None:
        """Stop the mlflow server's process group (the server and its workers)."""
        try:
            pid = int(self.server_pid.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            _reap(pid)  # a zombie server (our child) still counts as a member of its group
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _reap(pid)
        self.server_pid.unlink(missing_ok=True)

    def stop_postgres(self) -> None:
        bin_dir = postgres_bin()
        if bin_dir is not None and (self.pgdata / "postmaster.pid").exists():
            self._as_postgres(str(bin_dir / "pg_ctl"), "-D", str(self.pgdata), "-m", "fast", "-w", "stop")
        stop_by_pid_file(self.pgdata / "postmaster.pid")

    def stop(self) -> None:
        self.stop_server()
        self.stop_postgres()


@contextmanager
def running_mlflow_server(prefix: str) -> Iterator[MlflowServer]:
    """PostgreSQL and ``mlflow server`` in a fresh folder outside pytest's 0700 tmp folders (the
    postgres user must reach its data folder); stopped and removed on exit."""
    require(("runuser",), postgres=True)
    root = Path(tempfile.mkdtemp(prefix=prefix))
    service = MlflowServer(root, str(Path(sys.executable).parent / "mlflow"))
    try:
        service.start_postgres()
        service.start_server()
        yield service
    finally:
        service.stop()
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] != "slurm" or argv[1] not in {"start", "stop"}:
        print(__doc__, file=sys.stderr)
        return 2
    cluster = SlurmCluster(Path(argv[2]).resolve())
    if argv[1] == "start":
        cluster.start()
        print(f"export SLURM_CONF={cluster.conf}")
    else:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
