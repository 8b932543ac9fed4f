import json
import os
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from prdnet.config import check_device, check_files, check_startup, dataset_folds, training_for_seed, training_seeds, validate_config, workflow_names
from prdnet.guards import DUMMY_MODEL
from prdnet.run_summary import write_run_summary
from dataclasses import asdict

from prdnet.data.recipes import DEFAULT_RECIPE, graph_recipe_for, graph_recipes
from prdnet.data.shards import shard_file_name, shard_set_digest
from prdnet.models.registry import load_presets, resolve_spec
from prdnet.training.recipe import protocol_recipe

# The rules run `prdnet`, installed beside the Python that runs Snakemake (.venv/bin): put that
# folder first on the jobs' PATH, so `.venv/bin/snakemake ...` works without activating the venv.
os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])

if not config:
    raise WorkflowError(
        "no configuration: pass --configfile (e.g. config/config.yaml) or use a profile that names one "
        "(workflow/profiles/local)"
    )
validate_config(config)
check_device(config, jobs_run_here=False)
# A dry run plans from the config alone and needs no data: missing files are a warning at parse time
# and an error when a run starts (onstart runs before the first job, never in a dry run).
check_files(config, warn_only=True)


onstart:
    # the same checks as `prdnet check-config`; cuda: CUDA here when the jobs run here
    check_startup(config, jobs_run_here=workflow.local_exec)


RESULTS = config["results_dir"]
DATASETS = sorted(config["datasets"])
N_SHARDS = config["featurizer"]["n_shards"]

# Networked sources read a cache under resources/ written by a download rule (download.smk).
NETWORK_SOURCES = ("mp_live", "mp_2018", "jarvis_dft_3d_2021")
for _name, _options in config["datasets"].items():
    if _options["source"] in NETWORK_SOURCES:
        _options.setdefault("cache", f"resources/{_options['source']}/{_name}.json.gz")
_needs_key = sorted(n for n, o in config["datasets"].items() if o["source"] == "mp_live" and not os.path.exists(o["cache"]))
if _needs_key and not os.environ.get("MP_API_KEY", "").strip():
    raise WorkflowError(
        f"dataset(s) {', '.join(_needs_key)} read the live Materials Project (source mp_live): set the environment "
        "variable MP_API_KEY to your API key (https://next-gen.materialsproject.org/api) before starting the workflow"
    )


ALL_TASKS = sorted({task for options in config["datasets"].values() for task in options["tasks"]})
# wildcard values, from the model registry (the one list of names)
DIFFRACTION_MODES = workflow_names()["diffraction"]
ABLATIONS = workflow_names()["ablation"]
SEEDS = training_seeds(config["training"])
RUN = "{dataset}/runs/{task}/{fold}/{model}/{diffraction}/{ablation}/seed{seed}"
"""A training job's folder below RESULTS: one job per dataset/task/fold/model/diffraction/ablation/seed."""
JOB_FILES = ["metrics.json", "predictions.parquet", "history.csv", "model.pt", "run.json"]


wildcard_constraints:
    dataset="|".join(DATASETS),
    task="|".join(ALL_TASKS),
    fold=r"fold\d+",
    model="|".join(sorted([*config["models"], DUMMY_MODEL])),
    diffraction="|".join(DIFFRACTION_MODES),
    ablation="|".join(ABLATIONS),
    seed=r"\d+",


def as_json(block):
    """A config block as one shell-quoted JSON argument."""
    return shlex.quote(json.dumps(block, sort_keys=True))


# Graph recipes (config/models.yaml `graphs:`): each model preset names one; a dataset is
# featurized once per distinct recipe its jobs use, into a folder named by the recipe's digest.
MODEL_PRESETS = load_presets()
try:
    GRAPH_RECIPES = graph_recipes(MODEL_PRESETS)
    MODEL_RECIPES = {name: graph_recipe_for(spec, MODEL_PRESETS) for name, spec in config["models"].items()}
except ValueError as error:
    raise WorkflowError(f"graph recipes (config/models.yaml): {error}") from error
