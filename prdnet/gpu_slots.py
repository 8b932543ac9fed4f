"""One GPU per running job on a workstation with several: a slot per device, taken atomically.

    python -m prdnet.gpu_slots --gpus 1 -- prdnet train ...

takes ``--gpus`` free slots among the machine's devices, exports them as ``CUDA_VISIBLE_DEVICES``
and replaces itself (``exec``) with the command. A slot is an exclusive ``flock`` on
``<slots dir>/gpu-<device>.lock``: the kernel grants it to one process at a time, and releases it
when the holder exits or dies (even by SIGKILL), so a crashed job never leaves its GPU taken. When
no slot is free the wrapper waits (Snakemake's global ``--resources gpu=N`` normally keeps the
number of running GPU jobs at the number of devices, so it rarely has to).

Devices: ``PRDNET_GPU_DEVICES`` (a comma-separated list; also how the tests fake a machine with
GPUs), else ``CUDA_VISIBLE_DEVICES``, else the indices ``nvidia-smi`` lists. Slots live in
``PRDNET_GPU_SLOTS_DIR`` (default ``/tmp/prdnet-gpu-slots``, one per machine, so two workflows on
the same workstation share them). Inside a SLURM job (``SLURM_JOB_ID`` set) the scheduler has
already given the job its devices, and with ``--gpus 0`` there is nothing to take: the command
then runs as it is.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_SLOTS_DIR = Path("/tmp/prdnet-gpu-slots")


def machine_devices(environ: dict[str, str] | None = None) -> list[str]:
    """The GPU devices of this machine (see the module docstring for the order of sources)."""
    environ = os.environ if environ is None else environ
    for variable in ("PRDNET_GPU_DEVICES", "CUDA_VISIBLE_DEVICES"):
        listed = [device.strip() for device in environ.get(variable, "").split(",") if device.strip()]
        if listed:
            return listed
    try:
        query = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=30)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in query.stdout.splitlines() if line.strip()] if query.returncode == 0 else []


def try_take(slots_dir: Path, device: str) -> int | None:
    """The descriptor holding ``device``'s slot, or None if another process holds it."""
    descriptor = os.open(slots_dir / f"gpu-{device}.lock", os.O_CREAT | os.O_RDWR, 0o666)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        return None
    os.ftruncate(descriptor, 0)
    os.write(descriptor, f"{os.getpid()}\n".encode())  # who holds it, for people looking
    return descriptor


def take_slots(devices: list[str], count: int, slots_dir: Path, poll_s: float = 0.5,
               timeout_s: float | None = None) -> dict[str, int]:  # fmt: skip
    """Take ``count`` slots ({device: descriptor}), waiting until that many are free at once.

    Partial holdings are given back before waiting, so two jobs never block each other.
    Raises ``ValueError`` if the machine has fewer devices, ``TimeoutError`` after ``timeout_s``."""
    if count > len(devices):
        raise ValueError(f"a job asks for {count} GPU(s) but this machine has {len(devices)}: {devices or 'none'} "
                         "(set PRDNET_GPU_DEVICES or CUDA_VISIBLE_DEVICES to list them)")  # fmt: skip
    slots_dir.mkdir(parents=True, exist_ok=True)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        held: dict[str, int] = {}
        for device in devices:
            descriptor = try_take(slots_dir, device)
            if descriptor is not None:
                held[device] = descriptor
                if len(held) == count:
                    return held
        for descriptor in held.values():
            os.close(descriptor)
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"no {count} free GPU slot(s) among {devices} in {slots_dir} within {timeout_s} s")
        time.sleep(poll_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m prdnet.gpu_slots", description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpus", type=int, required=True, help="GPUs this job needs")
    parser.add_argument("--slots-dir", type=Path,
                        default=Path(os.environ.get("PRDNET_GPU_SLOTS_DIR", DEFAULT_SLOTS_DIR)))  # fmt: skip
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- the command to run")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given (put it after --)")
    environ = dict(os.environ)
    if args.gpus > 0 and "SLURM_JOB_ID" not in environ:
        held = take_slots(machine_devices(environ), args.gpus, args.slots_dir)
        for descriptor in held.values():
            os.set_inheritable(descriptor, True)  # the command holds the slots until it ends
        environ["CUDA_VISIBLE_DEVICES"] = ",".join(held)
        print(f"GPU slot(s) {', '.join(held)}: CUDA_VISIBLE_DEVICES={environ['CUDA_VISIBLE_DEVICES']}",
              file=sys.stderr, flush=True)  # fmt: skip
    os.execvpe(command[0], command, environ)
    return 127  # not reached: exec replaced this process


if __name__ == "__main__":
    sys.exit(main())
