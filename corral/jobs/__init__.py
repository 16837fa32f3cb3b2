"""Durable jobs: a database-table queue of job units claimed by workers with leases."""
