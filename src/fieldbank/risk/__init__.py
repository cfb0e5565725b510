"""Risk: train, validate, calibrate, explain and register credit scores."""
