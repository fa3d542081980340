"""Clarify: bias metrics equal to SageMaker's, explanations, bias and attribution drift."""
