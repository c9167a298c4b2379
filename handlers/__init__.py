"""The edge: Lambda entry points, HTTP conversion, signatures, platform adapters and tools.

Importing this package costs nothing; each entry point imports what its path needs (the
Messenger path never imports slack_bolt).
"""
