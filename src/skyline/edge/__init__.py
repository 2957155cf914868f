"""The edge agent: local inference, cascaded and split inference with the cloud, store-and-forward uplink."""
