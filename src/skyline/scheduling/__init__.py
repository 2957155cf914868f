"""The scheduler loop, placement policies (one registry), forecasting and autoscaling; no heavy frameworks."""
