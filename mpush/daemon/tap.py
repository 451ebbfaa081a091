"""``twistd mpush-alloc``: command-line options and the service tree.

Nothing here opens a socket or starts a thread: twistd may fork (daemonize)
after ``makeService``, so all of that happens in the services' start (the
listeners bind in the privileged start, which can still fail the command).

:func:`makeService` only wires; each ``make_*`` function builds one part.
Each imports its own modules, so that ``twistd mpush-alloc --help`` (which
imports this module) does not load kazoo, txredisapi or prometheus-client.
The children of :class:`AllocDaemon` start in the order the ``make_*``
functions add them: ZooKeeper, Redis, gateways, refreshers (``GET /``, ``GET /ws``),
web (admin).
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure

from mpush.config import (
    DEFAULT_CONFIG_FILE,
    AllocSettings,
    ConfigError,
    Settings,
    load_settings,
)
from mpush.daemon.cluster_parts import (
    make_gateways,
    make_pusher,
    make_redis,
    make_refresher,
    make_sharer,
    make_zookeeper,
)
from mpush.daemon.cluster_parts import make_udp_gateways as make_udp_gateways  # re-exported
from mpush.reactor import default_reactor
from mpush.services.ordered import OrderedService, StartError

if TYPE_CHECKING:
    from twisted.application.internet import TimerService

    from mpush.balance import BalancePolicy
    from mpush.daemon.listener import WebService
    from mpush.daemon.logs import LogLimits
    from mpush.services.drain import Drain
    from mpush.services.pusher import PushClient
    from mpush.services.refresher import Refresher
    from mpush.services.status import Status
    from mpush.web.push import PushResource
    from mpush.web.root import RootResource
    from mpush.web.site import AllocSite


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Serves an mpush cluster: GET / lists the connection servers (from "
        "ZooKeeper), least loaded first (online counts from Redis). The config "
        "file is HOCON, in the Java alloc's format; docs/configuration.md lists its keys. "
        "On SIGTERM the daemon drains (/health 503 at once, the listener closes "
        "after mp.alloc.drain-delay, pushes in flight get mp.alloc.shutdown-grace), "
        "then the services stop in reverse order and twistd ends by "
        "re-raising SIGTERM (exit status 143 from a shell: a clean stop)."
    )
    optParameters = [
        ["config", "c", DEFAULT_CONFIG_FILE, "The HOCON config file (Java alloc format)."],
    ]

    settings: Settings

    def opt_version(self) -> None:
        """Display mpush-alloc's version and exit."""
        from mpush import __version__

        print(f"mpush-alloc {__version__}")
        sys.exit(0)

    def postOptions(self) -> None:
        try:
            self.settings = load_settings(self["config"])
        except ConfigError as e:
            # SystemExit, not UsageError: twistd would print its whole usage.
            raise SystemExit(f"mpush-alloc: config error: {e}") from None
        _make_twistd_directories(self.parent)


def _make_twistd_directories(twistd: usage.Options | None) -> None:
    """Creates the directory of twistd's ``--pidfile`` and ``--logfile`` if missing.

    So that ``--pidfile run/alloc.pid --logfile run/alloc.log`` works in a
    fresh clone (twistd would stop with a traceback). One level only: a
    directory whose parent is missing is more likely a typo, and stops the
    start with one line.
    """
    if twistd is None:  # parsed on its own, not as a twistd subcommand
        return
    for option in ("pidfile", "logfile"):
        path = twistd.get(option) or ""
        directory = os.path.dirname(path)
        if path == "-" or not directory or os.path.isdir(directory):
            continue
        try:
            os.mkdir(directory)
        except FileExistsError:
            pass  # made meanwhile; a file of that name fails twistd's own open
        except OSError as e:
            raise SystemExit(f"mpush-alloc: cannot create the directory of --{option}"
                             f" {path}: {e.strerror or e}") from None


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
        # twistd's own options (its --pidfile), when run by twistd.
        self.twistd: usage.Options | None = None

    def stopService(self) -> Deferred[None]:
        drain = self.drain
        if drain is None or not self.running:
            return super().stopService()
        d = drain.run()  # never fails; a second stop waits for the same drain
        d.addCallback(lambda _: OrderedService.stopService(self))
        return d

    def privilegedStartService(self) -> None:
        """Binds the listeners; a failure fails the ``twistd`` command itself.

        twistd reports an exception raised here to a daemonizing parent,
        which prints it and exits 1 (so an init script sees the failure); the
        pidfile is removed before. In the foreground the process exits 1 too,
        with one line on stderr instead of a traceback.
        """
        try:
            super().privilegedStartService()
        except StartError as e:
            reason = f"{e.name}: {e.reason.getErrorMessage()}"
            self.log.critical("mpush-alloc could not start: {reason}", reason=reason)
            self._remove_pidfile()
            raise _start_failed(reason) from None

    def _remove_pidfile(self) -> None:
        # twistd removes it only after the daemonizing parent has been told
        # and has exited: whoever ran twistd could still find it. Now, then,
        # and twistd is left nothing to remove (it reads the option then).
        if self.twistd is None:
            return
        pidfile, self.twistd["pidfile"] = self.twistd["pidfile"], ""
        if pidfile:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(pidfile)

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
        reactor = default_reactor(self._reactor)
        # twistd has no exit-status API: exit 1 once it has cleaned up (its
        # pidfile removed, logs flushed) on the way out.
        atexit.register(_exit_failed)
        reactor.callWhenRunning(reactor.stop)


