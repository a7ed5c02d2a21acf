"""Framework-free recommendation signals (numpy / torch only; no Django imports)."""
