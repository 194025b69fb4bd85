"""The job contract between api and worker. A user's request (``plan.request``) is resolved
once, at submit time, by ``plan.planner`` into a typed ``TrainingPlan`` (``plan.model``):
heads with their targets, losses and metrics, the step count and the memory estimate. The
API stores it with the job; the worker validates it and follows it, with no defaults of its
own. ``plan.splits`` is how a dataset is divided into training/validation and across ranks,
shared by the planner's counts and the worker's data order."""
from plan.errors import PlanError
from plan.model import HeadPlan, LossPlan, TrainingPlan

__all__ = ["HeadPlan", "LossPlan", "PlanError", "TrainingPlan"]
