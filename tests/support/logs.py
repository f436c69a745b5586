"""What lpmon logs during a test."""


class LogLines:
    """The messages lpmon logs under `name` during a test, whatever Airflow did to logging
    (its dag.test() runs reconfigure it): a handler on lpmon's own logger."""

    def __init__(self, name: str = "lpmon"):
        import logging

        self.lines: list[str] = []
        self.logger = logging.getLogger(name)
        self.handler = logging.Handler()
        self.handler.emit = lambda record: self.lines.append(record.getMessage())

    def __enter__(self):
        import logging

        self.saved = self.logger.disabled, self.logger.level
        self.logger.disabled = False
        self.logger.setLevel(logging.INFO)
        self.logger.addHandler(self.handler)
        return self

    def __exit__(self, *exc):
        self.logger.removeHandler(self.handler)
        self.logger.disabled, level = self.saved
        self.logger.setLevel(level)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)
