"""Trainyard's REST API (FastAPI)."""
