"""mpush-alloc: a Twisted alloc server for mpush clusters."""

# The one place the version is written: setup.py parses it,
# ``twistd mpush-alloc --version`` prints it.
__version__ = "0.1.0"
