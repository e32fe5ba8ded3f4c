"""Per-device broker identities: Mosquitto dynamic security commands and their adapter.

``dynsec`` builds the commands (pure), ``client`` sends them to the broker, ``service``
is what the API calls when a device is registered, assigned or returned.
"""
