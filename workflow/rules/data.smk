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


rule crystal_groups:
    """Each crystal's formula, chemical system, space group, prototype and duplicate cluster (prdnet.data.crystal_groups)."""
    input:
        structures=rules.prepare.output.structures,
    output:
        groups=f"{RESULTS}/{{dataset}}/crystal_groups.parquet",
    params:
        matcher=as_json(config.get("leakage_matcher", {})),
    threads: config["featurizer"]["workers"]
    log:
        f"{RESULTS}/logs/crystal_groups/{{dataset}}.log",
    shell:
        "prdnet groups --structures {input.structures} --matcher {params.matcher} --workers {threads} "
        "--out {output.groups} > {log} 2>&1"


rule split:
    """Write splits/<task>/<fold>/{train,val,test}.txt for every task and fold, the leakage audit of each
    (leakage.json, leakage_pairs.csv, leakage_dropped.csv), summary.json last."""
    input:
        structures=rules.prepare.output.structures,
        folds=rules.prepare.output.folds,
        groups=rules.crystal_groups.output.groups,
    output:
        summary=f"{RESULTS}/{{dataset}}/splits/summary.json",
        leakage=f"{RESULTS}/{{dataset}}/splits/leakage.json",
    params:
        split=lambda w: as_json(config["datasets"][w.dataset]["split"]),
        leakage=lambda w: config["datasets"][w.dataset].get("leakage", "report"),
        out_dir=lambda w: f"{RESULTS}/{w.dataset}/splits",
    log:
        f"{RESULTS}/logs/split/{{dataset}}.log",
    shell:
        "prdnet split --structures {input.structures} --official-folds {input.folds} --groups {input.groups} "
        "--split {params.split} --leakage {params.leakage} --out-dir {params.out_dir} > {log} 2>&1"
