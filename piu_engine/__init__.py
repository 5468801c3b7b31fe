"""PIU engine: datasets, training, unlearning methods, metrics and the
headless forget-request service. Never imports the terminal UI."""

__version__ = "0.1.0"
