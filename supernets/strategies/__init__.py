"""Training strategies (architecture sampling rules)."""
