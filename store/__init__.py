"""What api and worker share: settings, ORM models, sessions and repositories."""
