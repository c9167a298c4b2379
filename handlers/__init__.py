"""The edge: the Lambda entry points (``slack``, ``messenger``: adapters around one delivery
pipeline, ``pipeline``), HTTP conversion, signatures, the platforms' clients; the developer
tools in ``handlers.tools``.

Importing this package costs nothing; each entry point imports what its path needs (the
Messenger path imports neither slack_bolt nor slack_sdk; the Slack path only slack_sdk).
"""
