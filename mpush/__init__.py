"""mpush-alloc: a Twisted alloc server for mpush clusters."""

__version__ = "0.1.0"
