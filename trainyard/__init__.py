"""Process orchestration: the ``trainyard`` command that runs api, worker and embedded Redis."""
