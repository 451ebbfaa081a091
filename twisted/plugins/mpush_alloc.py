"""twistd plugin entry for ``twistd mpush-alloc``.

Kept tiny on purpose: twistd imports every plugin module to list them, so the
real work (``mpush.daemon.tap``) is imported only when this plugin is chosen.
"""

from twisted.application.service import IServiceMaker
from twisted.plugin import IPlugin
from zope.interface import implementer


@implementer(IServiceMaker, IPlugin)
class _MpushAllocMaker:
    tapname = "mpush-alloc"
    description = "Alloc server for an mpush push cluster: GET / allocation, POST /push."

    @property
    def options(self):
        from mpush.daemon.tap import Options

        return Options

    def makeService(self, options):
        from mpush.daemon.tap import makeService

        return makeService(options)


serviceMaker = _MpushAllocMaker()
