"""The one error of the state store."""


class StoreError(RuntimeError):
    """The state store cannot be used as it is (version, connection)."""
