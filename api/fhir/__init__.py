"""FHIR R4 for regional health systems: pure mapping, search parsing and ids (no I/O).

The HTTP adapter is ``api.routes.fhir``.
"""
