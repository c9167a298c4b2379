"""Reproducible measurements against AWS's DynamoDB Local: ``make bench``."""
