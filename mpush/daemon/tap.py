"""``twistd mpush-alloc``: command-line options and the service tree.

Nothing here opens a socket or starts a thread: twistd may fork (daemonize)
after ``makeService``, so all of that happens in the services' start.
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure

from mpush.config import ConfigError, Settings, load_settings
from mpush.services.drain import Drain
from mpush.services.ordered import OrderedService


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Serves an mpush cluster: GET / lists the connection servers (from "
        "ZooKeeper), least loaded first (online counts from Redis). The config "
        "file is HOCON, in the Java alloc's format; see the README for its keys. "
        "On SIGTERM the daemon drains (/health 503 at once, the listener closes "
        "after mp.alloc.drain-delay, pushes in flight get mp.alloc.shutdown-grace), "
        "then the services stop in reverse order and twistd ends by "
        "re-raising SIGTERM (exit status 143 from a shell: a clean stop)."
    )
    optParameters = [
        ["config", "c", "conf/mpush.conf", "The HOCON config file (Java alloc format)."],
    ]

    settings: Settings

    def postOptions(self) -> None:
        try:
            self.settings = load_settings(self["config"])
        except ConfigError as e:
            # SystemExit, not UsageError: twistd would print its whole usage.
            raise SystemExit(f"mpush-alloc: config error: {e}") from None


class AllocDaemon(OrderedService):
    """The root service; a failed start ends the process with status 1.

    With a :class:`mpush.services.drain.Drain` (``drain``), a stop first drains
    (``/health`` 503, listener closed after the drain delay, pushes in flight
    answered within the grace), then stops the services in reverse.
    """

    log = Logger()

    def __init__(self, reactor: Any = None) -> None:
        super().__init__()
        self._reactor = reactor
        self.drain: Drain | None = None

    def stopService(self) -> Deferred[None]:
        drain = self.drain
        if drain is None or not self.running:
            return super().stopService()
        d = drain.run()  # never fails; a second stop waits for the same drain
        d.addCallback(lambda _: OrderedService.stopService(self))
        return d

    def startService(self) -> Deferred[None]:
        d = super().startService()
        d.addCallbacks(self._freeze_startup_objects, self._give_up)
        return d

    def _freeze_startup_objects(self, _: object) -> None:
        # What start-up made (modules, kazoo, Twisted) lives as long as the
        # process: move it out of the collector's sight, so full collections
        # scan only what requests create (they took ~40 ms otherwise, the
        # p99 of GET / and /push).
        gc.collect()
        gc.freeze()

    def _give_up(self, reason: Failure) -> None:
        self.log.critical("mpush-alloc could not start: {reason}",
                          reason=reason.getErrorMessage())
        reactor = self._reactor
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        # twistd has no exit-status API: exit 1 once it has cleaned up (its
        # pidfile removed, logs flushed) on the way out.
        atexit.register(_exit_failed)
        reactor.callWhenRunning(reactor.stop)


def _exit_failed() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)


def makeService(options: Options, reactor: Any = None) -> AllocDaemon:
    # Imported here so that `twistd --help` stays light.
    from mpush.balance import BalancePolicy
    from mpush.cluster.gateways import GatewayPool
    from mpush.cluster.kazoo_logs import bridge_stdlib_logging
    from mpush.cluster.redis import RedisService
    from mpush.cluster.zookeeper import ZkWatcher
    from mpush.daemon.listener import WebService
    from mpush.daemon.metrics import Metrics, StateCollector
    from mpush.services.pusher import PushClient
    from mpush.services.refresher import Refresher
    from mpush.services.status import Status
    from mpush.web.health import HealthResource
    from mpush.web.metrics import MetricsResource
    from mpush.web.openapi import OpenApiResource
    from mpush.web.page import PageResource
    from mpush.web.push import PushResource
    from mpush.web.root import AdminRoot, RootResource
    from mpush.web.site import AllocSite

    settings = options.settings
    bridge_stdlib_logging()
    root = AllocDaemon(reactor)

    zk = ZkWatcher(settings.zk, reactor=reactor)
    zk.setName("zookeeper")
    zk.setServiceParent(root)

    cache = RedisService(settings.redis, reactor=reactor)
    cache.setName("redis")
    cache.setServiceParent(root)

    gateways = GatewayPool(zk, connections_per_server=settings.gateway_client_num,
                           connect_timeout=settings.alloc.gateway_connect_timeout,
                           max_packet_size=settings.max_packet_size,
                           max_pending_per_connection=settings.alloc.max_pending_per_gateway,
                           reactor=reactor)
    gateways.setName("gateways")
    gateways.setServiceParent(root)
    pusher = PushClient(gateways, cache, max_packet_size=settings.max_packet_size,
                        broadcast_timeout=settings.alloc.broadcast_timeout, reactor=reactor)

    policy = BalancePolicy()
    refresher = Refresher(policy, zk, cache, interval=settings.alloc.refresh_interval,
                          change_delay=settings.alloc.change_delay, reactor=reactor)
    refresher.setName("refresher")
    refresher.setServiceParent(root)

    resource = RootResource(policy, retry_after=settings.alloc.retry_after)
    push = PushResource(pusher, token=settings.alloc.push_token,
                        allow=settings.alloc.push_allow,
                        push_timeout=settings.alloc.push_timeout,
                        max_users=settings.alloc.max_users_per_push,
                        max_inflight=settings.alloc.max_inflight_pushes,
                        retry_after=settings.alloc.retry_after)
    resource.putChild(b"push", push)
    resource.putChild(b"index.html", PageResource())
    resource.putChild(b"openapi.json", OpenApiResource())
    # The refresher stamps last_success with this reactor's clock.
    status = Status(zk, cache, gateways, refresher, policy, clock=reactor)
    resource.putChild(b"health", HealthResource(status))
    site = AllocSite(resource, access_log=settings.alloc.access_log,
                     max_request_size=settings.alloc.max_request_size,
                     request_head_timeout=settings.alloc.request_head_timeout,
                     reactor=reactor)
    web = WebService(site, settings.port, interface=settings.alloc.interface,
                     protocol=settings.protocol, tls_cert=settings.alloc.tls_cert,
                     tls_key=settings.alloc.tls_key, data_dir=settings.alloc.data_dir,
                     reactor=reactor)
    web.setName("web")
    web.setServiceParent(root)
    # Read at scrape time (the collector) or observed through hooks (histograms).
    metrics = Metrics(StateCollector(status))
    metrics.attach(site=site, push=push, refresher=refresher)
    metrics_resource = MetricsResource(metrics)
    admin_port = settings.alloc.admin_port
    if admin_port is None:
        resource.putChild(b"metrics", metrics_resource)
    else:
        # Its own port, plain http, /metrics only (the main port then has none).
        admin = AdminRoot()
        admin.putChild(b"metrics", metrics_resource)
        admin_site = AllocSite(admin, request_head_timeout=settings.alloc.request_head_timeout,
                               reactor=reactor)
        admin_web = WebService(admin_site, admin_port, interface=settings.alloc.interface,
                               reactor=reactor)
        admin_web.setName("admin")
        admin_web.setServiceParent(root)
    root.drain = Drain(listener=web, pushes=push, pusher=pusher, site=site,
                       drain_delay=settings.alloc.drain_delay,
                       shutdown_grace=settings.alloc.shutdown_grace, clock=reactor)
    status.drain = root.drain  # made last: it needs the site, which needs /health
    return root
