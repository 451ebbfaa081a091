"""The JSON resource base: each endpoint writes only ``render_GET`` / ``render_POST``.

:class:`JsonResource` dispatches on the method (``render_<METHOD>``) and
answers what the endpoint does not implement the way every endpoint of the
daemon does:

* a method with no ``render_<METHOD>``: ``405`` with a JSON body and an
  ``Allow`` header listing the methods it has (computed once per class);
* ``HEAD``, wherever there is ``render_GET``: the GET's status and headers,
  ``Content-Length`` of the body GET would send, and no body (returning
  one would make twisted.web log a warning and drop it anyway). A class
  whose HEAD must not do what GET does (``GET /`` counts an allocation)
  overrides :meth:`JsonResource.head_body`.

:class:`JsonLeaf` adds the leaf rule: any path below it is ``404`` JSON.
"""

from __future__ import annotations

from typing import Any, ClassVar

from twisted.web.resource import Resource
from twisted.web.server import Request

from mpush.web.errors import method_not_allowed, not_found

__all__ = ["JsonLeaf", "JsonResource"]

_PREFIX = "render_"
_HEAD = b"HEAD"


def _renderers(cls: type) -> dict[bytes, str]:
    """``{b"GET": "render_GET", ...}`` for the ``render_<METHOD>`` the class has.

    ``render_HEAD`` is not looked for (``Resource`` has one for every class):
    HEAD is there exactly when GET is, answered by :meth:`JsonResource._head`.
    """
    methods = {name[len(_PREFIX):].encode("ascii"): name for name in dir(cls)
               if name.startswith(_PREFIX) and name[len(_PREFIX):].isupper()
               and name != "render_HEAD"}
    if b"GET" in methods:
        methods[_HEAD] = "_head"
    return dict(sorted(methods.items()))


class JsonResource(Resource):
    """Dispatches ``render_<METHOD>``; 405 JSON with ``Allow``; HEAD from GET."""

    #: The methods answered (HEAD with GET), sorted: the ``Allow`` header.
    allowed_methods: ClassVar[tuple[bytes, ...]] = ()
    _renderer_names: ClassVar[dict[bytes, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Once per class, not per request: the request path does one dict lookup.
        cls._renderer_names = _renderers(cls)
        cls.allowed_methods = tuple(cls._renderer_names)

    def render(self, request: Request) -> bytes | int:
        name = self._renderer_names.get(request.method)
        if name is None:
            return method_not_allowed(request, self.allowed_methods)
        return getattr(self, name)(request)  # type: ignore[no-any-return]

    def head_body(self, request: Request) -> bytes | int:
        """The body GET would answer, for HEAD (which sends its length only).

        Sets the status and headers as GET would. Override when HEAD must
        not have GET's effects.
        """
        return self.render_GET(request)  # type: ignore[attr-defined, no-any-return]

    def _head(self, request: Request) -> bytes | int:
        body = self.head_body(request)
        if not isinstance(body, bytes):
            # NOT_DONE_YET: twisted.web writes no body for HEAD itself.
            return body
        request.setHeader(b"content-length", b"%d" % len(body))
        return b""


class JsonLeaf(JsonResource):
    """A :class:`JsonResource` at the end of a path: ``/x/`` and ``/x/y`` are 404 JSON."""

    isLeaf = True

    def render(self, request: Request) -> bytes | int:
        if request.postpath:
            # Leaf: "/x/" and "/x/y" land here too; only "/x" is the endpoint.
            return not_found(request)
        return super().render(request)
