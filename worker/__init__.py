"""Celery worker: the training task and the loop around the engine."""