def _start_failed(reason: str) -> RuntimeError:
    """The exception twistd reports for a failed privileged start.

    A daemonizing parent prints ``An error has occurred: b'RuntimeError:
    <reason>'`` (twistd passes at most 100 bytes): hence a builtin class and
    a short reason. Uncaught in the foreground, it prints as one line.
    """
    error = RuntimeError(reason)
    previous = sys.excepthook

    def one_line(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        if value is error:
            # The real stderr: twistd sends sys.stderr to the log, which has the line.
            print(f"mpush-alloc could not start: {reason}", file=sys.__stderr__)
        else:
            previous(kind, value, tb)

    sys.excepthook = one_line
    return error


def _exit_failed() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)


# -- the parts ------------------------------------------------------------------

# The cluster side (ZooKeeper, Redis, gateways, pusher, refreshers, sharer) is
# built in mpush.daemon.cluster_parts, imported above; the rest here.


@dataclass
class Web:
    """The main port: its resource tree, its site and its listener."""

    root: RootResource
    push: PushResource
    site: AllocSite
    listener: WebService


def make_web(settings: Settings, policy: BalancePolicy, pusher: PushClient, status: Status,
             reactor: Any = None, max_connections: int | None = None) -> Web:
    """``max_connections``: the cap on open HTTP connections, shared with the admin port."""
    from mpush.daemon.fd_limits import effective_backlog
    from mpush.daemon.listener import TlsOptions, WebService
    from mpush.services.user_routes import UserRouteReader
    from mpush.web.cluster import ClusterResource
    from mpush.web.config import ConfigResource
    from mpush.web.connection_limit import ConnectionLimit
    from mpush.web.health import HealthResource
    from mpush.web.openapi import OpenApiResource
    from mpush.web.page import PageResource
    from mpush.web.push import PushResource
    from mpush.web.push_access import PushAccess
    from mpush.web.root import RootResource, WebsocketResource
    from mpush.web.site import AllocSite
    from mpush.web.users import UsersResource

    alloc = settings.alloc
    root = RootResource(policy, retry_after=alloc.retry_after)
    assert status.ws_policy is not None
    root.putChild(b"ws", WebsocketResource(status.ws_policy, retry_after=alloc.retry_after))
    push = PushResource(pusher, token=alloc.push_token, allow=alloc.push_allow,
                        push_timeout=alloc.push_timeout, max_users=alloc.max_users_per_push,
                        retry_after=alloc.retry_after)
    root.putChild(b"push", push)
    root.putChild(b"index.html", PageResource())
    root.putChild(b"openapi.json", OpenApiResource())
    root.putChild(b"health", HealthResource(status))
    # The operator API: /push's access rule; only /users reads Redis, within
    # the time the Redis client promises to fail in.
    access = PushAccess(token=alloc.push_token, allow=alloc.push_allow)
    root.putChild(b"cluster", ClusterResource(status, access))
    root.putChild(b"config", ConfigResource(settings, access))
    assert status.redis is not None
    redis_wait = settings.redis.connect_timeout + settings.redis.reply_timeout
    routes = UserRouteReader(status.redis, status.zk, timeout=redis_wait, reactor=reactor)
    root.putChild(b"users", UsersResource(routes, access, max_user_id=settings.max_packet_size))
    site = AllocSite(root, access_log=alloc.access_log, **_site_limits(alloc), reactor=reactor,
                     connection_limit=(None if max_connections is None
                                       else ConnectionLimit(max_connections)))
    tls = None
    if settings.protocol == "https":
        tls = TlsOptions(alloc.tls_cert, alloc.tls_key, alloc.data_dir)
    listener = WebService(site, settings.port, interface=alloc.interface, tls=tls,
                          reactor=reactor, backlog=effective_backlog(alloc.listen_backlog))
    listener.setName("web")
    return Web(root, push, site, listener)


