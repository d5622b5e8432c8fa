"""SQL of the delivery service (its own schema), by capability: the join the handlers write (`join`),
the send queue the workers claim from and record into (`queue`), and what the review API and support
read and correct (`records`)."""

from .join import *  # noqa: F403
from .queue import *  # noqa: F403
from .records import *  # noqa: F403
