"""The Django-free core of fairque_django: config, keys, Lua scripts, queues and workers."""
