"""Federated learning across edge agents with Flower."""
