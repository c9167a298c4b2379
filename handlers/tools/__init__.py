"""The developer tools, apart from the Lambda edges: the local server (``make run``), the chat
simulator (``make chat``) and the sessions admin CLI (``make admin``). None of them ships in
the Lambda zip; each drives the same edges the deploy runs."""
