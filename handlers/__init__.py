"""The edge: the Lambda entry points, one folder per platform (``slack``, ``messenger`` with
Instagram, ``whatsapp``: adapters around one delivery pipeline, ``pipeline``), HTTP conversion,
signatures, the platforms' clients; the developer tools in ``handlers.tools``.

Importing this package costs next to nothing: it registers the platforms the session core does
not know (``handlers.platforms``: their id alphabets, no adapter imported); each entry point
imports what its path needs (the Messenger path imports neither slack_bolt nor slack_sdk; the
Slack path only slack_sdk).
"""

from handlers import platforms as _platforms  # noqa: F401  (registers the platforms' ids)
