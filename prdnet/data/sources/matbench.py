"""MatBench v0.1 structure tasks through the real ``matbench`` package.

The data are read by matminer from ``MATMINER_DATA`` (config key ``matminer_data``); the
offline copies hold ``matbench_jdft2d`` and ``matbench_phonons``, other tasks download when a
network is there. The official five test folds (``KFold(5, shuffle=True,
random_state=18012019)``, shipped in the package) are returned with the entries.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from prdnet.data.sources import Entry, SourceData, Task, register_source


def task_name(target: str) -> str:
    """A wildcard-safe task name from a MatBench target column ('last phdos peak' → 'last_phdos_peak')."""
    return re.sub(r"[^0-9a-zA-Z]+", "_", target).strip("_").lower()


def open_matbench_task(benchmark_task: str, matminer_data: str | Path | None) -> tuple[Any, Any]:
    """A ``MatbenchBenchmark`` holding one task, and that task (``MatbenchTask``) with its data loaded."""
    if matminer_data is not None:
        os.environ["MATMINER_DATA"] = str(Path(matminer_data).resolve())
    from matbench.bench import MatbenchBenchmark

    benchmark = MatbenchBenchmark(autoload=False, subset=[benchmark_task])
    task = benchmark.tasks_map[benchmark_task]
    task.load()
    return benchmark, task


STRUCTURE_TASKS = {
    # the nine MatBench v0.1 structure tasks → the task names this source gives them (task_name of the target)
    "matbench_dielectric": "n",
    "matbench_jdft2d": "exfoliation_en",
    "matbench_log_gvrh": "log10_g_vrh",
    "matbench_log_kvrh": "log10_k_vrh",
    "matbench_mp_e_form": "e_form",
    "matbench_mp_gap": "gap_pbe",
    "matbench_mp_is_metal": "is_metal",
    "matbench_perovskites": "e_form",
    "matbench_phonons": "last_phdos_peak",
}


TARGET_BOUNDS = {
    # plausible target ranges of tasks above (validation.target_bounds replaces them); perovskites'
    # e_form is per 5-atom cell, not per atom, so it has no default
    "matbench_mp_e_form": (-10.0, 10.0),  # eV/atom
    "matbench_mp_gap": (0.0, 30.0),  # eV
}


def target_value(value: Any) -> float | None:
    """A target as a float; booleans (mp_is_metal) become 1.0 / 0.0, missing values None."""
    if value is None:
        return None
    return float(bool(value)) if isinstance(value, (bool, np.bool_)) else float(value)


def _entries(frame: Any, target: str, name: str) -> Iterator[Entry]:
    for material_id, structure, value in zip(frame.index, frame["structure"], frame[target]):
        yield Entry(str(material_id), structure, {name: target_value(value)})


def download(benchmark_task: str, matminer_data: str | Path) -> Path:
    """Fetch one task's data into ``matminer_data`` (matminer's cache layout, ``<task>.json.gz``)."""
    Path(matminer_data).mkdir(parents=True, exist_ok=True)
    open_matbench_task(benchmark_task, matminer_data)
    path = Path(matminer_data) / f"{benchmark_task}.json.gz"
    if not path.exists():
        raise FileNotFoundError(f"matminer did not write {path}")
    return path


def not_a_matbench_task(name: str) -> str:
    """The error for a ``matbench_task`` that MatBench v0.1 does not have."""
    return (f"config key 'datasets.<name>.matbench_task': {name!r} is not a MatBench v0.1 structure task "
            f"({', '.join(STRUCTURE_TASKS)}); for a file in MatBench's format under another name use "
            "source: matbench_json with its path and a targets block")  # fmt: skip


def matbench_tasks(options: dict[str, Any]) -> list[str] | None:
    """The task name of a MatBench structure task (``None`` for one not in :data:`STRUCTURE_TASKS`)."""
    name = STRUCTURE_TASKS.get(options.get("matbench_task", ""))
    return [name] if name else None


@register_source("matbench", tasks=matbench_tasks)
def matbench(options: dict[str, Any]) -> SourceData:
    """Source factory: ``options['matbench_task']`` (e.g. ``matbench_jdft2d``), ``options['matminer_data']``."""
    import matbench as matbench_package

    benchmark_task = options["matbench_task"]
    if benchmark_task not in STRUCTURE_TASKS:
        raise ValueError(not_a_matbench_task(benchmark_task))
    _, task = open_matbench_task(benchmark_task, options.get("matminer_data"))
    metadata = task.metadata
    if metadata["input_type"] != "structure":
        raise ValueError(f"{benchmark_task} is a composition task; only structure tasks are supported")
    target = metadata["target"]
    name = task_name(target)
    kind = "classification" if metadata["task_type"] == "classification" else "regression"
    folds = {f"fold{fold}": [str(i) for i in task.get_test_data(fold, include_target=False).index] for fold in task.folds}
    return SourceData(
        tasks={name: Task(name, kind, str(metadata.get("unit") or ""), str(target), TARGET_BOUNDS.get(benchmark_task, (None, None)))},
        entries=_entries(task.df, target, name),
        version=f"matbench {matbench_package.__version__}, {benchmark_task} sha256:{str(metadata.get('hash', ''))[:16]}",
        folds=folds,
    )
