import json
import shlex

from prdnet.config import validate_config
from prdnet.data.graphs import GraphParams
from prdnet.data.shards import shard_file_name, shard_set_digest

validate_config(config)

RESULTS = config["results_dir"]
DATASETS = sorted(config["datasets"])
N_SHARDS = config["featurizer"]["n_shards"]


wildcard_constraints:
    dataset="|".join(DATASETS),


def as_json(block):
    """A config block as one shell-quoted JSON argument."""
    return shlex.quote(json.dumps(block, sort_keys=True))


def graph_options():
    """The featurizer block without the keys that do not change the graphs' content."""
    return {k: v for k, v in config["featurizer"].items() if k != "workers"}


def graph_params():
    return GraphParams(**{k: v for k, v in graph_options().items() if k != "n_shards"})


def shard_dir(dataset):
    return f"{RESULTS}/{dataset}/graphs/{shard_set_digest(graph_params(), N_SHARDS)}"


def shard_files(dataset):
    return [f"{shard_dir(dataset)}/{shard_file_name(i)}" for i in range(N_SHARDS)]


def all_outputs():
    outputs = []
    for dataset in DATASETS:
        outputs += shard_files(dataset)
        outputs += [f"{shard_dir(dataset)}/manifest.json", f"{RESULTS}/{dataset}/splits/summary.json"]
    return outputs
