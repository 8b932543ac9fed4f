localrules:
    aggregate,
    matbench_record,
    mlflow_import,
    html_report,
    generalization,
    invariance_audit,


rule aggregate:
    """One table per dataset: model variants × tasks, with and without diffraction (paired Δ, CI, p),
    published scores, and our ratio to the published score of the same model."""
    input:
        metrics=lambda w: [f"{run_dir(job)}/metrics.json" for job in training_jobs(w.dataset)],
        runs=lambda w: [f"{run_dir(job)}/run.json" for job in training_jobs(w.dataset)],
        published=present(config.get("published_scores")),
        splits=rules.split.output.summary,
        leakage=rules.split.output.leakage,
    output:
        markdown=f"{RESULTS}/tables/{{dataset}}.md",
        csv=f"{RESULTS}/tables/{{dataset}}.csv",
        runs=f"{RESULTS}/tables/{{dataset}}_runs.csv",
        paired=f"{RESULTS}/tables/{{dataset}}_paired.csv",
        ratios=f"{RESULTS}/tables/{{dataset}}_published.csv",
    params:
        published=f"--published {config['published_scores']}" if config.get("published_scores") else "",  # an input too
        prefix=lambda w: f"{RESULTS}/tables/{w.dataset}",
    log:
        f"{RESULTS}/logs/aggregate/{{dataset}}.log",
    shell:
        "prdnet aggregate --dataset {wildcards.dataset} --metrics {input.metrics} {params.published} "
        "--splits-summary {input.splits} --out-prefix {params.prefix} > {log} 2>&1"


rule generalization:
    """In distribution vs out of distribution (prdnet.generalization): each variant's error on the
    datasets with `compare_with` divided by its error on the random split they name."""
    input:
        metrics=[f"{run_dir(job)}/{name}" for job in generalization_jobs() for name in ("metrics.json", "predictions.parquet")],
    output:
        markdown=f"{RESULTS}/tables/generalization.md",
        csv=f"{RESULTS}/tables/generalization.csv",
    params:
        metrics=lambda w: [f"{run_dir(job)}/metrics.json" for job in generalization_jobs()],
        compare_with=as_json(COMPARE_WITH),
        prefix=f"{RESULTS}/tables/generalization",
    log:
        f"{RESULTS}/logs/generalization.log",
    shell:
        "prdnet generalization --metrics {params.metrics} --compare-with {params.compare_with} "
        "--out-prefix {params.prefix} > {log} 2>&1"


rule invariance_audit:
    """The invariance audit (prdnet.audit) of the configuration's backbones at the cheap `small` preset,
    on crystals of the embedded MP file: the report's audit section."""
    input:
        data=lambda w: AUDIT_DATA,
    output:
        f"{RESULTS}/audit.md",
    params:
        models=" ".join(AUDIT_MODELS),
    log:
        f"{RESULTS}/logs/invariance_audit.log",
    shell:
        "python -m prdnet.audit --preset small --models {params.models} --data {input.data} --skip-absent-ids "
        "> {output} 2> {log}"


rule matbench_record:
    """A MatBench leaderboard file of one model variant, through MatbenchBenchmark.record and to_file
    (one prediction per fold: the jobs of the first seed)."""
    input:
        predictions=lambda w: [
            f"{run_dir(dict(w.items(), task=config['datasets'][w.dataset]['tasks'][0], fold=fold, seed=SEEDS[0]))}/predictions.parquet"
            for fold in folds(w.dataset)
        ],
    output:
        f"{RESULTS}/{{dataset}}/matbench/{{model}}/{{diffraction}}/{{ablation}}/results.json.gz",
    params:
        matbench_task=lambda w: config["datasets"][w.dataset]["matbench_task"],
        matminer_data=lambda w: config["datasets"][w.dataset]["matminer_data"],
        metadata=lambda w: as_json({
            "algorithm": f"prdnet-bench {w.model} diffraction={w.diffraction} ablation={w.ablation}",
            "model_spec": json.dumps(model_spec(w), sort_keys=True),
            "training": json.dumps(config["training"], sort_keys=True),
        }),
    log:
        f"{RESULTS}/logs/matbench_record/{{dataset}}/{{model}}/{{diffraction}}/{{ablation}}.log",
    shell:
        "prdnet matbench-record --matbench-task {params.matbench_task} --matminer-data {params.matminer_data} "
        "--predictions {input.predictions} --metadata {params.metadata} --out {output} > {log} 2>&1"


rule mlflow_import:
    """The single MLflow writer: imports every finished job once (re-runs import nothing twice)."""
    input:
        metrics=[f"{run_dir(job)}/metrics.json" for job in training_jobs()],
    output:
        f"{RESULTS}/mlflow_import.json",
    params:
        experiment=config["mlflow"]["experiment"],
        results_dir=RESULTS,
        # use_env_tracking_uri: the job reads MLFLOW_TRACKING_URI itself (it may carry credentials)
        tracking_uri=(
            "--tracking-uri-from-env" if config["mlflow"].get("use_env_tracking_uri")
            else f"--tracking-uri {config['mlflow']['tracking_uri']}" if config["mlflow"].get("tracking_uri")
            else ""
        ),
    log:
        f"{RESULTS}/logs/mlflow_import.log",
    shell:
        "prdnet mlflow-import --metrics {input.metrics} --results-dir {params.results_dir} --experiment {params.experiment} "
        "{params.tracking_uri} --out {output} > {log} 2>&1"


rule html_report:
    """One self-contained HTML report (`make report`; not part of `all`): tables, bar charts, parity
    plots and learning curves, rejects, audit (results/audit.md when present), provenance."""
    input:
        metrics=[f"{run_dir(job)}/metrics.json" for job in training_jobs()],
        predictions=[f"{run_dir(job)}/predictions.parquet" for job in training_jobs()],
        tables=[f"{RESULTS}/tables/{dataset}.md" for dataset in DATASETS if training_jobs(dataset)],
        audit=[f"{RESULTS}/audit.md"] if AUDIT_DATA and AUDIT_MODELS else [],
        generalization=[f"{RESULTS}/tables/generalization.md"] if generalization_jobs() else [],
    output:
        f"{RESULTS}/report.html",
    params:
        results_dir=RESULTS,
        config=as_json(config),
    log:
        f"{RESULTS}/logs/report.log",
    shell:
        "prdnet report --metrics {input.metrics} --results-dir {params.results_dir} --config {params.config} "
        "--out {output} > {log} 2>&1"
