rule featurize:
    """Build a dataset's graphs by one graph recipe into Parquet shards (folder named by the recipe's digest and shard count)."""
    input:
        structures=rules.prepare.output.structures,
    output:
        shards=[f"{RESULTS}/{{dataset}}/graphs/{{digest}}/{shard_file_name(i)}" for i in range(N_SHARDS)],
        manifest=f"{RESULTS}/{{dataset}}/graphs/{{digest}}/manifest.json",
    wildcard_constraints:
        digest="|".join(SHARD_SETS),
    params:
        featurizer=lambda w: as_json(featurizer_options(w.digest)),
        out_dir=lambda w: f"{RESULTS}/{w.dataset}/graphs/{w.digest}",
    threads: config["featurizer"]["workers"]
    log:
        f"{RESULTS}/logs/featurize/{{dataset}}-{{digest}}.log",
    shell:
        "prdnet featurize --structures {input.structures} --featurizer {params.featurizer} "
        "--workers {threads} --out-dir {params.out_dir} > {log} 2>&1"
