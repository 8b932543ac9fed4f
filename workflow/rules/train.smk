def train_gpus(wildcards):
    """GPUs of one training job: the config's resources.train.gpu (none for the Dummy)."""
    return 0 if wildcards.model == DUMMY_MODEL else config["resources"]["train"]["gpu"]


def train_launcher(wildcards):
    """How a training job starts: `prdnet train` on CPU; with GPUs, inside a GPU slot of this
    machine (prdnet.gpu_slots: its own CUDA_VISIBLE_DEVICES; a no-op inside a SLURM job); with
    more than one GPU, one data-parallel process per GPU through torchrun on this node."""
    gpus = train_gpus(wildcards)
    if gpus == 0:
        return "prdnet train"
    slot = f"python -m prdnet.gpu_slots --gpus {gpus} --"
    if gpus == 1:
        return f"{slot} prdnet train"
    return f"{slot} torchrun --standalone --nproc-per-node {gpus} -m prdnet.cli train"


class NotARerunTrigger:
    """A rule parameter whose changes re-run no job: Snakemake records only plain values (strings,
    numbers, containers) as a job's parameters, not other objects, and the shell command gets its
    str(). For where a job reports, never for what it computes."""

    def __init__(self, text):
        self.text = text

    def __str__(self):
        return self.text


def live_tracking(wildcards):
    """`--live-tracking {...}` when the MLflow store is a tracking server (the job then logs every
    epoch to its run, prdnet/live_tracking.py); nothing for a SQLite store (the import is its only
    writer). Not a rerun trigger: moving the runs to a server re-trains nothing."""
    mlflow = config["mlflow"]
    from_env = bool(mlflow.get("use_env_tracking_uri"))
    uri = mlflow.get("tracking_uri") or ""
    if not from_env and not uri.lower().startswith(("http://", "https://")):
        return NotARerunTrigger("")
    block = {"experiment": mlflow["experiment"], "results_dir": RESULTS, "tracking_uri": None if from_env else uri}
    return NotARerunTrigger(f"--live-tracking {as_json(block)}")


rule train:
    """Train one model variant on one task, fold and seed; test once on the best-validation weights.

    The job checkpoints every epoch (checkpoint.pt in its folder, deleted when it has finished) and
    resumes from it when run again; stopped by SIGTERM/SIGUSR1 it writes the checkpoint and exits 75
    (prdnet.preemption), and the profiles' `retries` re-run it."""
    input:
        shards=lambda w: shard_files(w.dataset, job_recipe(w.dataset, w.model)),
        splits=f"{RESULTS}/{{dataset}}/splits/summary.json",
        summary=f"{RESULTS}/{{dataset}}/summary.json",
        structures=f"{RESULTS}/{{dataset}}/structures.parquet",
        atom_features=present(config["atom_features"]),
    output:
        metrics=f"{RESULTS}/{RUN}/metrics.json",
        predictions=f"{RESULTS}/{RUN}/predictions.parquet",
        history=f"{RESULTS}/{RUN}/history.csv",
        checkpoint=f"{RESULTS}/{RUN}/model.pt",
        run=f"{RESULTS}/{RUN}/run.json",
    params:
        model_spec=lambda w: as_json(model_spec(w)),
        atom_features=config["atom_features"],
        resolved_model=tracked_model,  # not on the command line: tracked, so a preset edit re-runs its jobs
        training=lambda w: as_json(training_for_seed(config["training"], w.seed)),
        sanity=as_json(config.get("sanity", {})),
        labels=lambda w: as_json({k: w[k] for k in ("dataset", "fold", "model", "diffraction", "ablation", "seed")}),
        split_dir=lambda w: f"{RESULTS}/{w.dataset}/splits/{w.task}/{w.fold}",
        out_dir=lambda w: f"{RESULTS}/" + RUN.format(**dict(w.items())),
        launch=train_launcher,
        live_tracking=live_tracking,
    threads: config["resources"]["train"]["threads"]
    resources:
        mem_mb=config["resources"]["train"]["mem_mb"],
        runtime=config["resources"]["train"]["runtime"],
        gpu=train_gpus,
        # the Dummy asks for no GPU, so no GPU model either ("" = none)
        **({"gpu_model": lambda w: config["resources"]["train"]["gpu_model"] if train_gpus(w) else ""}
           if config["resources"]["train"].get("gpu_model") else {}),
    log:
        f"{RESULTS}/logs/train/{RUN}.log",
    shell:
        "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} {params.launch} --shards {input.shards} "
        "--split-dir {params.split_dir} --dataset-summary {input.summary} --task {wildcards.task} "
        "--model-spec {params.model_spec} --training {params.training} --atom-features {params.atom_features} "
        "--sanity {params.sanity} --labels {params.labels} --structures {input.structures} {params.live_tracking} "
        "--out-dir {params.out_dir} > {log} 2>&1"
