"""Keyless-lock access: the in-memory copy of staff keys and visits, the unlock command
channel, the access-log writer, and the service that ties them to the rule
(:mod:`gateway.domain.lock_access`)."""
