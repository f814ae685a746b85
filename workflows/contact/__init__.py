"""The contact workflow, a package: the workflow with its handlers, and the parts of a
contact's life beside it."""

from workflows.contact.workflow import ContactWorkflow

__all__ = ["ContactWorkflow"]
