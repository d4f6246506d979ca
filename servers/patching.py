"""Imported first by every server module. Run as a program with --message-queue, a server talks
to Redis through redis-py, whose sockets must yield to gevent's hub: gevent's monkey-patching,
before anything else is imported (as Flask-SocketIO's documentation asks for a message queue on
gevent). Without a queue nothing is patched, so the single-process servers stay as measured."""

import sys

if any(arg.split("=", 1)[0] == "--message-queue" for arg in sys.argv[1:]):
    from gevent import monkey

    if not monkey.is_module_patched("socket"):
        monkey.patch_all()
