"""Model registry: groups, numbered versions, four-eyes approvals, lifecycle stages and model cards."""
