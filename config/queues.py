"""The queue contract: the Celery task names api sends and worker defines, by name only, so
that api never imports the worker's modules; and the queues. Every job goes to the queue of
its plan's device kind, ``<TRAINYARD_QUEUE>.cpu`` or ``.gpu``: a worker consumes the one of
its own kind only, so a CPU worker never takes a GPU job and a GPU worker never a CPU job."""

TRAIN = "trainyard.train"
EVALUATE = "trainyard.evaluate"
JOIN = "trainyard.join"  # a host joining a multi-node job's ranks (worker.nodes)

CPU = "cpu"
GPU = "gpu"
KINDS = (CPU, GPU)


def name(base: str, kind: str) -> str:
    """The queue of ``kind`` jobs for deployment queue ``base`` (TRAINYARD_QUEUE)."""
    if kind not in KINDS:
        raise ValueError(f"unknown device kind {kind!r} (cpu or gpu)")
    return f"{base}.{kind}"
