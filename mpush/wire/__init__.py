"""The mpush gateway wire protocol: a pure codec (no I/O, no Twisted).

What the Java peers (``mpusher/mpush`` 0.8.x) put on a gateway connection,
read from their sources; file names in the modules are the Java ones.

* :mod:`.frames` — the 13-byte header, :class:`Packet`, heartbeats, the
  stream decoder, the CMD_/FLAG_ constants;
* :mod:`.body` — body fields (:class:`BodyWriter`, :class:`BodyReader`);
* :mod:`.messages` — the push request, OK and ERROR, request builders;
* :mod:`.javacompat` — what Java computes its own way (fastjson quoting,
  blankness, clientType, the Java alloc's push content).

Errors: :class:`ProtocolError` is what the peer sent (or would refuse) —
close the connection on it; ``ValueError``/``TypeError`` are bad arguments
from our own caller. Import from here: ``from mpush.wire import Packet``.

Each module lists its public names once, in its ``__all__``; the package
re-exports them all (and :class:`mpush.outcomes.AckModel`).
"""

from mpush.outcomes import AckModel
from mpush.wire import body, frames, javacompat, messages
from mpush.wire.body import *  # noqa: F403
from mpush.wire.frames import *  # noqa: F403
from mpush.wire.javacompat import *  # noqa: F403
from mpush.wire.messages import *  # noqa: F403

__all__ = ["AckModel"]
__all__ += body.__all__
__all__ += frames.__all__
__all__ += javacompat.__all__
__all__ += messages.__all__
