"""OnceOnly: a city's government data sharing and exchange platform."""

__version__ = "0.1.0"
