rule featurize:
    """Build the periodic k-NN graphs of a dataset into Parquet shards (folder named by the parameters' digest)."""
    input:
        structures=rules.prepare.output.structures,
    output:
        shards=[f"{RESULTS}/{{dataset}}/graphs/{{digest}}/{shard_file_name(i)}" for i in range(N_SHARDS)],
        manifest=f"{RESULTS}/{{dataset}}/graphs/{{digest}}/manifest.json",
    params:
        featurizer=as_json(graph_options()),
        out_dir=lambda w: f"{RESULTS}/{w.dataset}/graphs/{w.digest}",
    threads: config["featurizer"]["workers"]
    log:
        f"{RESULTS}/logs/featurize/{{dataset}}-{{digest}}.log",
    shell:
        "prdnet featurize --structures {input.structures} --featurizer {params.featurizer} "
        "--workers {threads} --out-dir {params.out_dir} > {log} 2>&1"
