"""Bucket stores: memory (the reference model), Redis, Redis Cluster."""