SHARD_SETS = {shard_set_digest(recipe, N_SHARDS): recipe for recipe in [*GRAPH_RECIPES.values(), *MODEL_RECIPES.values()]}
"""Shard-set folder name (recipe digest + shard count) → its recipe."""


def featurizer_options(digest):
    """The featurize job's --featurizer argument: every field of the shard set's recipe, and n_shards."""
    return {**asdict(SHARD_SETS[digest]), "n_shards": N_SHARDS}


def dataset_recipes(dataset):
    """The distinct recipes of a dataset's jobs (sorted by digest); the default recipe for a
    dataset without jobs (it is still prepared, split and featurized)."""
    recipes = {MODEL_RECIPES[job["model"]] for job in training_jobs(dataset) if job["model"] in MODEL_RECIPES}
    return sorted(recipes or {GRAPH_RECIPES[DEFAULT_RECIPE]}, key=lambda recipe: recipe.digest())


def job_recipe(dataset, model):
    """The recipe whose shards a job reads: its model's; the Dummy baseline (which reads only ids
    and targets) reads the dataset's first."""
    return MODEL_RECIPES.get(model) or dataset_recipes(dataset)[0]


def shard_dir(dataset, recipe):
    return f"{RESULTS}/{dataset}/graphs/{shard_set_digest(recipe, N_SHARDS)}"


def shard_files(dataset, recipe):
    return [f"{shard_dir(dataset, recipe)}/{shard_file_name(i)}" for i in range(N_SHARDS)]


def folds(dataset):
    return dataset_folds(config["datasets"][dataset])


def training_jobs(dataset=None):
    """Every job the experiments ask for, as wildcard dicts, without duplicates; each
    dataset/task/fold also gets its Dummy baseline (prdnet.guards), once."""
    jobs = {}
    for experiment in config["experiments"]:
        for name in experiment["datasets"]:
            tasks = [t for t in config["datasets"][name]["tasks"] if t in experiment.get("tasks", [t])]
            for task in tasks:
                for fold in [f for f in folds(name) if f in experiment.get("folds", [f])]:
                    dummy = dict(dataset=name, task=task, fold=fold, model=DUMMY_MODEL, diffraction="none",
                                 ablation="default", seed=SEEDS[0])  # deterministic: one seed
                    jobs[tuple(dummy.values())] = dummy
                    for model in experiment["models"]:
                        for diffraction in experiment["diffraction"]:
                            for ablation in experiment["ablations"]:
                                for seed in SEEDS:
                                    job = dict(dataset=name, task=task, fold=fold, model=model,
                                               diffraction=diffraction, ablation=ablation, seed=seed)
                                    jobs[tuple(job.values())] = job
    return [job for job in jobs.values() if dataset is None or job["dataset"] == dataset]


def run_dir(job):
    return f"{RESULTS}/" + RUN.format(**job)


def summarise_run():
    """The run's end on the console and in <results_dir>/run_summary.txt: finished, flagged and
    unfinished training jobs (prdnet.run_summary)."""
    jobs = training_jobs()
    try:
        text = write_run_summary(RESULTS, [Path(run_dir(job)) for job in jobs],
                                 [Path(f"{RESULTS}/logs/train/" + RUN.format(**job) + ".log") for job in jobs])
    except OSError as error:  # e.g. the results folder could not be made: the run's own error says why
        print(f"no run summary: {error}", file=sys.stderr, flush=True)
        return
    print(text, file=sys.stderr, flush=True)


onsuccess:
    summarise_run()


onerror:
    summarise_run()


def model_spec(wildcards):
    if wildcards.model == DUMMY_MODEL:
        return {"name": DUMMY_MODEL}
    spec = dict(config["models"][wildcards.model])
    spec["diffraction"] = None if wildcards.diffraction == "none" else wildcards.diffraction
    spec["ablation"] = None if wildcards.ablation == "default" else wildcards.ablation
    return spec


