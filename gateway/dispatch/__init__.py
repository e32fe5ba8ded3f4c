"""Delivery of alarm state changes to recipients outside the gateway."""
