# PRDNet-bench. The rules live in workflow/; this file includes them and names the target.
# Run with a named profile:  snakemake --profile workflow/profiles/local --configfile config/config.yaml
# (Snakemake 9 never picks a rule from an included file as the default target, so `all` is here.)
include: "workflow/Snakefile"


rule all:
    """Everything the configuration asks for."""
    input:
        all_outputs(),
    default_target: True
