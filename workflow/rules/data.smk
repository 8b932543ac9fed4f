rule prepare:
    """Read a source, validate every entry, write the crystal table and the rejects."""
    input:
        lambda w: source_downloads(w.dataset),
        lambda w: source_files(w.dataset),
    output:
        structures=f"{RESULTS}/{{dataset}}/structures.parquet",
        rejects=f"{RESULTS}/{{dataset}}/rejects.csv",
        summary=f"{RESULTS}/{{dataset}}/summary.json",
        folds=f"{RESULTS}/{{dataset}}/official_folds.json",
    params:
        options=lambda w: as_json(config["datasets"][w.dataset]),
        validation=as_json(config["validation"]),
        out_dir=lambda w: f"{RESULTS}/{w.dataset}",
    log:
        f"{RESULTS}/logs/prepare/{{dataset}}.log",
    shell:
        "prdnet prepare --dataset {wildcards.dataset} --options {params.options} "
        "--validation {params.validation} --out-dir {params.out_dir} > {log} 2>&1"


rule split:
    """Write splits/<task>/<fold>/{train,val,test}.txt for every task and fold; summary.json last."""
    input:
        structures=rules.prepare.output.structures,
        folds=rules.prepare.output.folds,
    output:
        summary=f"{RESULTS}/{{dataset}}/splits/summary.json",
    params:
        split=lambda w: as_json(config["datasets"][w.dataset]["split"]),
        out_dir=lambda w: f"{RESULTS}/{w.dataset}/splits",
    log:
        f"{RESULTS}/logs/split/{{dataset}}.log",
    shell:
        "prdnet split --structures {input.structures} --official-folds {input.folds} "
        "--split {params.split} --out-dir {params.out_dir} > {log} 2>&1"
