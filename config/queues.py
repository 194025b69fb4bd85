"""The queue contract: the Celery task names api sends and worker defines, by name only, so
that api never imports the worker's modules."""

TRAIN = "trainyard.train"
EVALUATE = "trainyard.evaluate"
