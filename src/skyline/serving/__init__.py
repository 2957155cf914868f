"""The inference server: model repository, runtimes, dynamic batching, the Open Inference Protocol."""
