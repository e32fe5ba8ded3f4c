"""The alarm path: rules in memory, lifecycle, journal, dispatch, supervision."""
