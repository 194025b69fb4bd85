"""Persistence that api and worker share: ORM models, sessions and repositories."""
