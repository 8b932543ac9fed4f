# The only rules that need the network: they fetch a networked source into its cache under
# resources/ (git-ignored) with the data version beside it. They are local rules, because compute
# nodes often have no network; every later step reads the cache. Nothing here runs at parse time:
# the DAG (datasets, tasks, folds) comes from the config alone, so a dry run plans offline.
# The Materials Project key is read by the job from MP_API_KEY; it is never a param or in a log.
import os

MATMINER_RESOURCES = "resources/matminer"


localrules:
    download_mp_live,
    download_jarvis,
    download_matbench,


def source_downloads(dataset):
    """The downloaded files the prepare step of ``dataset`` reads (none for offline sources)."""
    options = config["datasets"][dataset]
    if options["source"] in NETWORK_SOURCES:
        return [options["cache"]]
    if options["source"] == "matbench" and os.path.normpath(options["matminer_data"]) == MATMINER_RESOURCES:
        return [f"{MATMINER_RESOURCES}/{options['matbench_task']}.json.gz"]
    return []


rule download_mp_live:
    """Materials Project summary documents through mp-api (needs MP_API_KEY in the environment)."""
    output:
        cache="resources/mp_live/{dataset}.json.gz",
        version="resources/mp_live/{dataset}.json.gz.version.json",
    params:
        options=lambda w: as_json(config["datasets"][w.dataset]),
    log:
        f"{RESULTS}/logs/download/{{dataset}}.log",
    shell:
        "prdnet download --dataset {wildcards.dataset} --options {params.options} > {log} 2>&1"


rule download_jarvis:
    """A JARVIS figshare snapshot through jarvis-tools (MEGNet MP-2018.6.1, JARVIS-DFT 3D 2021)."""
    output:
        cache="resources/{jarvis_source}/{dataset}.json.gz",
        version="resources/{jarvis_source}/{dataset}.json.gz.version.json",
    wildcard_constraints:
        jarvis_source="mp_2018|jarvis_dft_3d_2021",
    params:
        options=lambda w: as_json(config["datasets"][w.dataset]),
    log:
        f"{RESULTS}/logs/download/{{jarvis_source}}/{{dataset}}.log",
    shell:
        "prdnet download --dataset {wildcards.dataset} --options {params.options} > {log} 2>&1"


rule download_matbench:
    """One MatBench task's data into resources/matminer (matminer's cache layout, for MATMINER_DATA)."""
    output:
        f"{MATMINER_RESOURCES}/{{matbench_task}}.json.gz",
    wildcard_constraints:
        matbench_task="matbench_[a-z0-9_]+",
    params:
        options=lambda w: as_json({"source": "matbench", "matbench_task": w.matbench_task, "matminer_data": MATMINER_RESOURCES}),
    log:
        f"{RESULTS}/logs/download/{{matbench_task}}.log",
    shell:
        "prdnet download --dataset {wildcards.matbench_task} --options {params.options} > {log} 2>&1"
