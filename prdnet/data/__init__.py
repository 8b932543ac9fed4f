"""Data layer: sources → validation → splits → periodic graphs → Parquet shards → PyG batches.

Nothing in this package knows about models.
"""
