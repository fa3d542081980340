"""Pure bias and attribution computations (arrays in, numbers out)."""
