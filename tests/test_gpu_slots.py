"""GPU slots on a workstation (prdnet.gpu_slots), on a faked device list (PRDNET_GPU_DEVICES): every
running job gets a device of its own, a dead job's slot is free again, and Snakemake's global
`gpu` resource with the wrapper runs at most N jobs on N devices."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from prdnet.gpu_slots import take_slots

# a "training job": records its CUDA_VISIBLE_DEVICES and when it held it
RECORD = "import os, sys, time; t = time.time(); time.sleep(float(sys.argv[2])); " \
         "open(sys.argv[1], 'w').write(f\"{os.environ['CUDA_VISIBLE_DEVICES']} {t} {time.time()}\")"  # fmt: skip


def wrapped(gpus: int, *command: str) -> list[str]:
    return [sys.executable, "-m", "prdnet.gpu_slots", "--gpus", str(gpus), "--", *command]


def fake_machine(tmp_path: Path, devices: str) -> dict[str, str]:
    return {**os.environ, "PRDNET_GPU_DEVICES": devices, "PRDNET_GPU_SLOTS_DIR": str(tmp_path / "slots")}


def intervals(folder: Path) -> list[tuple[str, float, float]]:
    rows = [path.read_text().split() for path in sorted(folder.glob("*.txt"))]
    return [(device, float(start), float(end)) for device, start, end in rows]


def assert_no_shared_slot(records: list[tuple[str, float, float]]) -> None:
    for device in {device for device, _, _ in records}:
        held = sorted((start, end) for d, start, end in records if d == device)
        for (_, end), (start, _) in zip(held, held[1:]):
            assert start >= end, f"two jobs held device {device} at once: {held}"


def test_2n_jobs_on_n_devices_never_share_a_slot(tmp_path):
    devices, jobs = ["0", "1"], 4
    env = fake_machine(tmp_path, ",".join(devices))
    (tmp_path / "out").mkdir()
    processes = [subprocess.Popen(wrapped(1, sys.executable, "-c", RECORD, str(tmp_path / "out" / f"{i}.txt"), "1.0"),
                                  env=env) for i in range(jobs)]  # fmt: skip
    assert [process.wait(timeout=120) for process in processes] == [0] * jobs
    records = intervals(tmp_path / "out")
    assert len(records) == jobs and {device for device, _, _ in records} <= set(devices)
    assert_no_shared_slot(records)


def test_a_killed_job_frees_its_slot(tmp_path):
    env = fake_machine(tmp_path, "7")
    holder = subprocess.Popen(wrapped(1, sys.executable, "-c", "import time; time.sleep(120)"), env=env,
                              stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert "CUDA_VISIBLE_DEVICES=7" in holder.stderr.readline()  # it holds the only slot
    with pytest.raises(TimeoutError):
        take_slots(["7"], 1, tmp_path / "slots", poll_s=0.05, timeout_s=0.5)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    held = take_slots(["7"], 1, tmp_path / "slots", poll_s=0.05, timeout_s=10)
    assert list(held) == ["7"]


def test_a_job_asking_for_more_gpus_than_the_machine_has_is_refused(tmp_path):
    run = subprocess.run(wrapped(3, "true"), env=fake_machine(tmp_path, "0,1"), capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert run.returncode != 0 and "asks for 3 GPU(s) but this machine has 2" in run.stderr


@pytest.mark.workflow
def test_snakemake_runs_at_most_n_gpu_jobs_each_on_its_own_device(tmp_path):
    (tmp_path / "record.py").write_text(RECORD)
    (tmp_path / "Snakefile").write_text(textwrap.dedent(f"""\
        rule all:
            input: expand("out/{{i}}.txt", i=range(4))
        rule job:
            output: "out/{{i}}.txt"
            resources: gpu=1
            shell: "{sys.executable} -m prdnet.gpu_slots --gpus {{resources.gpu}} -- "
                   "{sys.executable} record.py {{output}} 1.0"
        """))  # fmt: skip
    snakemake = Path(sys.executable).parent / "snakemake"
    run = subprocess.run([str(snakemake), "--cores", "4", "--resources", "gpu=2", "--directory", str(tmp_path),
                          "--snakefile", str(tmp_path / "Snakefile")], env=fake_machine(tmp_path, "0,1"),
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    records = intervals(tmp_path / "out")
    assert len(records) == 4
    assert_no_shared_slot(records)
    moments = sorted({t for _, start, end in records for t in (start, end)})
    running = [sum(start <= t < end for _, start, end in records) for t in moments]
    assert max(running) <= 2
