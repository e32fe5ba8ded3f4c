"""welfare-gateway: vendor-neutral IoT fleet gateway for welfare technology."""

__version__ = "0.1.0"
