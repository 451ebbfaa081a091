"""``twistd mpush-alloc``: imports ``mpush.daemon.tap`` only once the plugin is chosen."""

from twisted.application.service import ServiceMaker

mpushAlloc = ServiceMaker(
    "mpush-alloc", "mpush.daemon.tap",
    "Alloc server for an mpush push cluster: GET / allocation, POST /push.", "mpush-alloc")