def tracked_model(wildcards):
    """The resolved model spec of a job (preset of config/models.yaml, overrides, diffraction,
    ablation and the recipe of its protocol): a train param, so editing a preset or a protocol
    re-runs exactly the jobs that use it."""
    spec = model_spec(wildcards)
    if spec["name"] == DUMMY_MODEL:
        return json.dumps(spec, sort_keys=True)
    # the recipe its protocol fixes (config/protocols.yaml) over the preset's: editing either re-runs it
    resolved = {**resolve_spec(spec, MODEL_PRESETS), "training": protocol_recipe(spec)}
    return json.dumps(resolved, sort_keys=True)


def present(*paths):
    """Those of ``paths`` that are files now. Inputs declared this way are declared when present:
    a dry run plans without the data, and a real run stops at start-up where one is missing
    (check_files)."""
    return [path for path in paths if path and os.path.isfile(path)]


def source_files(dataset):
    """The data files a dataset's prepare step reads (declared inputs, so an edit re-runs it and
    everything after it): the configured file, a structure folder's files, the MatBench task
    file, id-list files; those not there yet are left out (present)."""
    options = config["datasets"][dataset]
    paths = [options[key] for key in ("path",) if key in options]
    if os.path.isdir(options.get("structures_dir", "")):
        folder = options["structures_dir"]
        paths += sorted(os.path.join(folder, name) for name in os.listdir(folder) if not name.startswith("."))
    if options["source"] == "matbench" and os.path.normpath(options["matminer_data"]) != MATMINER_RESOURCES:
        paths.append(os.path.join(options["matminer_data"], f"{options['matbench_task']}.json.gz"))  # else a download
    if options["split"]["kind"] == "id_lists":
        paths += options["split"]["test"]
    return present(*paths)


def is_matbench(dataset):
    return config["datasets"][dataset]["source"] == "matbench"


def matbench_variants(dataset):
    """(task, model, diffraction, ablation) of a MatBench dataset's jobs."""
    return sorted({(j["task"], j["model"], j["diffraction"], j["ablation"]) for j in training_jobs(dataset)})


def matbench_file(dataset, model, diffraction, ablation):
    return f"{RESULTS}/{dataset}/matbench/{model}/{diffraction}/{ablation}/results.json.gz"


COMPARE_WITH = {name: d["compare_with"] for name, d in config["datasets"].items() if d.get("compare_with")}
"""Out-of-distribution dataset → the random-split dataset of the same crystals (report: generalization table)."""


def generalization_jobs():
    """The training jobs of the out-of-distribution datasets and of the datasets they compare with."""
    names = set(COMPARE_WITH) | set(COMPARE_WITH.values())
    return [job for job in training_jobs() if job["dataset"] in names]


AUDIT_DATA = next((d["path"] for d in config["datasets"].values()
                   if d["source"] == "mp_2018_cgcnn36k" and os.path.exists(d["path"])), None)  # fmt: skip
"""The embedded MP file the invariance audit draws its crystals from (no audit without one; a
missing file is the start-up check's to report, so a dry run still plans)."""
AUDIT_MODELS = sorted({spec["name"] for spec in config["models"].values()})
"""The backbones of the configuration, audited at the small preset."""


def all_outputs():
    outputs = []
    for dataset in DATASETS:
        for recipe in dataset_recipes(dataset):
            outputs += [*shard_files(dataset, recipe), f"{shard_dir(dataset, recipe)}/manifest.json"]
        outputs.append(f"{RESULTS}/{dataset}/splits/summary.json")
        if training_jobs(dataset):
            outputs.append(f"{RESULTS}/tables/{dataset}.md")
        if is_matbench(dataset):
            outputs += [matbench_file(dataset, *variant[1:]) for variant in matbench_variants(dataset)]
    # every job's files are targets too: Snakemake 9 does not rebuild a missing intermediate
    # file whose downstream outputs are present, and a deleted job output must re-run its job
    for job in training_jobs():
        outputs += [f"{run_dir(job)}/{name}" for name in JOB_FILES]
    if training_jobs():
        outputs.append(f"{RESULTS}/mlflow_import.json")
    if generalization_jobs():
        outputs.append(f"{RESULTS}/tables/generalization.md")
    if AUDIT_DATA and AUDIT_MODELS:
        outputs.append(f"{RESULTS}/audit.md")
    return outputs
