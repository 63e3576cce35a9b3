"""The one exception type the driver raises for bad configuration and failed runs."""


class Error(Exception):
    """A payload, environment or lifecycle problem, with a message meant for the operator's user."""
