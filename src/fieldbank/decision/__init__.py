"""The decision stage: validation, identity and fraud checks, the portrait and the champion's
PD, policy rules (zen-engine), limit and price, and the append-only decision log."""
