"""The conversation logic: pure functions from (state, message) to (new state, replies).

No I/O and no platform payloads: the edge (``handlers``) turns Slack and Messenger requests
into :class:`~bot.messages.Message` values and renders :class:`~bot.messages.Reply` values.
"""
