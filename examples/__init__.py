"""Example bots on the public bot API (``bot``), each runnable with ``BOT=examples.<name>:bot``:
``quiz`` (buttons, a per-user score, a state migration) and ``intake`` (a Slack modal or
Messenger quick replies, and an effect that files a ticket after the commit)."""
