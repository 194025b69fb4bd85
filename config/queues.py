"""Names of the Celery tasks: api enqueues them by name, worker defines them."""

TRAIN = "trainyard.train"
