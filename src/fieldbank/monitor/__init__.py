"""Monitoring: portfolio metrics, vintages, roll rates and score/feature drift for the ops dashboard."""
