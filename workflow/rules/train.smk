rule train:
    """Train one model variant on one task and fold; test once on the best-validation weights."""
    input:
        shards=lambda w: shard_files(w.dataset),
        splits=f"{RESULTS}/{{dataset}}/splits/summary.json",
        summary=f"{RESULTS}/{{dataset}}/summary.json",
    output:
        metrics=f"{RESULTS}/{RUN}/metrics.json",
        predictions=f"{RESULTS}/{RUN}/predictions.parquet",
        history=f"{RESULTS}/{RUN}/history.csv",
        checkpoint=f"{RESULTS}/{RUN}/model.pt",
        run=f"{RESULTS}/{RUN}/run.json",
    params:
        model_spec=lambda w: as_json(model_spec(w)),
        resolved_model=tracked_model,  # not on the command line: tracked, so a preset edit re-runs its jobs
        training=as_json(config["training"]),
        labels=lambda w: as_json({k: w[k] for k in ("dataset", "fold", "model", "diffraction", "ablation")}),
        split_dir=lambda w: f"{RESULTS}/{w.dataset}/splits/{w.task}/{w.fold}",
        out_dir=lambda w: f"{RESULTS}/" + RUN.format(**dict(w.items())),
    threads: config["resources"]["train"]["threads"]
    resources:
        mem_mb=config["resources"]["train"]["mem_mb"],
        runtime=config["resources"]["train"]["runtime"],
        gpu=config["resources"]["train"]["gpu"],
        **({"gpu_model": config["resources"]["train"]["gpu_model"]} if config["resources"]["train"].get("gpu_model") else {}),
    log:
        f"{RESULTS}/logs/train/{RUN}.log",
    shell:
        "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} prdnet train --shards {input.shards} "
        "--split-dir {params.split_dir} --dataset-summary {input.summary} --task {wildcards.task} "
        "--model-spec {params.model_spec} --training {params.training} --labels {params.labels} "
        "--out-dir {params.out_dir} > {log} 2>&1"