def _site_limits(alloc: AllocSettings) -> dict[str, Any]:
    """What bounds every request of an AllocSite, from the config."""
    return {"max_request_size": alloc.max_request_size,
            "request_head_timeout": alloc.request_head_timeout,
            "request_body_timeout": alloc.request_body_timeout,
            "client_stall_timeout": alloc.client_stall_timeout}


def make_metrics(settings: Settings, status: Status, web: Web, pusher: PushClient,
                 refresher: Refresher, reactor: Any = None) -> WebService | None:
    """Mounts ``/metrics``: on the main port, or on the admin port (returned to add)."""
    from mpush.daemon.listener import WebService
    from mpush.daemon.metrics import Metrics, StateCollector
    from mpush.web.metrics import MetricsResource
    from mpush.web.root import AdminRoot
    from mpush.web.site import AllocSite

    # Read at scrape time (the collector) or observed through hooks (histograms).
    metrics = Metrics(StateCollector(status), clock=reactor)
    metrics.attach(site=web.site, push=pusher.admission, refresher=refresher)
    resource = MetricsResource(metrics)
    alloc = settings.alloc
    if alloc.admin_port is None:
        web.root.putChild(b"metrics", resource)
        return None
    # Its own port, plain http, /metrics only (the main port then has none).
    admin = AdminRoot()
    admin.putChild(b"metrics", resource)
    admin_site = AllocSite(admin, **_site_limits(alloc), reactor=reactor,
                           connection_limit=web.site.connection_limit)
    listener = WebService(admin_site, alloc.admin_port, interface=alloc.interface,
                          reactor=reactor)
    listener.setName("admin")
    return listener


def make_log_flush(limits: LogLimits, reactor: Any = None) -> TimerService:
    """Writes the count of repeated log lines left out, every window."""
    from twisted.application.internet import TimerService

    timer = TimerService(limits.window, limits.flush)
    if reactor is not None:
        timer.clock = reactor
    timer.setName("log-limits")
    return timer


def make_drain(settings: Settings, web: Web, pusher: PushClient, reactor: Any = None) -> Drain:
    from mpush.services.drain import Drain

    return Drain(listener=web.listener, pusher=pusher, site=web.site,
                 drain_delay=settings.alloc.drain_delay,
                 shutdown_grace=settings.alloc.shutdown_grace, clock=reactor)


# -- the tree -------------------------------------------------------------------


def makeService(options: Options, reactor: Any = None) -> AllocDaemon:
    from mpush.balance import BalancePolicy
    from mpush.cluster.kazoo_logs import bridge_stdlib_logging
    from mpush.daemon.fd_limits import fd_budget, raise_open_file_limit
    from mpush.daemon.logs import apply_log_config
    from mpush.services.status import Status

    settings = options.settings
    bridge_stdlib_logging()
    # mp.log-level and the repeat limit for twistd's log; unknown mp.alloc keys.
    limits = apply_log_config(settings)
    # Before anything opens: the connections of each kind share out the limit.
    fds = fd_budget(raise_open_file_limit(), settings.alloc.max_connections,
                    settings.gateway_client_num)
    root = AllocDaemon(reactor)
    root.twistd = options.parent
    make_log_flush(limits, reactor).setServiceParent(root)
    zk = make_zookeeper(settings, reactor)
    zk.setServiceParent(root)
    cache = make_redis(settings, reactor)
    cache.setServiceParent(root)
    gateways = make_gateways(settings, zk, reactor, max_connections=fds.gateways)
    gateways.setServiceParent(root)
    pusher = make_pusher(settings, gateways, cache, reactor)
    policy, ws_policy = BalancePolicy(), BalancePolicy()  # GET /, GET /ws: own handouts
    refresher = make_refresher(settings, policy, zk, cache, reactor)
    refresher.setServiceParent(root)
    ws_refresher = make_refresher(settings, ws_policy, zk, cache, reactor, kind="ws")
    ws_refresher.setServiceParent(root)
    sharer = make_sharer(settings, policy, cache, reactor)
    if sharer is not None:
        sharer.setServiceParent(root)
    # The refreshers stamp last_success with this reactor's clock.
    status = Status(zk, cache, gateways, refresher, policy, ws_policy=ws_policy,
                    ws_refresher=ws_refresher, clock=reactor, sharer=sharer)
    web = make_web(settings, policy, pusher, status, reactor, max_connections=fds.http)
    web.listener.setServiceParent(root)
    admin = make_metrics(settings, status, web, pusher, refresher, reactor)
    if admin is not None:
        admin.setServiceParent(root)
    # The drain comes last (it needs the site, which needs /health): the
    # status reads its flag from now on.
    root.drain = status.drain = make_drain(settings, web, pusher, reactor)
    return root
