"""Data access, one module per resource; functions take a Session and keyword arguments."""
