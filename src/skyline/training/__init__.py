"""Model training: data splits, models, the trainer, distributed data-parallel, pruning, differential privacy."""
